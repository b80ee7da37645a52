"""The GPU-oriented training features: time budget, precision fallback, half checkpoints, loss balance, sizing."""

import json
import warnings

import pytest
import torch
from torch_geometric.data import Batch

from definet_core.checkpoint import load_model, read_checkpoint, resolve_checkpoint, save_checkpoint
from definet_core.dataset import load_dataset
from definet_core.errors import DefiNetInputError
from definet_core.metrics import structure_errors
from definet_core.sizing import choose_model_size
from definet_core.train import (
    TrainConfig,
    log_path,
    material_weights,
    partway_start_positions,
    position_loss,
    prepare_graphs,
    resolve_precision,
    state_path,
    train,
)
from tests.conftest import TINY_CONFIG, write_dataset

FAST = dict(batch_size=4, lr=5e-3, device="cpu", early_stop_patience=100)


def test_time_budget_stops_cleanly_and_leaves_a_loadable_best_checkpoint(dataset_root, cache_dir, tmp_path):
    out = tmp_path / "m.pt"
    summary = train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=1000, time_budget_min=0.002, **FAST),
                    progress=False)
    assert summary["stopped_by"] == "time budget"
    assert summary["steps"] < 1000 * 3
    _, payload = load_model(out)
    assert payload["metadata"]["epoch"] == summary["best_epoch"]
    saved = torch.load(state_path(out), weights_only=False)
    assert saved["step"] == summary["steps"] and saved["batches_done"] == 0
    record = json.loads(log_path(out).read_text().splitlines()[-1])
    assert record["device"] == "cpu" and record["structures_per_s"] > 0 and record["steps_per_s"] > 0


def test_a_resumed_run_keeps_its_budget_and_schedule(dataset_root, cache_dir, tmp_path):
    """The budget counts the minutes trained before the resume: a spent one trains nothing more (the cosine
    schedule would otherwise start over), a larger one trains on from the minutes already spent."""
    out = tmp_path / "m.pt"
    config = dict(epochs=1000, schedule="cosine", **FAST)
    first = train([dataset_root], out, TINY_CONFIG, TrainConfig(time_budget_min=0.002, **config), progress=False)
    log = log_path(out).read_text()
    again = train([dataset_root], out, TINY_CONFIG, TrainConfig(time_budget_min=0.002, **config), resume=True,
                  progress=False)
    assert again == first and log_path(out).read_text() == log
    spent = torch.load(state_path(out), weights_only=False)["elapsed"]
    budget = spent / 60 + 0.02  # 1.2 s beyond what the first run spent, however slow a loaded machine made it
    longer = train([dataset_root], out, TINY_CONFIG, TrainConfig(time_budget_min=budget, **config), resume=True,
                   progress=False)
    assert longer["steps"] > first["steps"] and longer["stopped_by"] == "time budget"
    resumed = json.loads(log_path(out).read_text().splitlines()[-1])
    assert resumed["elapsed_s"] > spent


