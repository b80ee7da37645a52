"""Pseudo-labelled training pairs: the defects of a dataset's training cells re-placed at random on their own
sublattices, relaxed by a teacher (usually an ensemble), written in the dataset layout for ``definet train``.

The high-density sets hold 400 DFT pairs per material, and every model trained on them overfits within a few
epochs; an ensemble of two lineages is 3 % more accurate than either member. New arrangements of the same
defects, labelled by that ensemble, give a single network more of what the ensemble knows (distillation on
new inputs): ``definet pseudo-label``.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from tqdm import tqdm

from definet_core.dataset import MaterialSet, find_material_sets, material_key
from definet_core.errors import DefiNetInputError
from definet_core.io import read_structure
from definet_core.markers import MATCH_TOLERANCE, nearest_sites, pristine_supercell
from definet_core.predict import Predictor


@dataclass(frozen=True)
class PseudoSet:
    """What ``write_pseudo_set`` wrote for one material: the cells generated and those kept (in domain)."""

    key: str
    generated: int
    kept: int


def rearranged_defects(unrelaxed: Structure, host: Structure, rng: np.random.Generator,
                       name: str = "structure") -> Structure:
    """``unrelaxed`` (a defect cell on the ideal lattice of ``host``'s pristine supercell) with the occupants of
    each sublattice, atoms and vacancies alike, shuffled among that sublattice's sites: the same defects, the
    same composition, other places."""
    pristine = pristine_supercell(host, unrelaxed.lattice, name=name)
    site_of_atom = nearest_sites(unrelaxed.cart_coords, pristine.cart_coords, unrelaxed.lattice, MATCH_TOLERANCE)
    if (site_of_atom < 0).any():
        atom = int(np.flatnonzero(site_of_atom < 0)[0])
        offset = unrelaxed.lattice.get_all_distances(unrelaxed.frac_coords[atom], pristine.frac_coords).min()
        if offset > MATCH_TOLERANCE:
            raise DefiNetInputError(f"{name}: atom {atom} is {offset:.2f} A from the nearest site of the pristine "
                                    "supercell; rearranging needs an unrelaxed cell on the ideal lattice")
        raise DefiNetInputError(f"{name}: two atoms sit on one site of the pristine supercell (an interstitial); "
                                "only substitutions and vacancies can be rearranged")
    occupants: list = [None] * len(pristine)  # the species on each pristine site; None: a vacancy
    for atom, site in enumerate(site_of_atom):
        occupants[site] = unrelaxed[atom].species
    sublattice = np.array([site.specie.Z for site in pristine])
    for z in np.unique(sublattice):
        sites = np.flatnonzero(sublattice == z)
        moved = [occupants[i] for i in rng.permutation(sites)]
        for site, occupant in zip(sites, moved, strict=True):
            occupants[site] = occupant
    kept = [i for i, occupant in enumerate(occupants) if occupant is not None]
    return Structure(unrelaxed.lattice, [occupants[i] for i in kept], pristine.frac_coords[kept])


LABEL_CHUNK = 256  # cells rearranged, predicted and written at a time: memory holds a chunk, not a whole set


def _rearrangements(material: MaterialSet, ids: list[str], host: Structure, copies: int, rng: np.random.Generator,
                    key: str) -> Iterator[tuple[str, Structure]]:
    """``(id, cell)`` for ``copies`` rearrangements of each of ``material``'s cells ``ids``, generated lazily."""
    for atoms_id in ids:
        unrelaxed = read_structure(material.pair_paths(atoms_id)[0])
        for copy in range(copies):
            yield f"pseudo{copy}_{atoms_id}", rearranged_defects(unrelaxed, host, rng, name=f"{key}/{atoms_id}")


def write_pseudo_set(material: MaterialSet, out: Path, teacher: Predictor, copies: int = 1, seed: int = 0,
                     key: str | None = None) -> PseudoSet:
    """``copies`` rearrangements (``rearranged_defects``) of each train cell of ``material``, predicted by
    ``teacher``; those it judges in domain are written under ``out`` in the dataset layout (``CIF/<id>_unrelaxed.cif``
    and ``_relaxed.cif``, the host unit cell, a ``train.csv`` and no val split), ``train.csv`` last, so a set
    without it is incomplete. Ids are ``pseudo<copy>_<source id>``. Cells are labelled ``LABEL_CHUNK`` at a time,
    so memory does not grow with the set or ``copies``."""
    key = key or material.name
    host_path = material.unit_cell_path
    host = read_structure(host_path)
    (out / "CIF").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(host_path, out / host_path.name)
    ids = material.split_ids("train")
    rearrangements = _rearrangements(material, ids, host, copies, np.random.default_rng(seed), key)
    generated, kept = 0, []
    with tqdm(total=len(ids) * copies, desc=f"{key} pseudo-labels", unit="cell") as bar:
        while chunk := list(islice(rearrangements, LABEL_CHUNK)):
            names, cells = zip(*chunk, strict=True)
            for atoms_id, cell, prediction in zip(names, cells, teacher.predictions(list(cells), host),
                                                  strict=True):
                if prediction.verdict.in_domain:
                    cell.to(filename=str(out / "CIF" / f"{atoms_id}_unrelaxed.cif"))
                    prediction.structure.to(filename=str(out / "CIF" / f"{atoms_id}_relaxed.cif"))
                    kept.append(atoms_id)
            generated += len(cells)
            bar.update(len(cells))
    partial = out / "train.csv.partial"
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["atoms_id"])
        writer.writerows([atoms_id] for atoms_id in kept)
    partial.replace(out / "train.csv")
    return PseudoSet(key, generated, len(kept))


def write_pseudo_sets(data: str | Path, out: str | Path, teacher: Predictor, copies: int = 1,
                      seed: int = 0) -> list[PseudoSet]:
    """``write_pseudo_set`` for every material set under ``data``, each under ``out`` at the same relative path
    (``high_density/MoS2``); a set already complete there (its ``train.csv`` written) is kept, not redone, so an
    interrupted run started again finishes the rest."""
    data, out = Path(data), Path(out)
    if copies < 1:
        raise DefiNetInputError(f"--copies {copies}: must be at least 1")
    written = []
    for index, material in enumerate(find_material_sets(data)):
        key = material_key(data, material)
        if (out / key / "train.csv").is_file():
            continue
        written.append(write_pseudo_set(material, out / key, teacher, copies, seed + index, key))
    return written
