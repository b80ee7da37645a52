"""Fixed periodic-table element features (``ModelConfig.element_features``): the table, equivariance, what an
unseen element starts as, checkpoints, and fine-tuning from a checkpoint without features."""

import argparse
from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Element
from torch_geometric.data import Batch

from definet_core.checkpoint import load_model, read_checkpoint, save_checkpoint
from definet_core.cli import add_core_commands
from definet_core.config import ModelConfig
from definet_core.elements import FEATURE_NAMES, NUM_FEATURES, element_feature_table, valence_electrons
from definet_core.graph import build_graph
from definet_core.markers import defect_nodes
from definet_core.model import DefiNet
from definet_core.train import TrainConfig, TrainingRun, fine_tune_start, train
from tests.conftest import TINY_CONFIG, random_defect_cell
from tests.core.test_model import CONFIG, random_batch

Z = {symbol: Element(symbol).Z for symbol in ("S", "Se", "Te", "Na", "Mo", "W")}


def test_the_table_is_deterministic_standardised_and_complete():
    table = element_feature_table(100)
    assert table.shape == (101, NUM_FEATURES) == (101, len(FEATURE_NAMES))
    assert torch.equal(table, element_feature_table(100)) and torch.isfinite(table).all()
    assert not table[0].any()  # no element
    scalars = table[1:, -4:].double()
    assert torch.allclose(scalars.mean(dim=0), torch.zeros(4, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(scalars.std(dim=0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-5)
    assert torch.equal(table[1:, :18].sum(dim=1), torch.ones(100))  # one group each
    assert [valence_electrons(Element(s)) for s in ("S", "Se", "Na", "Cu", "Pd", "Ce")] == [6, 6, 1, 11, 10, 4]


def test_an_unseen_element_starts_near_its_chemical_neighbours():
    table = element_feature_table(100)
    assert (table[Z["Se"]] - table[Z["S"]]).norm() < 0.5 * (table[Z["Se"]] - table[Z["Na"]]).norm()
    assert (table[Z["W"]] - table[Z["Mo"]]).norm() < 0.5 * (table[Z["W"]] - table[Z["S"]]).norm()
    torch.manual_seed(0)
    model = DefiNet(replace(CONFIG, element_features=True))
    assert not model.element_embedding.weight.any()  # untrained rows add nothing
    z = torch.tensor([Z["Se"], Z["S"], Z["Na"], Z["Te"]])
    se, s, na, te = model.element_embedding(z) + model.element_features(z)
    assert (se - s).norm() < (se - na).norm() and (te - se).norm() < (te - na).norm()


@pytest.fixture(scope="module")
def featured_model():
    torch.manual_seed(0)
    net = DefiNet(replace(CONFIG, element_features=True)).double()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return net.eval()


def test_the_features_change_the_prediction_of_a_node(featured_model):
    batch = random_batch(2)
    with torch.no_grad():
        reference = featured_model(batch)
        featured_model.element_features.table.mul_(2.0)
        try:
            assert not torch.allclose(featured_model(batch), reference)
        finally:
            featured_model.element_features.table.mul_(0.5)


def mos2_batch(config: ModelConfig, seed: int = 0) -> Batch:
    """Mo, S and Se only: the elements the tiny checkpoint was 'trained' on."""
    rng = np.random.default_rng(seed)
    graphs = [build_graph(defect_nodes(*random_defect_cell(rng)), config.radius, config.max_neighbors)
              for _ in range(2)]
    return Batch.from_data_list(graphs)


def test_checkpoints_carry_the_table_and_old_ones_load_without_features(tmp_path):
    torch.manual_seed(0)
    model = DefiNet(replace(TINY_CONFIG, element_features=True)).eval()
    path = tmp_path / "featured.pt"
    save_checkpoint(path, model, [16, 42])
    payload = read_checkpoint(path)
    assert payload["config"]["element_features"] is True
    assert torch.equal(payload["state_dict"]["element_features.table"], element_feature_table(100))
    again, _ = load_model(path)
    batch = mos2_batch(TINY_CONFIG)
    with torch.no_grad():
        assert torch.equal(model(batch), again(batch))
    old = {k: v for k, v in TINY_CONFIG.to_dict().items() if k != "element_features"}
    assert ModelConfig.from_dict(old).element_features is False
    assert "element_features" not in read_checkpoint("definet_2d_v2")["config"]
    assert load_model("definet_2d_v2")[0].element_features is None


def test_fine_tuning_with_features_starts_from_the_init_models_function(tiny_checkpoint):
    init, payload = load_model(tiny_checkpoint)
    trained = payload["trained_elements"]
    config, state = fine_tune_start(payload, replace(ModelConfig(), element_features=True))
    assert config == replace(init.config, element_features=True)
    run = TrainingRun(config, TrainConfig(device="cpu"), torch.device("cpu"), state)
    for start in (run.model, run.ema.module):
        start.eval()
        assert not start.element_features.projection.weight.any()
        untrained = [z for z in range(101) if z not in trained]
        assert not start.element_embedding.weight[untrained].any()
        assert torch.equal(start.element_embedding.weight[trained], init.element_embedding.weight[trained])
        batch = mos2_batch(config, seed=4)
        with torch.no_grad():
            assert torch.equal(start(batch), init(batch))
    assert fine_tune_start(payload, ModelConfig())[0] == init.config  # not asked for: the checkpoint as it is


def test_train_init_with_element_features(dataset_root, cache_dir, tmp_path, tiny_checkpoint):
    out = tmp_path / "tuned.pt"
    fast = TrainConfig(epochs=1, batch_size=4, lr=1e-3, device="cpu")
    train([dataset_root], out, replace(TINY_CONFIG, element_features=True), fast, progress=False,
          init=tiny_checkpoint)
    tuned, payload = load_model(out)
    assert payload["config"]["element_features"] is True and tuned.element_features is not None
    assert payload["metadata"]["init"] == str(tiny_checkpoint)


def test_the_train_command_parses_element_features_as_a_boolean():
    parser = argparse.ArgumentParser()
    add_core_commands(parser.add_subparsers(dest="command"))
    base = ["train", "--data", "d", "--out", "o.pt"]
    assert parser.parse_args(base).element_features is False
    assert parser.parse_args([*base, "--element-features", "true"]).element_features is True
    assert parser.parse_args([*base, "--element-features", "false"]).element_features is False
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--element-features", "maybe"])


def test_fine_tuning_with_the_edge_term_starts_from_the_init_models_function(tiny_checkpoint):
    init, payload = load_model(tiny_checkpoint)
    config, state = fine_tune_start(payload, replace(ModelConfig(), edge_displacement=True))
    assert config == replace(init.config, edge_displacement=True)
    start = TrainingRun(config, TrainConfig(device="cpu"), torch.device("cpu"), state).model.eval()
    assert start.layers[0].edge_displacement is not None
    batch = mos2_batch(config, seed=5)
    with torch.no_grad():
        assert torch.allclose(start(batch), init(batch), atol=1e-6)
