"""Cells of a few atoms, where an atom's neighbours are mostly periodic images of a few atoms (its own among them).

The shipped checkpoints diverged there (NaN or up to 1e28 A on tiny JARVIS cells, 1e5-1e16 A on the cells built
here) until the model clipped its vector features and displacements (``model.py``'s docstring says why); the
clips must leave predictions on normal cells bit for bit as they were, and keep the model equivariant.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation
from torch_geometric.data import Batch

from definet_core.checkpoint import load_model
from definet_core.graph import build_graph
from definet_core.markers import Marker, defect_nodes
from definet_core.model import DefiNet
from definet_core.predict import defect_graph
from definet_core.reference_model import ReferenceDefiNet
from definet_core.stability import clip_displacement, clip_vectors
from tests.conftest import random_defect_cell
from tests.core.test_model import CONFIG, random_batch

SANE_A = 1.0
"""No atom of these cells may move further (A): their DFT relaxations move atoms by hundredths of an A, and the
shipped model moved them by 1e5 A and more (or returned NaN) before the clips."""

FCC = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])


def binary_host(kind: str, cation: str, anion: str) -> Structure:
    """A two-atom cubic binary: rock salt (a = 5.0 A), zinc blende (a = 5.2 A) or CsCl (a = 3.0 A)."""
    if kind == "rocksalt":
        return Structure(Lattice(5.0 * FCC), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if kind == "zincblende":
        return Structure(Lattice(5.2 * FCC), [cation, anion], [[0, 0, 0], [0.25, 0.25, 0.25]])
    return Structure(Lattice.cubic(3.0), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def defect_cell(host: Structure, defect: str, supercell: tuple[int, int, int]) -> tuple[Structure, Structure]:
    """(defect cell, pristine cell): the anion of the (super)cell removed or replaced by Se (S where it is Se)."""
    pristine = host.copy()
    pristine.make_supercell(list(supercell))
    cell = pristine.copy()
    anion = next(i for i, site in enumerate(cell) if site.specie.symbol == host[1].specie.symbol)
    if defect == "vacancy":
        cell.remove_sites([anion])
    else:
        cell.replace(anion, "S" if host[1].specie.symbol == "Se" else "Se")
    return cell, pristine


def predicted_shifts(model: DefiNet, cell: Structure, host: Structure) -> tuple[torch.Tensor, torch.Tensor]:
    """(graph, |predicted - input| of the real atoms) of one defect cell."""
    graph = defect_graph(cell, host, model.config)
    with torch.no_grad():
        predicted = model(Batch.from_data_list([graph]))
    atoms = graph.marker != Marker.VACANCY
    return graph, (predicted - graph.pos).norm(dim=-1)[atoms]


@pytest.fixture(scope="module", params=["definet_2d_v2", "definet_2d_seed1"])
def shipped(request):
    return load_model(request.param)[0]


HOSTS = [("rocksalt", "Mo", "S"), ("zincblende", "Ga", "N"), ("cscl", "W", "Se")]


@pytest.mark.parametrize("defect", ["vacancy", "substitution"])
@pytest.mark.parametrize(("kind", "cation", "anion"), HOSTS)
def test_two_atom_cells_stay_finite_and_bounded(shipped, kind, cation, anion, defect):
    cell, host = defect_cell(binary_host(kind, cation, anion), defect, (1, 1, 1))
    graph, shifts = predicted_shifts(shipped, cell, host)
    assert graph.num_nodes == 2 and int((graph.marker != Marker.PRISTINE).sum()) == 1
    assert int((graph.edge_index[0] == graph.edge_index[1]).sum()) > 0  # an atom's own images are its neighbours
    assert torch.isfinite(shifts).all()
    assert shifts.max() < SANE_A


@pytest.mark.parametrize(("kind", "cation", "anion"), HOSTS)
def test_cells_of_a_few_atoms_and_their_images_stay_finite_and_bounded(shipped, kind, cation, anion):
    cell, host = defect_cell(binary_host(kind, cation, anion), "vacancy", (2, 2, 1))
    graph, shifts = predicted_shifts(shipped, cell, host)
    assert graph.num_nodes == 8
    sources_per_centre = [len(set(graph.edge_index[0][graph.edge_index[1] == i].tolist())) for i in range(8)]
    assert max(sources_per_centre) <= 8 < graph.edge_index.shape[1] // 8  # 24 neighbours, images of <= 8 atoms
    assert torch.isfinite(shifts).all()
    assert shifts.max() < SANE_A


def test_no_node_ever_moves_beyond_the_displacement_clip():
    torch.manual_seed(0)
    config = replace(CONFIG, displacement_clip=0.3)
    model = DefiNet(config).double().eval()
    for p in model.parameters():  # weights far beyond a trained model's, so the raw steps run away
        p.data += 0.5 * torch.randn_like(p)
    batch = random_batch(0)
    with torch.no_grad():
        shifts = (model(batch) - batch.pos).norm(dim=-1)
    assert torch.isfinite(shifts).all() and shifts.max() <= 0.3 + 1e-9


def test_the_reference_architecture_is_bounded_by_the_same_clips():
    torch.manual_seed(0)
    config = replace(CONFIG, arch="reference", displacement_clip=0.3)
    model = ReferenceDefiNet(config).double().eval()
    for p in model.parameters():  # weights far beyond a trained model's, so the raw steps run away
        p.data += 0.5 * torch.randn_like(p)
    batch = random_batch(0)
    with torch.no_grad():
        shifts = (model(batch) - batch.pos).norm(dim=-1)
        unclipped = ReferenceDefiNet(replace(config, vector_clip=0.0, displacement_clip=0.0)).double().eval()
        unclipped.load_state_dict(model.state_dict())
        raw = (unclipped(batch) - batch.pos).norm(dim=-1)
    assert torch.isfinite(shifts).all() and shifts.max() <= 0.3 + 1e-9
    assert not (raw.max() <= 0.3)  # without them the same weights run away (or give NaN)


def test_clips_leave_normal_cells_bit_for_bit_unchanged():
    model, _ = load_model("definet_2d_v2")
    unclipped = DefiNet(replace(model.config, vector_clip=0.0, displacement_clip=0.0))
    unclipped.load_state_dict(model.state_dict())
    unclipped.eval()
    rng = np.random.default_rng(2)
    graphs = []
    for _ in range(3):
        cell, host = random_defect_cell(rng, size=6, n_vacancies=2, n_substitutions=1)
        graphs.append(build_graph(defect_nodes(cell, host), model.config.radius, model.config.max_neighbors))
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        assert torch.equal(model(batch), unclipped(batch))


def test_clip_helpers_are_exact_inside_and_bounded_outside():
    v = torch.tensor([[[0.3, 4.0], [0.4, 0.0], [0.0, 3.0]]], requires_grad=True)  # channel norms 0.5 and 5
    clipped, excess = clip_vectors(v, 1.0)
    assert torch.equal(clipped[..., 0], v[..., 0])
    assert torch.allclose(clipped[..., 1].norm(), torch.tensor(1.0)) and float(excess.detach()) == pytest.approx(5.0)
    zero = torch.zeros(1, 3, 2, requires_grad=True)
    clip_vectors(zero, 1.0)[0].sum().backward()
    assert torch.isfinite(zero.grad).all()  # a node whose vectors vanish by symmetry trains without NaN
    start = torch.zeros(2, 3)
    pos = torch.tensor([[0.1, 0.2, 0.3], [3.0, 4.0, 0.0]])
    bounded = clip_displacement(pos, start, 1.0)
    assert torch.equal(bounded[0], pos[0]) and torch.allclose(bounded[1], torch.tensor([0.6, 0.8, 0.0]))
    assert torch.equal(clip_vectors(v, 0.0)[0], v) and torch.equal(clip_displacement(pos, start, 0.0), pos)


def test_equivariance_holds_while_the_clips_act():
    torch.manual_seed(1)
    model = DefiNet(replace(CONFIG, vector_clip=0.02, displacement_clip=0.05)).double().eval()
    for p in model.parameters():
        p.data += 0.05 * torch.randn_like(p)
    batch = random_batch(5)
    with torch.no_grad():
        reference = model(batch)
    moved = (reference - batch.pos).norm(dim=-1)
    assert moved.max() > 1e-4 and moved.max() <= 0.05 + 1e-9
    rotation = torch.tensor(Rotation.random(random_state=3).as_matrix())
    reflection = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    for matrix in (rotation, reflection @ rotation):
        shift = torch.tensor([0.4, -2.2, 1.1], dtype=torch.float64)
        turned = batch.clone()
        turned.pos = batch.pos @ matrix.T + shift
        turned.cell = batch.cell @ matrix.T
        with torch.no_grad():
            assert torch.allclose(model(turned), reference @ matrix.T + shift, atol=1e-10)
