import json

import pytest
import torch

from definet_core.applicability import Domain
from definet_core.checkpoint import load_model, read_checkpoint, save_checkpoint
from definet_core.errors import DefiNetInputError, TrainingDivergedError
from definet_core.evaluate import evaluate
from definet_core.train import TrainConfig, log_path, train
from tests.conftest import TINY_CONFIG

FAST = dict(batch_size=4, lr=5e-3, device="cpu", early_stop_patience=100)


def read_log(out):
    return [json.loads(line) for line in log_path(out).read_text().splitlines()]


def test_training_lowers_the_loss(dataset_root, cache_dir, tmp_path):
    out = tmp_path / "m.pt"
    summary = train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=8, **FAST), progress=False)
    log = read_log(out)
    assert [r["epoch"] for r in log] == list(range(1, 9))
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    assert out.is_file() and summary["best_epoch"] >= 1


def test_resume_continues_where_it_stopped(dataset_root, cache_dir, tmp_path):
    out = tmp_path / "m.pt"
    train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=2, **FAST), progress=False)
    with pytest.raises(DefiNetInputError, match="--resume"):
        train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=3, **FAST), progress=False)
    train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=3, **FAST), resume=True, progress=False)
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    uninterrupted = tmp_path / "u.pt"
    train([dataset_root], uninterrupted, TINY_CONFIG, TrainConfig(epochs=3, **FAST), progress=False)
    assert read_log(uninterrupted)[-1]["train_loss"] == pytest.approx(log[-1]["train_loss"], rel=1e-4)


def test_checkpoint_round_trip_gives_identical_predictions(dataset_root, cache_dir, tmp_path, tiny_checkpoint):
    from torch_geometric.data import Batch

    from definet_core.dataset import load_dataset

    model, payload = load_model(tiny_checkpoint)
    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, model, payload["trained_elements"])
    again, _ = load_model(copy)
    batch = Batch.from_data_list(load_dataset([dataset_root], "val", 4.0, 12, progress=False)["MoS2"])
    with torch.no_grad():
        assert torch.equal(model(batch), again(batch))


def test_evaluate_reports_paper_metrics_and_plot(dataset_root, cache_dir, tmp_path, tiny_checkpoint):
    plot = tmp_path / "parity.png"
    report = evaluate([dataset_root], "test", tiny_checkpoint, "cpu", plot, progress=False)
    row = report["MoS2"]
    assert row["n"] == 4
    assert 0 < row["dummy_mae"] < row["dummy_local_mae_3A"]
    assert row["mae"] == pytest.approx(row["dummy_mae"], rel=0.5)  # untrained: close to the input
    assert plot.stat().st_size > 10_000


def test_evaluate_keys_are_paths_relative_to_the_data_root(tmp_path, cache_dir, tiny_checkpoint):
    from tests.conftest import write_dataset

    write_dataset(tmp_path / "high_density", {"val": 2})
    write_dataset(tmp_path / "low_density", {"val": 1}, seed=3)
    report = evaluate([tmp_path], "val", tiny_checkpoint, "cpu", progress=False)
    assert sorted(report) == ["high_density/MoS2", "low_density/MoS2"]
    assert report["low_density/MoS2"]["n"] == 1


def test_a_fine_tune_leaves_the_frozen_parts_as_they_started(dataset_root, cache_dir, tmp_path, tiny_checkpoint):
    out = tmp_path / "ft.pt"
    frozen = ("element_embedding", "layers.0")
    train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=2, freeze=frozen, **FAST), progress=False,
          init=tiny_checkpoint)
    before, after = (load_model(path)[0].state_dict() for path in (tiny_checkpoint, out))
    for name, weights in after.items():
        unchanged = torch.equal(weights, before[name])
        if name.startswith(frozen):
            assert unchanged, name
        elif name.startswith("layers.1.message_mlp"):
            assert not unchanged, name
    with pytest.raises(DefiNetInputError, match=r"--freeze layer\.0: no parameter"):
        train([dataset_root], tmp_path / "bad.pt", TINY_CONFIG, TrainConfig(epochs=1, freeze=("layer.0",), **FAST),
              progress=False, init=tiny_checkpoint)


