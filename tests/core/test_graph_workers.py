"""Graphs built in worker processes: the same predictions as in-process, errors named, workers stopped."""

import os

import numpy as np
import pytest
import torch

from definet_core.errors import DefiNetInputError
from definet_core.predict import GRAPH_WORKERS_AUTO_MIN, Predictor, graph_workers_policy
from tests.conftest import random_defect_cell


def cells(count: int) -> tuple[list, list]:
    """``count`` MoS2 3x3 defect cells with their hosts."""
    rng = np.random.default_rng(3)
    pairs = [random_defect_cell(rng, n_vacancies=int(rng.integers(1, 3))) for _ in range(count)]
    return [cell for cell, _ in pairs], [host for _, host in pairs]


def test_worker_built_graphs_give_the_in_process_predictions(tiny_checkpoint):
    structures, hosts = cells(7)
    names = [f"cell {i}" for i in range(7)]
    serial = Predictor(tiny_checkpoint, "cpu", batch_size=2).predictions(structures, hosts, None, names)
    with Predictor(tiny_checkpoint, "cpu", batch_size=1, graph_workers=2) as predictor:  # 7 batches, 4 ahead
        parallel = predictor.predictions(structures, hosts, None, names)
        again = predictor.predictions(structures[:3], hosts[:3], None, names[:3])  # the same workers, reused
        assert predictor._pool is not None
    assert predictor._pool is None  # leaving the block stopped the workers
    assert len(parallel) == 7 and len(again) == 3
    for one, other in zip(serial + serial[:3], parallel + again, strict=True):
        assert np.allclose(one.structure.cart_coords, other.structure.cart_coords, atol=1e-6)
        assert torch.equal(one.graph.marker, other.graph.marker)
        assert one.verdict == other.verdict


def test_a_bad_structure_in_a_worker_fails_with_its_name(tiny_checkpoint):
    structures, hosts = cells(4)
    bulk = structures[2].copy()
    bulk.scale_lattice(bulk.volume * 1.5)  # no longer matches its host
    structures[2] = bulk
    with Predictor(tiny_checkpoint, "cpu", batch_size=1, graph_workers=2) as predictor:
        with pytest.raises(DefiNetInputError, match="cell 2"):
            predictor.predictions(structures, hosts, None, [f"cell {i}" for i in range(4)])
        fine = predictor.predictions(structures[:2], hosts[:2], None, ["cell 0", "cell 1"])  # the workers survive
    assert len(fine) == 2


def test_graph_workers_policy():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert graph_workers_policy("0", 10**6, cuda) == 0
    assert graph_workers_policy("3", 1, cpu) == graph_workers_policy(3, 1, cpu) == 3
    assert graph_workers_policy("auto", GRAPH_WORKERS_AUTO_MIN - 1, cuda) == 0
    assert graph_workers_policy("auto", 10**6, cpu) == 0  # the network needs the cores
    cores = len(os.sched_getaffinity(0))
    assert graph_workers_policy("auto", GRAPH_WORKERS_AUTO_MIN, cuda) == (cores - 1 if cores >= 3 else 0)
    with pytest.raises(DefiNetInputError, match="workers 'many'"):
        graph_workers_policy("many", 10, cpu)
