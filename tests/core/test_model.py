from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.data import Batch

from definet_core.architectures import build_model
from definet_core.config import ModelConfig
from definet_core.graph import build_graph
from definet_core.markers import Marker, defect_nodes
from tests.conftest import random_defect_cell

CONFIG = ModelConfig(hidden=16, layers=3, num_rbf=8, radius=5.0, max_neighbors=20)


def random_batch(seed):
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(2):
        cell, host = random_defect_cell(rng, n_vacancies=2, n_substitutions=1)
        cell.perturb(0.1)
        graphs.append(build_graph(defect_nodes(cell, host), CONFIG.radius, CONFIG.max_neighbors))
    batch = Batch.from_data_list(graphs)
    batch.pos, batch.cell = batch.pos.double(), batch.cell.double()
    return batch


VARIANTS = {"definet": CONFIG, "edge_displacement": replace(CONFIG, edge_displacement=True),
            "element_features": replace(CONFIG, element_features=True),
            "vector_activation": replace(CONFIG, edge_displacement=True, vector_activation=True),
            "gaussian_basis": replace(CONFIG, radial_basis="gaussian", num_rbf=16),
            "reference_scalar_update": replace(CONFIG, scalar_update="reference"),
            "reference": replace(CONFIG, arch="reference", num_rbf=16)}
"""Every architecture and option that touches vectors: the equivariance tests below run on each."""


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    torch.manual_seed(0)
    net = build_model(VARIANTS[request.param]).double()
    for p in net.parameters():  # larger weights than at init, so every path contributes
        p.data += 0.05 * torch.randn_like(p)
    return net.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_rotation_reflection_translation_equivariance(model, seed):
    batch = random_batch(seed)
    with torch.no_grad():
        reference = model(batch)
    assert (reference - batch.pos).abs().max() > 1e-4  # the model moves atoms
    rotation = torch.tensor(Rotation.random(random_state=seed).as_matrix())
    reflection = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    for matrix in (rotation, reflection @ rotation):
        shift = torch.tensor([1.3, -0.7, 2.9], dtype=torch.float64)
        moved = batch.clone()
        moved.pos = batch.pos @ matrix.T + shift
        moved.cell = batch.cell @ matrix.T
        with torch.no_grad():
            prediction = model(moved)
        assert torch.allclose(prediction, reference @ matrix.T + shift, atol=1e-10)


def test_permutation_equivariance(model):
    graph = random_batch(3).get_example(0)
    graph.pos, graph.cell = graph.pos.double(), graph.cell.double()
    n = graph.num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = graph.clone()
    for key in ("z", "marker", "pos", "site_index"):
        permuted[key] = graph[key][perm]
    permuted.edge_index = inverse[graph.edge_index]
    edge_perm = torch.randperm(graph.edge_index.shape[1], generator=torch.Generator().manual_seed(1))
    permuted.edge_index, permuted.edge_image = permuted.edge_index[:, edge_perm], graph.edge_image[edge_perm]
    with torch.no_grad():
        reference = model(Batch.from_data_list([graph]))
        prediction = model(Batch.from_data_list([permuted]))
    assert torch.allclose(prediction, reference[perm], atol=1e-10)


def test_vacancy_nodes_move_and_pass_on_their_markers(model):
    batch = random_batch(4)
    vacancy = batch.marker == Marker.VACANCY
    assert vacancy.any()
    with torch.no_grad():
        reference = model(batch)
        assert (reference[vacancy] - batch.pos[vacancy]).abs().max() > 1e-4
        batch.marker = torch.zeros_like(batch.marker)
        assert not torch.allclose(model(batch), reference)


def test_markers_change_the_prediction_where_the_defects_are():
    """With the shipped model, the markers are what tells it where the defects are: told the truth, the atoms next
    to the defects move most; told nothing (every node pristine), it hardly moves any atom."""
    from definet_core.markers import Marker
    from definet_core.metrics import near_defect_mask
    from definet_core.predict import Predictor

    predictor = Predictor(device="cpu")
    cell, host = random_defect_cell(np.random.default_rng(3), size=8, n_vacancies=2, n_substitutions=1)
    graph = predictor.graph(cell, host)
    atoms = graph.marker != Marker.VACANCY
    near = torch.from_numpy(near_defect_mask(graph)) & atoms
    blind_graph = graph.clone()
    blind_graph.marker = torch.zeros_like(graph.marker)
    with torch.no_grad():
        told = predictor.model(Batch.from_data_list([graph])) - graph.pos
        blind = predictor.model(Batch.from_data_list([blind_graph])) - graph.pos
    moved_near, moved_far = told[near].norm(dim=1).mean(), told[atoms & ~near].norm(dim=1).mean()
    assert moved_near > 0.02 and moved_near > 2 * moved_far  # a relaxation around the defects
    assert (told - blind)[near].norm(dim=1).mean() > 0.5 * moved_near  # which the markers carry
    assert blind[atoms].norm(dim=1).mean() < 0.2 * moved_near