def test_bf16_falls_back_to_fp32_on_the_cpu(dataset_root, cache_dir, tmp_path):
    with pytest.warns(UserWarning, match="CUDA only"):
        assert resolve_precision("bf16", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train([dataset_root], tmp_path / "m.pt", TINY_CONFIG, TrainConfig(epochs=1, precision="bf16", **FAST),
              progress=False)
    assert json.loads(log_path(tmp_path / "m.pt").read_text())["precision"] == "fp32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_with_bf16_autocast(dataset_root, cache_dir, tmp_path):
    config = TrainConfig(epochs=2, batch_size=4, lr=5e-3, device="cuda", precision="bf16")
    summary = train([dataset_root], tmp_path / "m.pt", TINY_CONFIG, config, progress=False)
    record = json.loads(log_path(tmp_path / "m.pt").read_text().splitlines()[-1])
    assert record["precision"] == "bf16" and summary["best_epoch"] >= 1


def test_half_checkpoint_predicts_within_1e3_angstrom_of_its_float32_source(dataset_root, cache_dir, tmp_path):
    model, payload = load_model("definet_2d_v2")
    half = tmp_path / "half.pt"
    save_checkpoint(half, model, payload["trained_elements"], payload["metadata"], half=True)
    assert half.stat().st_size < 0.6 * resolve_checkpoint("definet_2d_v2").stat().st_size
    assert read_checkpoint(half)["weights_dtype"] == "float16"
    again, _ = load_model(half)
    config = model.config
    graphs = load_dataset([dataset_root], "val", config.radius, config.max_neighbors, progress=False)["MoS2"]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        difference = (model(batch) - again(batch)).norm(dim=-1).max()
    assert 0 < difference < 1e-3


def test_material_balance_weighs_each_material_by_its_own_displacement_scale(tmp_path, cache_dir):
    """Two materials whose DFT displacements differ ~5x: balanced, the unrelaxed input scores the same for both."""
    write_dataset(tmp_path / "root", {"train": 3}, seed=1, material="MoS2")
    sets = load_dataset([tmp_path / "root"], "train", 4.0, 12, progress=False)
    big = [g.clone() for g in sets["MoS2"]]
    for graph in big:
        graph.y = graph.pos + 5.0 * (graph.y - graph.pos)
    two = {"small": sets["MoS2"], "big": big}
    weights = material_weights(two)
    assert weights["small"] == pytest.approx(5.0 * weights["big"], rel=1e-6)
    assert (3 * weights["small"] + 3 * weights["big"]) / 6 == pytest.approx(1.0)

    graphs = prepare_graphs(two, TrainConfig(loss_balance="material"), torch.device("cpu"))
    per_material = []
    for material_graphs in (graphs[:3], graphs[3:]):  # prepare_graphs keeps the order of the sets
        batch = Batch.from_data_list(material_graphs)
        per_material.append(float(position_loss(batch.pos, batch) * batch.loss_weight[0]))
    assert per_material[0] == pytest.approx(per_material[1], rel=1e-5)
    plain = prepare_graphs(two, TrainConfig(), torch.device("cpu"))
    assert not hasattr(plain[0], "loss_weight") or plain[0].loss_weight is None


def test_sizing_picks_the_largest_size_that_fits_the_budget(dataset_root, cache_dir):
    graphs = load_dataset([dataset_root], "train", TINY_CONFIG.radius, TINY_CONFIG.max_neighbors,
                          progress=False)["MoS2"]
    config, precision, timings = choose_model_size(TINY_CONFIG, [8, 16], graphs, 4, torch.device("cpu"), ["fp32"],
                                                   budget_minutes=10.0, min_epochs=1)
    assert (config.hidden, precision) == (16, "fp32") and [t.hidden for t in timings] == [8, 16]
    config, _, _ = choose_model_size(TINY_CONFIG, [8, 16], graphs, 4, torch.device("cpu"), ["fp32"],
                                     budget_minutes=1e-9, min_epochs=1)
    assert config.hidden == 8  # nothing fits: the smallest


def test_fine_tuning_starts_from_the_checkpoint_weights(dataset_root, cache_dir, tmp_path, tiny_checkpoint):
    out = tmp_path / "ft.pt"
    train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=1, lr=1e-12, min_lr=1e-12, **{
        k: v for k, v in FAST.items() if k != "lr"}), init=tiny_checkpoint, progress=False)
    tuned, payload = load_model(out)
    source, _ = load_model(tiny_checkpoint)
    for (name, a), b in zip(tuned.state_dict().items(), source.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    assert payload["metadata"]["init"] == str(tiny_checkpoint)


def test_a_run_killed_inside_an_epoch_resumes_from_its_last_state(dataset_root, cache_dir, tmp_path, monkeypatch):
    """State is written inside the epoch (every step here); a resumed run skips the batches already done."""
    import definet_core.train as training

    calls = {"n": 0}
    real_loss = training.position_loss

    def dies_on_third_step(predicted, batch, kind):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_loss(predicted, batch, kind)

    out = tmp_path / "m.pt"
    monkeypatch.setattr(training, "position_loss", dies_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=2, checkpoint_every_min=0.0, **FAST),
              progress=False)
    saved = torch.load(state_path(out), weights_only=False)
    assert (saved["epoch"], saved["batches_done"], saved["step"]) == (1, 2, 2)
    monkeypatch.setattr(training, "position_loss", real_loss)
    summary = train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=2, **FAST), resume=True, progress=False)
    assert summary["steps"] == 2 + 1 + 3  # the rest of epoch 1, then epoch 2 in full (12 graphs, batch 4)
    assert [json.loads(line)["epoch"] for line in log_path(out).read_text().splitlines()] == [1, 2]


