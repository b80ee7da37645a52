"""Reader for the public DefiNet dataset layout, with an on-disk cache of processed graphs.

Layout of one material directory (any host, any number of them)::

    <MAT>/CIF/<atoms_id>_unrelaxed.cif   defect supercell, ideal positions
    <MAT>/CIF/<atoms_id>_relaxed.cif     DFT-relaxed positions, same cell and site order
    <MAT>/<unit cell>.cif                pristine host unit cell (the one .cif beside CIF/)
    <MAT>/train.csv, val.csv, test.csv   column ``atoms_id``
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data
from tqdm import tqdm

from definet_core.applicability import dimensionality
from definet_core.errors import DefiNetInputError
from definet_core.graph import build_graph, graph_from_arrays, graph_to_arrays, node_graph
from definet_core.io import read_structure, save_atomically
from definet_core.markers import DefectNodes, atom_mask, defect_nodes, infer_supercell_matrix
from definet_core.metrics import site_displacements

CACHE_VERSION = "2"


def default_cache_dir() -> Path:
    """Graph cache directory: ``$DEFINET_CACHE`` or ``~/.cache/definet/graphs``."""
    return Path(os.environ.get("DEFINET_CACHE", Path.home() / ".cache" / "definet" / "graphs"))


@dataclass(frozen=True)
class MaterialSet:
    """One material directory of the dataset layout."""

    root: Path

    @property
    def name(self) -> str:
        """Directory name, e.g. ``MoS2``."""
        return self.root.name

    @property
    def unit_cell_path(self) -> Path:
        """The single host unit-cell CIF beside ``CIF/``."""
        cifs = sorted(self.root.glob("*.cif"))
        if len(cifs) != 1:
            raise DefiNetInputError(
                f"{self.root}: expected exactly one host unit-cell .cif beside CIF/, found {len(cifs)}")
        return cifs[0]

    def split_ids(self, split: str) -> list[str]:
        """Structure ids listed in ``<split>.csv`` (column ``atoms_id``)."""
        path = self.root / f"{split}.csv"
        if not path.is_file():
            raise DefiNetInputError(f"{path}: split file not found")
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "atoms_id" not in reader.fieldnames:
                raise DefiNetInputError(f"{path}: no 'atoms_id' column")
            return [row["atoms_id"].strip() for row in reader if row["atoms_id"].strip()]

    def pair_paths(self, atoms_id: str) -> tuple[Path, Path]:
        """Paths of the unrelaxed and relaxed CIFs of one structure."""
        cif = self.root / "CIF"
        return cif / f"{atoms_id}_unrelaxed.cif", cif / f"{atoms_id}_relaxed.cif"


def find_material_sets(root: str | Path) -> list[MaterialSet]:
    """Every material directory at or below ``root`` (one holding ``CIF/`` and split files)."""
    root = Path(root)
    if not root.is_dir():
        raise DefiNetInputError(f"{root}: data directory not found")
    found = [MaterialSet(p.parent) for p in sorted(root.rglob("CIF")) if p.is_dir()
             and any(p.parent.glob("*.csv"))]
    if not found:
        raise DefiNetInputError(f"{root}: no material directory (CIF/ with split .csv files) found")
    return found


def nearest_image_coords(unrelaxed: Structure, relaxed: Structure, name: str) -> np.ndarray:
    """Cartesian relaxed positions mapped to the periodic image nearest the unrelaxed ones."""
    if len(unrelaxed) != len(relaxed) or [s.specie for s in unrelaxed] != [s.specie for s in relaxed]:
        raise DefiNetInputError(f"{name}: relaxed and unrelaxed structures have different sites")
    return unrelaxed.cart_coords + site_displacements(unrelaxed, relaxed)


def load_pair(material: MaterialSet, atoms_id: str, host: Structure, radius: float, max_neighbors: int) -> Data:
    """Graph of one unrelaxed/relaxed pair with its target positions and identifiers."""
    nodes, target = pair_nodes(material, atoms_id, host)
    data = build_graph(nodes, radius, max_neighbors, relaxed_coords=target)
    data.atoms_id = atoms_id
    return data


def pair_nodes(material: MaterialSet, atoms_id: str, host: Structure) -> tuple[DefectNodes, np.ndarray]:
    """The defect nodes of one pair's unrelaxed cell and their target positions (vacancy nodes stay put)."""
    unrelaxed_path, relaxed_path = material.pair_paths(atoms_id)
    unrelaxed = read_structure(unrelaxed_path)
    relaxed = read_structure(relaxed_path)
    matrix = infer_supercell_matrix(host.lattice, unrelaxed.lattice, str(unrelaxed_path))
    nodes = defect_nodes(unrelaxed, host, matrix, name=str(unrelaxed_path))
    relaxed_atoms = nearest_image_coords(unrelaxed, relaxed, str(relaxed_path))
    target = nodes.cart_coords.copy()
    target[: len(relaxed_atoms)] = relaxed_atoms
    return nodes, target


