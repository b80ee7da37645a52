"""The shipped checkpoint loads by default and beats the unrelaxed input on held-out DFT data."""

import numpy as np
import pytest

from definet_core.checkpoint import SHIPPED_CHECKPOINT, read_checkpoint
from definet_core.dataset import MaterialSet, load_pair
from definet_core.io import read_structure
from definet_core.metrics import structure_errors
from definet_core.predict import Predictor
from tests.conftest import shared_data_or_skip


def test_shipped_checkpoint_is_small_and_self_describing():
    payload = read_checkpoint()
    assert SHIPPED_CHECKPOINT.stat().st_size < 25 * 2**20
    assert {"hidden", "layers", "radius", "max_neighbors"} <= set(payload["config"])
    assert {42, 16, 74, 34, 5, 7} <= set(payload["trained_elements"])  # Mo S W Se B N
    assert payload["metadata"]["val_mae"]


@pytest.mark.parametrize(("material", "max_ratio"), [("high_density/MoS2", 0.6), ("high_density/WSe2", 0.6),
                                                     ("low_density/WSe2", 0.3)])
def test_shipped_checkpoint_beats_the_unrelaxed_input_on_val(material, max_ratio):
    data = MaterialSet(shared_data_or_skip() / material)
    predictor = Predictor(device="cpu")
    host = read_structure(data.unit_cell_path)
    graphs = [load_pair(data, i, host, predictor.config.radius, predictor.config.max_neighbors)
              for i in data.split_ids("val")[:20]]
    rows = [structure_errors(g, p) for g, p in zip(graphs, predictor.predict_graphs(graphs), strict=True)]
    mae, dummy = np.mean([r["mae"] for r in rows]), np.mean([r["dummy_mae"] for r in rows])
    assert mae < max_ratio * dummy