def test_ema_follows_the_warmup_formula_and_resumes_from_the_saved_count():
    from torch.optim.swa_utils import AveragedModel

    from definet_core.train import WarmupEma

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = AveragedModel(model, multi_avg_fn=WarmupEma(0.9))
    expected = None
    for n in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        current = [p.detach().clone() for p in model.parameters()]
        if n == 3:  # a resumed run: the update function restarts from the averaged model's saved count
            update = WarmupEma(0.9)
            resumed = AveragedModel(model, multi_avg_fn=update)
            resumed.load_state_dict(ema.state_dict())
            update.num_averaged = int(resumed.n_averaged)
            ema = resumed
        ema.update_parameters(model)
        if expected is None:
            expected = current
        else:
            decay = min(0.9, (1.0 + n) / (10.0 + n))
            expected = [decay * e + (1.0 - decay) * c for e, c in zip(expected, current, strict=True)]
        for e, a in zip(expected, ema.module.parameters(), strict=True):
            assert torch.allclose(e, a, atol=1e-6)


def test_position_loss_ignores_vacancy_nodes_and_weights_graphs(dataset_root, cache_dir):
    graphs = load_dataset([dataset_root], "train", TINY_CONFIG.radius, TINY_CONFIG.max_neighbors,
                          progress=False)["MoS2"][:3]
    batch = Batch.from_data_list(graphs)
    predicted = batch.pos + 0.1 * torch.randn_like(batch.pos)
    predicted[batch.marker == 2] += 100.0  # a vacancy node far off must not count
    atoms = batch.marker != 2
    distances = torch.linalg.norm(predicted[atoms] - batch.y[atoms], dim=-1)
    assert (batch.marker == 2).any()
    assert float(position_loss(predicted, batch)) == pytest.approx(float(distances.mean()), rel=1e-5)
    batch.loss_weight = torch.tensor([1.0, 0.0, 0.0])
    first = atoms & (batch.batch == 0)
    assert float(position_loss(predicted, batch)) == pytest.approx(
        float(torch.linalg.norm(predicted[first] - batch.y[first], dim=-1).mean()), rel=1e-5)
    # component-l1 is what the metrics score: the structure's MAE over |dx|, |dy|, |dz| of its real atoms
    assert float(position_loss(predicted, batch, "component-l1")) == pytest.approx(
        structure_errors(graphs[0], predicted[batch.batch == 0])["mae"], rel=1e-5)
    assert float(position_loss(predicted, batch, "component-l1")) < float(position_loss(predicted, batch))


def test_an_unknown_loss_is_a_one_line_error():
    with pytest.raises(DefiNetInputError, match="--loss huber: expected one of distance, component-l1"):
        TrainConfig(loss="huber")


def test_partway_starts_move_each_structure_one_fraction_towards_its_relaxed_positions(dataset_root, cache_dir):
    graphs = load_dataset([dataset_root], "train", TINY_CONFIG.radius, TINY_CONFIG.max_neighbors,
                          progress=False)["MoS2"][:3]
    batch = Batch.from_data_list(graphs)
    assert torch.equal(partway_start_positions(batch, 0.0), batch.pos)
    torch.manual_seed(0)
    moved = partway_start_positions(batch, 1.0)
    fractions = []
    for g in range(batch.num_graphs):
        nodes = batch.batch == g
        path, step = batch.y[nodes] - batch.pos[nodes], moved[nodes] - batch.pos[nodes]
        fraction = float((path * step).sum() / (path * path).sum())  # one fraction per structure
        assert torch.allclose(step, fraction * path, atol=1e-5)
        fractions.append(fraction)
    assert all(0.0 <= f < 1.0 for f in fractions) and len(set(fractions)) == len(fractions)
    with pytest.raises(DefiNetInputError, match=r"--partway-starts 1\.5"):
        TrainConfig(partway_starts=1.5)
