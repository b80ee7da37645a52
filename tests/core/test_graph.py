import itertools

import numpy as np
from pymatgen.core import Lattice

from definet_core.graph import radius_graph_pbc
from workflows.hosts import mos2_monolayer


def brute_force(coords, lattice, radius):
    edges = {}
    for i, j in itertools.product(range(len(coords)), repeat=2):
        for image in itertools.product(range(-3, 4), repeat=3):
            d = np.linalg.norm(coords[j] + np.array(image) @ lattice.matrix - coords[i])
            if 1e-8 < d <= radius:
                edges[(j, i, image)] = d
    return edges


def test_graph_matches_brute_force_enumeration():
    rng = np.random.default_rng(1)
    lattice = Lattice.from_parameters(4.1, 4.5, 5.0, 80, 95, 110)
    coords = rng.random((5, 3)) @ lattice.matrix
    edge_index, images, distances = radius_graph_pbc(coords, lattice, 4.0, max_neighbors=10_000)
    found = {(int(s), int(t), tuple(int(x) for x in im)): d
             for (s, t), im, d in zip(edge_index.T, images, distances, strict=True)}
    expected = brute_force(coords, lattice, 4.0)
    assert found.keys() == expected.keys()
    assert np.allclose([found[k] for k in expected], list(expected.values()))
    vectors = coords[edge_index[0]] + images @ lattice.matrix - coords[edge_index[1]]
    assert np.allclose(np.linalg.norm(vectors, axis=1), distances)


def test_truncation_keeps_the_nearest_neighbours():
    rng = np.random.default_rng(2)
    cell = mos2_monolayer()
    cell.make_supercell([3, 3, 1])
    cell.perturb(0.05)
    coords, lattice = cell.cart_coords, cell.lattice
    full_index, _, full_d = radius_graph_pbc(coords, lattice, 6.0, max_neighbors=10_000)
    k = int(rng.integers(5, 15))
    index, _, dist = radius_graph_pbc(coords, lattice, 6.0, max_neighbors=k)
    for center in range(len(coords)):
        all_d = np.sort(full_d[full_index[1] == center])
        kept = np.sort(dist[index[1] == center])
        assert len(kept) == min(k, len(all_d))
        assert np.allclose(kept, all_d[: len(kept)])