def host_kind(material: MaterialSet, split: str) -> str:
    """``applicability.dimensionality`` of the material's host, from the first structure of ``split``."""
    nodes, _ = pair_nodes(material, material.split_ids(split)[0], read_structure(material.unit_cell_path))
    return dimensionality(node_graph(nodes))


def _load_pair_job(args: tuple) -> dict:
    """Worker: one pair as plain arrays (torch tensors would cross processes as file descriptors)."""
    root, atoms_id, radius, max_neighbors = args
    material = MaterialSet(Path(root))
    return graph_to_arrays(load_pair(material, atoms_id, read_structure(material.unit_cell_path), radius,
                                     max_neighbors))


def _cache_key(material: MaterialSet, split: str, ids: list[str], radius: float, max_neighbors: int) -> str:
    """The source files' names and bytes, and the graph settings: a view of symlinks, a copy, or the same files
    provisioned again (new paths or modification times) share one cache; an edited file misses it. Reading the
    bytes costs ~3 s for 11,000 CIFs, against minutes to build their graphs."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, split, radius, max_neighbors]).encode())
    paths = [material.unit_cell_path, *(p for i in ids for p in material.pair_paths(i))]
    for path in paths:
        digest.update(f"{path.name}:".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.exists() else b"missing")
    return digest.hexdigest()[:24]


def load_split(material: MaterialSet, split: str, radius: float, max_neighbors: int,
               cache_dir: Path | None = None, workers: int | None = None, progress: bool = True) -> list[Data]:
    """Graphs of one split of one material, from the cache when its sources are unchanged."""
    ids = material.split_ids(split)
    cache_dir = cache_dir or default_cache_dir()
    cache_file = cache_dir / f"{material.name}-{split}-{_cache_key(material, split, ids, radius, max_neighbors)}.pt"
    if cache_file.is_file():
        return torch.load(cache_file, weights_only=False)
    jobs = [(str(material.root), i, radius, max_neighbors) for i in ids]
    workers = workers or os.cpu_count() or 1
    desc = f"{material.root.parent.name}/{material.name} {split}"
    with ProcessPoolExecutor(max_workers=workers) as pool:
        graphs = [graph_from_arrays(values) for values in tqdm(pool.map(_load_pair_job, jobs, chunksize=16),
                                                          total=len(jobs), desc=desc, disable=not progress)]
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_atomically(graphs, cache_file)
    return graphs


def load_dataset(roots: Iterable[str | Path], split: str, radius: float, max_neighbors: int,
                 cache_dir: Path | None = None, progress: bool = True,
                 settings_by_kind: Mapping[str, tuple[float, int]] | None = None) -> dict[str, list[Data]]:
    """Graphs of ``split`` for every material below each root, keyed ``"<root name>/<relative path>"``.

    Each graph's ``material`` attribute holds the same key, so per-material metrics survive batching.
    ``settings_by_kind``: (radius, max_neighbors) per host kind where it differs from the ones given (a router's
    routes, ``predict.Predictor.settings_by_kind``); a material of such a host is read at its kind's.
    """
    result: dict[str, list[Data]] = {}
    for root in roots:
        root = Path(root)
        for material in find_material_sets(root):
            if not (material.root / f"{split}.csv").is_file():
                continue
            key = material_key(root, material)
            if key in result:
                key = f"{root.name}/{key}"
            settings = (radius, max_neighbors)
            if settings_by_kind:
                settings = settings_by_kind.get(host_kind(material, split), settings)
            graphs = load_split(material, split, *settings, cache_dir, progress=progress)
            for graph in graphs:
                graph.material = key
            result[key] = graphs
    if not result:
        raise DefiNetInputError(f"{', '.join(map(str, roots))}: no material has a {split}.csv split")
    return result


def with_min_atoms(sets: dict[str, list[Data]], min_atoms: int, split: str) -> dict[str, list[Data]]:
    """``sets`` without the structures of fewer than ``min_atoms`` atoms (vacancy nodes not counted), and without
    the materials left empty; all of ``sets`` for ``min_atoms`` 0. A one-line error when nothing is left."""
    if min_atoms <= 0:
        return sets
    kept = {key: [g for g in graphs if int(atom_mask(g.marker).sum()) >= min_atoms] for key, graphs in sets.items()}
    kept = {key: graphs for key, graphs in kept.items() if graphs}
    if not kept:
        raise DefiNetInputError(f"--min-atoms {min_atoms}: no {split} structure has that many atoms")
    return kept


def material_key(root: Path, material: MaterialSet) -> str:
    """Material path relative to the data root (e.g. ``high_density/MoS2``); the root's name if equal."""
    relative = material.root.relative_to(root)
    return str(relative) if str(relative) != "." else material.root.name
