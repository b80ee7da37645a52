"""Defect enumeration: single point defects and many-defect configurations in host supercells.

Single defects come from pymatgen-analysis-defects' generators (one per symmetry-distinct site of
the host unit cell); many-defect configurations, as in the DefiNet training data, are seeded
random draws of sites in the pristine supercell with symmetry-equivalent draws removed. Every
case knows its pristine supercell (rebuilt from its structure and defects, not stored) so that defect
markers are exact, and has a deterministic id. Structures never carry oxidation states.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, PlainSerializer
from pymatgen.analysis.defects.core import Defect
from pymatgen.analysis.defects.generators import (
    SubstitutionGenerator,
    VacancyGenerator,
    VoronoiInterstitialGenerator,
)
from pymatgen.analysis.defects.supercells import get_sc_fromstruct
from pymatgen.core import Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from definet_core.applicability import SLAB_VACUUM_A, largest_gap
from definet_core.errors import DefiNetInputError

SLAB_MARGIN = 1.0
"""Largest distance (A) outside a 2D host's atomic planes at which interstitials are kept."""

DEFAULT_MIN_LENGTH = 10.0
"""Minimum supercell lattice length (A) when no supercell criterion is given."""

SYMPREC = 0.01
"""Symmetry tolerance (A) for site equivalence, as in pymatgen-analysis-defects' generators."""

SITE_TOLERANCE = 0.01
"""Largest distance (A) between a generated defect site and the pristine supercell site it maps to."""


def _structure_as_dict(structure: Structure) -> dict:
    return structure.as_dict()


# Structure is MSONable, so pydantic validates it from the object or its as_dict form; JSON dumps use as_dict.
StructureField = Annotated[Structure, PlainSerializer(_structure_as_dict, return_type=dict, when_used="json")]


class DefectSpec(BaseModel):
    """One point defect of a case, located in the pristine supercell."""

    kind: Literal["vacancy", "substitution", "interstitial"]
    species: str | None
    original: str | None
    site_index: int | None
    frac_coords: list[float]
    label: str