def test_a_fine_tune_can_keep_accepting_what_its_start_was_trained_on(dataset_root, cache_dir, tmp_path,
                                                                     tiny_checkpoint):
    """``domain_from``: the written domain is the union of the run's data and the named checkpoint's domain."""
    start = tmp_path / "bn_start.pt"
    bn = Domain((5, 7), (0, 1), ("2D",), 2.5, 0, ("B-N",), 0.5)
    save_checkpoint(start, load_model(tiny_checkpoint)[0], [5, 7], domain=bn.to_dict())
    out = tmp_path / "ft.pt"
    train([dataset_root], out, TINY_CONFIG, TrainConfig(epochs=1, domain_from=str(start), **FAST), progress=False,
          init=start)
    written = Domain.from_dict(read_checkpoint(out)["domain"])
    assert written.host_systems == ("B-N", "Mo-S")
    assert {5, 7, 16, 42} <= set(written.elements) and written.max_displacement == 2.5
    assert (written.min_atoms, written.max_defect_fraction) == (0, 0.5)
    with pytest.raises(DefiNetInputError, match=r"--domain-from .*tiny\.pt: stores no applicability domain"):
        train([dataset_root], tmp_path / "none.pt", TINY_CONFIG,
              TrainConfig(epochs=1, domain_from=str(tiny_checkpoint), **FAST), progress=False, init=start)
    assert not (tmp_path / "none.pt").exists()


def test_a_diverging_run_stops_with_one_line_before_writing_its_weights(dataset_root, cache_dir, tmp_path):
    out = tmp_path / "m.pt"
    config = TrainConfig(epochs=3, schedule="cosine", warmup_steps=0, **{**FAST, "lr": 1e30})
    with pytest.raises(TrainingDivergedError, match=r"not finite by step \d+ \(epoch 1, .*kept as last written: "
                                                    r"nothing; train again with a lower --lr$"):
        train([dataset_root], out, TINY_CONFIG, config, progress=False)
    assert not out.exists() and not log_path(out).exists()



def magnify_relaxation(material_dir, factor):
    """Scale each relaxed structure's displacements from its unrelaxed one by ``factor`` (a material moving more)."""
    from pymatgen.core import Structure

    for relaxed in (material_dir / "CIF").glob("*_relaxed.cif"):
        start = Structure.from_file(str(relaxed).replace("_relaxed", "_unrelaxed"))
        end = Structure.from_file(relaxed)
        moved = start.frac_coords + factor * (end.frac_coords - start.frac_coords)
        Structure(end.lattice, end.species, moved).to(filename=str(relaxed))


def test_selecting_on_the_val_ratio_picks_the_epoch_with_the_lowest_mean_ratio(tmp_path, cache_dir, tiny_checkpoint):
    from tests.conftest import write_dataset

    write_dataset(tmp_path / "data" / "high_density", {"train": 8, "val": 3})
    magnify_relaxation(write_dataset(tmp_path / "data" / "low_density", {"train": 8, "val": 2}, seed=3), 4.0)
    out = tmp_path / "m.pt"
    summary = train([tmp_path / "data"], out, TINY_CONFIG, TrainConfig(epochs=6, select_on="ratio", **FAST),
                    progress=False)
    log = read_log(out)
    unrelaxed = evaluate([tmp_path / "data"], "val", tiny_checkpoint, "cpu", progress=False)  # its dummy MAEs
    for record in log:
        assert sorted(record["val_ratio"]) == ["high_density/MoS2", "low_density/MoS2"]
        for key, ratio in record["val_ratio"].items():
            assert ratio == pytest.approx(record["val_mae"][key] / unrelaxed[key]["dummy_mae"], rel=1e-5)
        assert record["val_ratio_mean"] == pytest.approx(sum(record["val_ratio"].values()) / 2)
    best = min(log, key=lambda record: record["val_ratio_mean"])
    assert best["epoch"] != min(log, key=lambda record: record["val_mae_mean"])["epoch"]  # the choice matters here
    assert summary["best_epoch"] == best["epoch"] and summary["selected_on"] == "ratio"
    assert summary["best_val_ratio"] == best["val_ratio_mean"]
    assert torch.load(out, weights_only=False)["metadata"]["epoch"] == best["epoch"]
    with pytest.raises(DefiNetInputError, match="--select-on loss: expected one of mae, ratio"):
        TrainConfig(select_on="loss")
