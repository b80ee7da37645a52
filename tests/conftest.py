"""Shared fixtures: small defect supercells, a synthetic dataset in the DefiNet layout, a real SecantusDB server."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from definet_core.architectures import build_model
from definet_core.checkpoint import save_checkpoint
from definet_core.config import ModelConfig
from workflows.hosts import mos2_monolayer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "definet_2d"
TINY_CONFIG = ModelConfig(hidden=16, layers=2, num_rbf=8, radius=4.0, max_neighbors=12)

torch.set_num_threads(min(2, os.cpu_count() or 1))


def random_defect_cell(rng: np.random.Generator, size: int = 3, n_vacancies: int = 1, n_substitutions: int = 1,
                       c: float | None = None) -> tuple[Structure, Structure]:
    """(defect supercell, host unit cell) of MoS2 with random S vacancies and S->Se substitutions."""
    host = mos2_monolayer()
    cell = host.copy()
    cell.make_supercell([size, size, 1])
    if c is not None:
        cell = Structure(cell.lattice.from_parameters(*cell.lattice.abc[:2], c, *cell.lattice.angles),
                         cell.species, cell.cart_coords, coords_are_cartesian=True)
    sulfur = [i for i, s in enumerate(cell) if s.specie.symbol == "S"]
    chosen = rng.choice(sulfur, n_vacancies + n_substitutions, replace=False)
    for i in chosen[n_vacancies:]:
        cell.replace(int(i), "Se")
    cell.remove_sites(sorted(int(i) for i in chosen[:n_vacancies]))
    return cell, host


def synthetic_relaxation(cell: Structure, host: Structure) -> Structure:
    """A deterministic 'relaxation': atoms near defects move radially, like a real relaxation would."""
    from definet_core.markers import Marker, defect_nodes

    nodes = defect_nodes(cell, host)
    defects = nodes.cart_coords[nodes.markers != Marker.PRISTINE]
    coords = cell.cart_coords.copy()
    for center in defects:
        delta = coords - center
        frac = delta @ cell.lattice.inv_matrix
        delta = (frac - np.rint(frac)) @ cell.lattice.matrix
        dist = np.linalg.norm(delta, axis=1, keepdims=True)
        coords += 0.08 * delta / np.maximum(dist, 1e-6) * np.exp(-dist / 2.0) * (dist > 1e-6)
    return Structure(cell.lattice, cell.species, coords, coords_are_cartesian=True)


def write_dataset(root: Path, sizes: dict[str, int], seed: int = 0, material: str = "MoS2") -> Path:
    """A material directory in the DefiNet dataset layout with synthetic relaxations."""
    rng = np.random.default_rng(seed)
    mat = root / material
    (mat / "CIF").mkdir(parents=True, exist_ok=True)
    host = mos2_monolayer()
    host.to(filename=str(mat / f"{material}.cif"))
    for split, count in sizes.items():
        ids = []
        for k in range(count):
            cell, _ = random_defect_cell(rng, n_vacancies=int(rng.integers(1, 3)), c=20.0)
            atoms_id = f"{material}_{split}_{k}"
            cell.to(filename=str(mat / "CIF" / f"{atoms_id}_unrelaxed.cif"))
            synthetic_relaxation(cell, host).to(filename=str(mat / "CIF" / f"{atoms_id}_relaxed.cif"))
            ids.append(atoms_id)
        (mat / f"{split}.csv").write_text("atoms_id\n" + "\n".join(ids) + "\n")
    return mat


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic dataset root holding one MoS2 material directory."""
    root = tmp_path_factory.mktemp("dataset")
    write_dataset(root, {"train": 12, "val": 4, "test": 4})
    return root


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private graph cache for the test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("DEFINET_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model saved as a checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(TINY_CONFIG), [16, 34, 42])
    return path


def shared_data_or_skip() -> Path:
    """The DFT dataset beside the project; skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a SecantusDB server on a free port with its data in a temporary directory, stopped at the end."""
    from secantus import SecantusDBServer

    from workflows.storage.server import stop_in_process_server

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path_factory.mktemp("secantus")),
                              enable_test_commands=False)
    server.start()
    try:
        yield server.uri
    finally:
        stop_in_process_server(server)


@pytest.fixture()
def database_name(request: pytest.FixtureRequest) -> str:
    """A database name unique to this test."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"