class DefectCase(BaseModel):
    """A defect supercell (unrelaxed) and the defects that make it differ from its pristine supercell.

    Site order: the pristine supercell's sites with the vacancies removed (substitutions in place),
    then the interstitials. The pristine supercell is not stored but rebuilt from that (``pristine``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    case_id: str
    host_id: str
    supercell_matrix: list[list[int]]
    defects: list[DefectSpec]
    structure: StructureField

    @property
    def name(self) -> str:
        """Labels of the defects joined by "+", e.g. "v_S+Se_S"."""
        return "+".join(d.label for d in self.defects)

    @cached_property
    def pristine(self) -> Structure:
        """The pristine supercell: interstitials dropped, substituted sites given back their element,
        vacancies put back at their pristine site index and position."""
        vacancies = {d.site_index: d for d in self.defects if d.kind == "vacancy"}
        originals = {d.site_index: d.original for d in self.defects if d.kind == "substitution"}
        kept = len(self.structure) - sum(d.kind == "interstitial" for d in self.defects)
        sites = iter(self.structure.sites[:kept])
        species, coords = [], []
        for index in range(kept + len(vacancies)):
            if index in vacancies:
                species.append(vacancies[index].original)
                coords.append(vacancies[index].frac_coords)
            else:
                site = next(sites)
                species.append(originals.get(index, site.specie.symbol))
                coords.append(site.frac_coords)
        return Structure(self.structure.lattice, species, coords)


def is_two_dimensional(host: Structure) -> bool:
    """True when the host has an empty slab of at least ``SLAB_VACUUM_A`` along c (a 2D material; the same rule
    as the applicability domain's)."""
    return len(host) > 0 and largest_gap(host.frac_coords, host.lattice.matrix, 2)[0] >= SLAB_VACUUM_A


def _clean(host: Structure, host_id: str) -> Structure:
    """Copy of the host without oxidation states; ordered hosts only."""
    if len(host) == 0 or not host.is_ordered:
        raise DefiNetInputError(f"host {host_id}: structure is empty or disordered; give an ordered cell")
    host = host.copy()
    host.remove_oxidation_states()
    return host


def _check_matrix(host: Structure, matrix: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    raw = np.asarray(matrix, dtype=float)
    if raw.shape == (3,):
        raw = np.diag(raw)
    if raw.shape != (3, 3) or not np.allclose(raw, np.rint(raw)):
        raise DefiNetInputError(f"supercell matrix {raw.tolist()}: must be a 3x3 integer matrix (or 3 diagonal values)")
    result = np.rint(raw).astype(int)
    if round(np.linalg.det(result)) <= 0:
        raise DefiNetInputError(f"supercell matrix {result.tolist()}: determinant must be positive")
    if is_two_dimensional(host) and (result[2].tolist() != [0, 0, 1] or result[:2, 2].any()):
        raise DefiNetInputError(f"supercell matrix {result.tolist()}: the host is 2D (vacuum along c), "
                                "so the supercell may only grow in-plane (third row and column (0, 0, 1))")
    return result


def choose_supercell(host: Structure, matrix: Sequence[Sequence[int]] | None = None, min_atoms: int | None = None,
                     min_length: float | None = None) -> np.ndarray:
    """Supercell matrix for ``host``: the explicit ``matrix`` (validated), or the smallest cell meeting the criteria.

    Without any criterion the lattice vectors must be at least DEFAULT_MIN_LENGTH long. Bulk hosts get
    pymatgen-analysis-defects' near-cubic supercell; 2D hosts grow only in-plane (third row (0, 0, 1)),
    diagonally, lengthening the shorter in-plane vector (both when equal, so hexagonal cells stay hexagonal).
    """
    if matrix is not None:
        return _check_matrix(host, matrix)
    if min_atoms is not None and min_atoms < 1:
        raise DefiNetInputError(f"min_atoms {min_atoms}: must be a positive number of atoms")
    if min_length is not None and min_length <= 0:
        raise DefiNetInputError(f"min_length {min_length}: must be a positive length in A")
    if min_atoms is None and min_length is None:
        min_length = DEFAULT_MIN_LENGTH
    if is_two_dimensional(host):
        a, b = host.lattice.abc[:2]
        n = [max(1, math.ceil((min_length or 0.0) / a - 1e-9)), max(1, math.ceil((min_length or 0.0) / b - 1e-9))]
        while n[0] * n[1] * len(host) < (min_atoms or 0):
            la, lb = n[0] * a, n[1] * b
            if abs(la - lb) < 1e-6:
                n = [n[0] + 1, n[1] + 1]
            else:
                n[int(lb < la)] += 1
        return np.diag([n[0], n[1], 1])
    if min_length is None:  # start the cubic search near the cube holding min_atoms atoms
        min_length = 0.75 * (min_atoms * host.volume / len(host)) ** (1 / 3)
    result = np.rint(get_sc_fromstruct(host, min_atoms=min_atoms, max_atoms=None, min_length=min_length)).astype(int)
    return -result if np.linalg.det(result) < 0 else result


def case_id(host_id: str, supercell_matrix: Sequence[Sequence[int]] | np.ndarray, defects: list[DefectSpec]) -> str:
    """Deterministic id "<host_id>-<16 hex>" from host id, supercell matrix and the sorted defect list."""

    def key(d: DefectSpec) -> list:
        coords = [round(x % 1.0, 4) % 1.0 for x in d.frac_coords] if d.site_index is None else None
        return [d.kind, d.species or "", d.original or "", -1 if d.site_index is None else d.site_index, coords]

    payload = {"host": host_id, "matrix": np.asarray(supercell_matrix, dtype=int).tolist(),
               "defects": sorted((key(d) for d in defects), key=json.dumps)}
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    return f"{host_id}-{digest[:16]}"


def _element(symbol: str, host_id: str, role: str) -> str:
    if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
        raise DefiNetInputError(f"host {host_id}: {role} {symbol!r} is not a chemical element")
    return symbol


def _host_element(symbol: str, host: Structure, host_id: str, role: str) -> str:
    elements = sorted(host.symbol_set)
    if _element(symbol, host_id, role) not in elements:
        raise DefiNetInputError(f"host {host_id}: {role} {symbol} is not in the host (elements: {', '.join(elements)})")
    return symbol


def _spec(kind: str, pristine: Structure, site_index: int | None, species: str | None,
          frac_coords: Sequence[float] | None = None) -> DefectSpec:
    original = None if site_index is None else pristine[site_index].specie.symbol
    label = {"vacancy": f"v_{original}", "substitution": f"{species}_{original}", "interstitial": f"{species}_i"}[kind]
    coords = pristine[site_index].frac_coords if site_index is not None else np.asarray(frac_coords) % 1.0
    return DefectSpec(kind=kind, species=species, original=original, site_index=site_index,
                      frac_coords=[float(x) for x in coords], label=label)


def _make_case(host_id: str, matrix: np.ndarray, pristine: Structure, defects: list[DefectSpec]) -> DefectCase:
    """Case from ``pristine`` with ``defects``: substitutions in place, interstitials appended, vacancies removed."""
    order = {"vacancy": 0, "substitution": 1, "interstitial": 2}
    defects = sorted(defects, key=lambda d: (order[d.kind], d.label, d.site_index or 0, d.frac_coords))
    structure = pristine.copy()
    for d in defects:
        if d.kind == "substitution":
            structure.replace(d.site_index, d.species)
        elif d.kind == "interstitial":
            structure.append(d.species, d.frac_coords)
    structure.remove_sites([d.site_index for d in defects if d.kind == "vacancy"])
    return DefectCase(case_id=case_id(host_id, matrix, defects), host_id=host_id, supercell_matrix=matrix.tolist(),
                      defects=defects, structure=structure)


def _pristine(host: Structure, matrix: np.ndarray) -> Structure:
    pristine = host.copy()
    pristine.make_supercell(matrix)
    return pristine


def _supercell_site(defect: Defect, pristine: Structure, matrix: np.ndarray, host_id: str) -> int:
    """Index of the pristine-supercell site at the generator's unit-cell defect site."""
    frac = defect.site.frac_coords @ np.linalg.inv(matrix)
    distances = pristine.lattice.get_all_distances([frac], pristine.frac_coords)[0]
    index = int(np.argmin(distances))
    if distances[index] > SITE_TOLERANCE:
        raise DefiNetInputError(f"host {host_id}: defect site {defect.name} has no pristine supercell site")
    return index


def _in_slab(host: Structure, frac_z: float) -> bool:
    """True when a height lies inside a 2D host's slab or within SLAB_MARGIN of its outer atomic planes."""
    width, start, frac_width = largest_gap(host.frac_coords, host.lattice.matrix, 2)
    depth = (frac_z - start) % 1.0
    return depth >= frac_width or min(depth, frac_width - depth) * width / frac_width <= SLAB_MARGIN


def single_defects(host_id: str, host: Structure, supercell_matrix: np.ndarray,
                   substitutions: dict[str, list[str]] | None = None, interstitials: list[str] | None = None,
                   vacancies: bool = True) -> list[DefectCase]:
    """One case per symmetry-distinct single defect of ``host``, each in the ``supercell_matrix`` supercell.

    Vacancies of every element (``vacancies=True``), substitutions from a map such as {"S": ["Se", "Te"]},
    and interstitials of the given elements at Voronoi sites (for 2D hosts only sites in or just outside the
    slab, none in the vacuum). Sites are distinct under the unit cell's symmetry.
    """
    host = _clean(host, host_id)
    matrix = choose_supercell(host, supercell_matrix)
    pristine = _pristine(host, matrix)
    generated: list[tuple[str, Defect, str | None]] = []
    if vacancies:
        generated += [("vacancy", d, None) for d in VacancyGenerator(symprec=SYMPREC).generate(host)]
    subs = {_host_element(el, host, host_id, "substituted element"): [new] if isinstance(new, str) else list(new)
            for el, new in (substitutions or {}).items()}
    for el, news in subs.items():
        for new in news:
            if _element(new, host_id, "substituent") == el:
                raise DefiNetInputError(f"host {host_id}: substitution {el} -> {new} does not change the element")
    if any(subs.values()):
        generated += [("substitution", d, d.site.specie.symbol)
                      for d in SubstitutionGenerator(symprec=SYMPREC).generate(host, subs)]
    cases = [_make_case(host_id, matrix, pristine,
                        [_spec(kind, pristine, _supercell_site(d, pristine, matrix, host_id), species)])
             for kind, d, species in generated]
    species = list(dict.fromkeys(_element(el, host_id, "interstitial") for el in interstitials or []))
    if species:
        two_d = is_two_dimensional(host)
        inv = np.linalg.inv(matrix)
        for d in VoronoiInterstitialGenerator().generate(host, species):
            if not two_d or _in_slab(host, d.site.frac_coords[2]):
                spec = _spec("interstitial", pristine, None, d.site.specie.symbol, d.site.frac_coords @ inv)
                cases.append(_make_case(host_id, matrix, pristine, [spec]))
    if not cases:
        raise DefiNetInputError(f"host {host_id}: no single defects to enumerate (vacancies "
                                f"{'on' if vacancies else 'off'}, substitutions {substitutions or {}}, "
                                f"interstitials {interstitials or []})")
    return cases


def _count(value: int | float, n_sites: int, host_id: str, what: str) -> int:
    """Number of sites from a count (int >= 0) or a density (float in (0, 1)) of ``n_sites`` sites."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DefiNetInputError(
            f"host {host_id}: {what} {value!r} must be a count (int) or a density (float in (0, 1))")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise DefiNetInputError(f"host {host_id}: {what} count {value} is negative")
        return int(value)
    if not 0 < value < 1:
        raise DefiNetInputError(f"host {host_id}: {what} density {value} is not in (0, 1)")
    count = round(value * n_sites)
    if count == 0:
        raise DefiNetInputError(f"host {host_id}: {what} density {value} selects none of {n_sites} sites; "
                                "use a larger supercell or density")
    return count


def _permutation(frac: np.ndarray, lattice_matrix: np.ndarray, rotation: np.ndarray,
                 translation: np.ndarray) -> np.ndarray | None:
    """Site permutation of a fractional symmetry operation (None when it does not map sites onto sites)."""
    diff = (frac @ rotation.T + translation)[:, None, :] - frac[None, :, :]
    diff -= np.rint(diff)
    distances = np.linalg.norm(diff @ lattice_matrix, axis=-1)
    perm = np.argmin(distances, axis=1)
    ok = distances[np.arange(len(frac)), perm].max() < 10 * SYMPREC and len(set(perm.tolist())) == len(frac)
    return perm if ok else None


def _site_permutations(pristine: Structure) -> np.ndarray:
    """(n_ops, n_sites) permutations of the pristine supercell's sites under its space group.

    The group is built as pure translations times one operation per rotation, which keeps the
    number of site matchings small in large supercells.
    """
    ops = SpacegroupAnalyzer(pristine, symprec=SYMPREC).get_symmetry_operations()
    frac, lattice = pristine.frac_coords, pristine.lattice.matrix
    translations, rotations = [], {}
    for op in ops:
        rotation = np.rint(op.rotation_matrix).astype(int)
        if (rotation == np.eye(3, dtype=int)).all():
            translations.append(op.translation_vector)
        rotations.setdefault(rotation.tobytes(), (rotation, op.translation_vector))
    perm_t = [p for t in translations if (p := _permutation(frac, lattice, np.eye(3), t)) is not None]
    perm_r = [p for r, t in rotations.values() if (p := _permutation(frac, lattice, r, t)) is not None]
    numbers = np.array([site.specie.Z for site in pristine])
    perms = np.asarray(perm_t)[:, np.asarray(perm_r)].reshape(-1, len(pristine))
    return perms[(numbers[perms] == numbers).all(axis=1)]


def _canonical(perms: np.ndarray, sites: np.ndarray, codes: np.ndarray) -> tuple[int, ...]:
    """Smallest sorted (site, species code) set over all symmetry images of a configuration."""
    images = np.sort(perms[:, sites].astype(np.int64) * 128 + codes, axis=1)
    return tuple(images[np.lexsort(images.T[::-1])[0]].tolist())


Plan = dict[str, list[tuple[str | None, int]]]
"""Defects of one configuration per host element: [(new species, or None for a vacancy, number of sites)]."""


class DenseSampler:
    """Seeded draws of many-defect configurations in one pristine supercell, symmetry-equivalent draws skipped.

    The supercell's site permutations are computed once; every configuration drawn (whatever its plan)
    is remembered by its canonical form, so :meth:`draw` never returns two equivalent configurations.
    """

    def __init__(self, host_id: str, host: Structure, supercell_matrix: np.ndarray) -> None:
        self.host_id = host_id
        self.host = _clean(host, host_id)
        self.matrix = choose_supercell(self.host, supercell_matrix)
        self.pristine = _pristine(self.host, self.matrix)
        self.symbols = np.array([site.specie.symbol for site in self.pristine])
        self._perms: np.ndarray | None = None
        self._seen: set[tuple[int, ...]] = set()

    def sites(self, element: str) -> int:
        """Number of sites of a host element in the supercell (one-line error when it is not in the host)."""
        return int((self.symbols == _host_element(element, self.host, self.host_id, "defect element")).sum())

    def plan(self, vacancies: dict[str, int | float] | None = None,
             substitutions: dict[str, dict[str, int | float]] | None = None) -> Plan:
        """Validated plan from counts or densities (see :func:`dense_defects`); one-line errors for bad input."""
        host, host_id = self.host, self.host_id
        plan: Plan = {}
        for el, value in (vacancies or {}).items():
            n_sites = int((self.symbols == _host_element(el, host, host_id, "vacancy element")).sum())
            plan.setdefault(el, []).append((None, _count(value, n_sites, host_id, f"{el} vacancy")))
        for el, news in (substitutions or {}).items():
            n_sites = int((self.symbols == _host_element(el, host, host_id, "substituted element")).sum())
            for new, value in sorted(news.items()):
                if _element(new, host_id, "substituent") == el:
                    raise DefiNetInputError(f"host {host_id}: substitution {el} -> {new} does not change the element")
                plan.setdefault(el, []).append((new, _count(value, n_sites, host_id, f"{el}->{new} substitution")))
        plan = {el: [(new, n) for new, n in items if n > 0] for el, items in sorted(plan.items())}
        if not any(plan.values()):
            raise DefiNetInputError(f"host {host_id}: no defects requested (vacancies {vacancies or {}}, "
                                    f"substitutions {substitutions or {}})")
        for el, items in plan.items():
            wanted, available = sum(n for _, n in items), self.sites(el)
            if wanted > available:
                raise DefiNetInputError(f"host {host_id}: {wanted} {el} defects requested but the supercell "
                                        f"{self.matrix.tolist()} has only {available} {el} sites")
        return plan

    def draw(self, plan: Plan, rng: np.random.Generator) -> DefectCase | None:
        """One configuration of ``plan`` drawn with ``rng``; None when it is equivalent to one drawn before."""
        if self._perms is None:
            self._perms = _site_permutations(self.pristine)
        chosen: list[tuple[int, str | None]] = []
        for el, items in plan.items():
            picked = rng.choice(np.flatnonzero(self.symbols == el), size=sum(n for _, n in items),
                                replace=False).tolist()
            for new, n in items:
                chosen += [(i, new) for i in picked[:n]]
                picked = picked[n:]
        sites = np.array([i for i, _ in chosen])
        codes = np.array([0 if new is None else Element(new).Z for _, new in chosen])
        key = _canonical(self._perms, sites, codes)
        if key in self._seen:
            return None
        self._seen.add(key)
        specs = [_spec("vacancy" if new is None else "substitution", self.pristine, i, new) for i, new in chosen]
        return _make_case(self.host_id, self.matrix, self.pristine, specs)


def iter_dense_defects(host_id: str, host: Structure, supercell_matrix: np.ndarray, n_configs: int,
                       vacancies: dict[str, int | float] | None = None,
                       substitutions: dict[str, dict[str, int | float]] | None = None,
                       seed: int = 0) -> Iterator[DefectCase]:
    """Up to ``n_configs`` distinct random many-defect configurations in the ``supercell_matrix`` supercell.

    ``vacancies`` maps an element to a count (int) or a density (float in (0, 1), fraction of that element's
    sites); ``substitutions`` maps an element to {new element: count or density}. Each configuration removes
    and replaces exactly these numbers of sites, drawn with ``numpy.random.default_rng(seed)``. Draws that
    are symmetry-equivalent (under the pristine supercell's space group) to an earlier one are skipped, so
    fewer than ``n_configs`` cases come when fewer distinct configurations exist. The request is checked
    here (one-line errors); the cases are drawn lazily as the returned iterator is consumed.
    """
    sampler = DenseSampler(host_id, host, supercell_matrix)
    if isinstance(n_configs, bool) or not isinstance(n_configs, numbers.Integral) or n_configs < 1:
        raise DefiNetInputError(f"host {host_id}: n_configs {n_configs!r} must be a positive integer")
    plan = sampler.plan(vacancies, substitutions)

    def draws() -> Iterator[DefectCase]:
        rng = np.random.default_rng(seed)
        found = 0
        for _ in range(max(1000, 50 * n_configs)):
            case = sampler.draw(plan, rng)
            if case is not None:
                yield case
                found += 1
                if found == n_configs:
                    return

    return draws()


def dense_defects(host_id: str, host: Structure, supercell_matrix: np.ndarray, n_configs: int,
                  vacancies: dict[str, int | float] | None = None,
                  substitutions: dict[str, dict[str, int | float]] | None = None, seed: int = 0) -> list[DefectCase]:
    """:func:`iter_dense_defects` as a list."""
    return list(iter_dense_defects(host_id, host, supercell_matrix, n_configs, vacancies, substitutions, seed))


def survey(cases: Iterable[DefectCase]) -> tuple[int, set[str]]:
    """Number of cases and the elements they hold, consuming ``cases`` one at a time (none is kept)."""
    count, elements = 0, set()
    for case in cases:
        count += 1
        elements |= set(case.structure.symbol_set)
    return count, elements
