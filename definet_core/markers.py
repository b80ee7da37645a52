"""Defect matching: label every node of a defect supercell against its pristine reference.

Markers follow DefiNet (0 pristine, 1 substitution, 2 vacancy) and extend it with 3 interstitial.
A vacancy becomes a virtual node at the pristine site carrying the removed element. Matching is
periodic with a Cartesian distance tolerance, never by rounding fractional coordinates.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

from definet_core.errors import DefiNetInputError

MATCH_TOLERANCE = 0.5
"""Default largest distance (A) between a defect-cell atom and the pristine site it occupies."""

LATTICE_TOLERANCE = 0.02
"""Largest relative deviation of a supercell lattice vector from an integer multiple of the unit cell's."""

PRISTINE_CACHE_SIZE = 16
"""Pristine supercells that ``pristine_sites`` remembers: the structures of a run share a few hosts and cells."""
_pristine_cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()


class Marker(IntEnum):
    """Node role in a defect graph."""

    PRISTINE = 0
    SUBSTITUTION = 1
    VACANCY = 2
    INTERSTITIAL = 3


def atom_mask(markers: Any) -> Any:
    """True for the nodes that are real atoms: every node but the vacancies' virtual nodes (a tensor or an array of
    markers in, the same kind out). Positions of these nodes are learned, scored and written back."""
    return markers != Marker.VACANCY


@dataclass
class DefectNodes:
    """Nodes of a defect graph: the atoms of the defect cell plus one virtual node per vacancy.

    ``site_index[k]`` is the index of node k in the input structure, or -1 for a vacancy node;
    nodes appear in input order, followed by the vacancy nodes.
    """

    atomic_numbers: np.ndarray
    cart_coords: np.ndarray
    markers: np.ndarray
    site_index: np.ndarray
    lattice: Lattice

    @property
    def num_atoms(self) -> int:
        """Number of real atoms (nodes that are not vacancies)."""
        return int((self.site_index >= 0).sum())

    def defect_summary(self) -> dict[str, int]:
        """Count of each defect kind, e.g. {"substitution": 2, "vacancy": 1}."""
        return {m.name.lower(): int((self.markers == m).sum()) for m in Marker if m != Marker.PRISTINE}


def atomic_numbers_of(structure: Structure, name: str) -> np.ndarray:
    """Atomic numbers of an ordered structure; raise a one-line error for disordered or dummy sites."""
    if len(structure) == 0:
        raise DefiNetInputError(f"{name}: structure has no atoms")
    numbers = []
    for site in structure:  # one pass over the compositions: Site.is_ordered and Site.specie each cost another
        composition = site.species
        if len(composition) != 1 or composition.num_atoms != 1:
            raise DefiNetInputError(f"{name}: structure is disordered (partial occupancies); give an ordered cell")
        specie = next(iter(composition))
        element = getattr(specie, "element", specie)
        if not isinstance(element, Element):
            raise DefiNetInputError(f"{name}: site species {specie} is not a chemical element")
        numbers.append(element.Z)
    return np.asarray(numbers, dtype=np.int64)


def infer_supercell_matrix(unit_lattice: Lattice, supercell_lattice: Lattice, name: str) -> np.ndarray:
    """Integer matrix M with ``supercell = M @ unit``, allowing a 2D cell whose c length differs.

    When the third supercell vector is parallel to the unit cell's but not an integer multiple of
    it (a slab with more or less vacuum), its row of M is (0, 0, 1) and the caller rescales c.
    """
    unit = unit_lattice.matrix
    sup = supercell_lattice.matrix
    raw = sup @ np.linalg.inv(unit)
    matrix = np.rint(raw).astype(int)
    for row in range(3):
        target = sup[row]
        built = matrix[row] @ unit
        if np.linalg.norm(built - target) <= LATTICE_TOLERANCE * np.linalg.norm(target):
            continue
        if row == 2 and _is_vacuum_direction(unit[2], target, unit[:2]):
            matrix[2] = (0, 0, 1)
            continue
        raise DefiNetInputError(
            f"{name}: lattice vector {row} ({np.round(target, 3).tolist()}) is not an integer multiple "
            "of the host unit cell; the structure does not match its host"
        )
    if round(abs(np.linalg.det(matrix))) == 0:
        raise DefiNetInputError(f"{name}: inferred supercell matrix {matrix.tolist()} is singular")
    return matrix


def _is_vacuum_direction(unit_c: np.ndarray, target_c: np.ndarray, in_plane: np.ndarray) -> bool:
    """True when target_c is parallel to unit_c (same sense) and out of the in-plane vectors' plane."""
    cos = unit_c @ target_c / (np.linalg.norm(unit_c) * np.linalg.norm(target_c))
    normal = np.cross(in_plane[0], in_plane[1])
    return cos > 1 - 1e-4 and abs(normal @ target_c) > 1e-6


def pristine_supercell(host: Structure, supercell_lattice: Lattice, matrix: np.ndarray | None = None,
                       name: str = "structure") -> Structure:
    """Pristine supercell of ``host`` on ``supercell_lattice``.

    ``matrix`` is inferred when omitted. For 2D cells with a different c length the Cartesian
    positions of the unit cell are kept and only the c vector is replaced.
    """
    if matrix is None:
        matrix = infer_supercell_matrix(host.lattice, supercell_lattice, name)
    pristine = host.copy()
    pristine.remove_oxidation_states()
    if not np.array_equal(np.asarray(matrix), np.eye(3)):  # the host may already be the pristine supercell
        pristine.make_supercell(np.asarray(matrix))
    if np.allclose(pristine.lattice.matrix, supercell_lattice.matrix, atol=1e-6):
        return pristine
    cart = pristine.cart_coords
    return Structure(supercell_lattice, pristine.species, cart, coords_are_cartesian=True)


def pristine_sites(host: Structure, supercell_lattice: Lattice, matrix: np.ndarray | None = None,
                   name: str = "structure") -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers and Cartesian coordinates (read-only) of ``pristine_supercell(host, supercell_lattice,
    matrix)``, remembered by content for the last ``PRISTINE_CACHE_SIZE`` (host, lattice, matrix)."""
    key = _pristine_key(host, supercell_lattice, matrix)
    if key in _pristine_cache:
        _pristine_cache.move_to_end(key)
        return _pristine_cache[key]
    pristine = pristine_supercell(host, supercell_lattice, matrix, name)
    sites = (atomic_numbers_of(pristine, f"{name} (pristine reference)"), pristine.cart_coords)
    for array in sites:
        array.setflags(write=False)
    _pristine_cache[key] = sites
    if len(_pristine_cache) > PRISTINE_CACHE_SIZE:
        _pristine_cache.popitem(last=False)
    return sites


def _pristine_key(host: Structure, supercell_lattice: Lattice, matrix: np.ndarray | None) -> bytes:
    """Digest of what ``pristine_supercell`` reads: the host's lattice, species and positions, the target
    lattice and the supercell matrix (or that it is inferred)."""
    digest = hashlib.sha256()
    for array in (host.lattice.matrix, host.frac_coords, supercell_lattice.matrix):
        digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    digest.update(" ".join(site.species_string for site in host).encode())
    digest.update(b"inferred" if matrix is None else np.ascontiguousarray(matrix, dtype=float).tobytes())
    return digest.digest()


def match_to_pristine(defect: Structure, pristine_numbers: np.ndarray, pristine_coords: np.ndarray,
                      tolerance: float = MATCH_TOLERANCE, name: str = "structure",
                      max_defect_fraction: float = 0.5) -> DefectNodes:
    """Assign a marker to every atom of ``defect`` and add a virtual node per vacant pristine site.

    The pristine sites (``pristine_sites``) lie in the defect cell's lattice. Each atom is matched to the
    nearest pristine site within ``tolerance`` (periodic, Cartesian distance on the defect cell's lattice).
    An atom with no site, or losing a site to a closer atom, is an interstitial. When more than
    ``max_defect_fraction`` of the pristine sites are defective the structure is reported as not matching
    its host.
    """
    numbers = atomic_numbers_of(defect, name)
    lattice, coords = defect.lattice, defect.cart_coords
    site_of_atom = nearest_sites(coords, pristine_coords, lattice, tolerance)
    markers = np.full(len(defect), Marker.PRISTINE, dtype=np.int64)
    markers[site_of_atom < 0] = Marker.INTERSTITIAL
    matched = site_of_atom >= 0
    markers[matched & (numbers != pristine_numbers[np.maximum(site_of_atom, 0)])] = Marker.SUBSTITUTION
    occupied = np.zeros(len(pristine_numbers), dtype=bool)
    occupied[site_of_atom[matched]] = True
    vacant = np.flatnonzero(~occupied)
    n_defects = int((markers != Marker.PRISTINE).sum()) + len(vacant)
    if n_defects > max_defect_fraction * len(pristine_numbers):
        raise DefiNetInputError(
            f"{name}: {n_defects} of {len(pristine_numbers)} pristine sites are defective (tolerance {tolerance} A); "
            "the structure does not match its host"
        )
    return DefectNodes(
        atomic_numbers=np.concatenate([numbers, pristine_numbers[vacant]]),
        cart_coords=np.concatenate([coords, pristine_coords[vacant]]),
        markers=np.concatenate([markers, np.full(len(vacant), Marker.VACANCY, dtype=np.int64)]),
        site_index=np.concatenate([np.arange(len(defect)), np.full(len(vacant), -1)]),
        lattice=lattice,
    )


def nearest_sites(atoms: np.ndarray, sites: np.ndarray, lattice: Lattice, tolerance: float) -> np.ndarray:
    """Index of the pristine site each atom occupies (-1: none), one atom per site, closest wins."""
    centers, points, _, distances = find_points_in_spheres(
        np.ascontiguousarray(sites, dtype=float), np.ascontiguousarray(atoms, dtype=float), float(tolerance),
        np.array([1, 1, 1], dtype=np.int64), np.ascontiguousarray(lattice.matrix, dtype=float), tol=1e-8,
    )
    order = np.argsort(distances, kind="stable")
    result = np.full(len(atoms), -1, dtype=np.int64)
    taken = np.zeros(len(sites), dtype=bool)
    for atom, site in zip(centers[order], points[order], strict=True):
        if result[atom] < 0 and not taken[site]:
            result[atom] = site
            taken[site] = True
    return result


def defect_nodes(defect: Structure, host: Structure, supercell_matrix: np.ndarray | None = None,
                 tolerance: float = MATCH_TOLERANCE, name: str = "structure") -> DefectNodes:
    """Markers of ``defect`` against ``host``: a unit cell (matrix given or inferred) or a pristine supercell."""
    pristine_numbers, pristine_coords = pristine_sites(host, defect.lattice, supercell_matrix, name)
    return match_to_pristine(defect, pristine_numbers, pristine_coords, tolerance, name)
