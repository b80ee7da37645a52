"""Dataset recipes: what ``definet dataset build`` generates, as YAML files or built-in recipes.

A recipe names a host, a supercell, the vacancy species and the substitutions allowed, how many defects
each structure holds, how many structures, a seed and the split fractions::

    name: cu-demo                 # unique; names the stored documents and the export folder
    host: Cu.cif                  # or MoS2-1L, mp-149, ... (a relative path is read beside the recipe)
    supercell: [3, 3, 3]
    vacuum: 20.0                  # optional, 2D hosts: length (A) of c, the out-of-plane supercell vector
    vacancies: [Cu]
    substitutions: {Cu: [Ni]}
    defects_per_structure: [2, 4] # inclusive range, drawn uniformly per structure
    structures: 6
    seed: 0
    splits: {train: 0.8, val: 0.1, test: 0.1}

``defect_counts: [4, 9, 14]`` may replace ``defects_per_structure``: the count is drawn uniformly from
the list (the published high-density sets use 2.5 %, 5 %, ... 12.5 % of the sites). Each defect is
placed on a random site (an element is chosen in proportion to its sites in the supercell, then one of
the defect types allowed on it); with ``balanced: true`` (the default) no type takes more than its share
of the largest count, rounded up, which is how the published high-density sets fill their largest
structures (for example MoS2 at 24 defects: exactly 4 v_Mo, 4 W_Mo, 8 v_S, 8 Se_S). Symmetry-equivalent
configurations are drawn only once (:class:`workflows.defects.enumeration.DenseSampler`), and structure ids
follow from the recipe's content hash and the configuration, so the same recipe and seed always give the
same structures, and a larger ``structures`` extends the list without changing its beginning.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymatgen.core import Element, Lattice, Structure

from definet_core.errors import DefiNetInputError
from workflows.defects.enumeration import DefectCase, DenseSampler, choose_supercell, is_two_dimensional

SPLITS = ("train", "val", "test")
DEFAULT_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
GENERATION_FIELDS = ("host", "supercell", "vacuum", "vacancies", "substitutions", "defects_per_structure",
                     "defect_counts", "balanced", "seed")
"""The fields that decide the structures (and so the recipe hash); ``structures`` only says how many."""


class Recipe(BaseModel):
    """A dataset recipe (see the module docstring); construct with :func:`parse_recipe` for one-line errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="letters, digits, '.', '_', '-'")
    host: str
    supercell: list[int] | list[list[int]]
    vacuum: float | None = Field(None, gt=0, description="2D hosts: length of the c vector (A)")
    vacancies: list[str] = Field(default_factory=list)
    substitutions: dict[str, list[str]] = Field(default_factory=dict)
    defects_per_structure: tuple[int, int] | None = None
    defect_counts: list[int] | None = Field(None, min_length=1)
    balanced: bool = True
    structures: int = Field(gt=0)
    seed: int = 0
    splits: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SPLITS))
    base_dir: str | None = Field(None, description="the recipe file's directory, set when read from a file: a "
                                                   "relative host path is read from there (not a generation field)")

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if (self.defects_per_structure is None) == (self.defect_counts is None):
            raise ValueError("give exactly one of defects_per_structure [lo, hi] and defect_counts")
        if self.defects_per_structure is not None and self.defects_per_structure[0] > self.defects_per_structure[1]:
            lo, hi = self.defects_per_structure
            raise ValueError(f"defects_per_structure [{lo}, {hi}]: lo > hi")
        if min(self.counts()) < 1:
            raise ValueError(f"defects per structure must be at least 1 (got {min(self.counts())})")
        if not self.vacancies and not any(self.substitutions.values()):
            raise ValueError("no defect types: give vacancies and/or substitutions")
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            raise ValueError(f"splits: unknown split {unknown[0]!r} (use {', '.join(SPLITS)})")
        if any(f < 0 for f in self.splits.values()) or not math.isclose(sum(self.splits.values()), 1.0,
                                                                          abs_tol=1e-6):
            raise ValueError(f"splits {self.splits}: fractions must be >= 0 and sum to 1")
        return self

    def counts(self) -> list[int]:
        """The defect counts a structure can have."""
        if self.defect_counts is not None:
            return sorted(set(self.defect_counts))
        lo, hi = self.defects_per_structure or (0, 0)
        return list(range(lo, hi + 1))

    @property
    def content_hash(self) -> str:
        """sha1[:16] of the fields that decide the structures (not the name, count or splits)."""
        payload = json.dumps(self.model_dump(include=set(GENERATION_FIELDS)), sort_keys=True)
        return hashlib.sha1(payload.encode(), usedforsecurity=False).hexdigest()[:16]

    def host_spec(self) -> str:
        """The host as ``resolve_host`` takes it: a relative file path is read beside the recipe file."""
        beside = Path(self.base_dir or ".") / self.host
        if self.base_dir is not None and not Path(self.host).is_absolute() and beside.exists():
            return str(beside)
        return self.host

    def summary(self) -> str:
        """One line: name, host, supercell, defect types and counts, structures."""
        types = [f"v_{el}" for el in self.vacancies] + [f"{new}_{el}" for el, news in self.substitutions.items()
                                                         for new in news]
        counts = (f"{self.defects_per_structure[0]}-{self.defects_per_structure[1]}"
                  if self.defects_per_structure else "/".join(map(str, self.counts())))
        cell = "x".join(map(str, self.supercell)) if np.ndim(self.supercell) == 1 else str(self.supercell)
        vacuum = f", c = {self.vacuum:g} A" if self.vacuum else ""
        return (f"{self.name:<12} {self.host:<9} {cell:<7} {counts:<14} defects of {', '.join(types)}{vacuum}; "
                f"{self.structures} structures, seed {self.seed}")


def parse_recipe(data: Any, source: str) -> Recipe:
    """A Recipe from a mapping; any problem is one DefiNetInputError line naming the recipe."""
    name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else source
    if not isinstance(data, dict):
        raise DefiNetInputError(f"recipe {source}: expected a mapping of recipe keys, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            raise DefiNetInputError(f"recipe {name}: unknown key {where!r} (known: "
                                    f"{', '.join(Recipe.model_fields)})") from None
        if error["type"] == "missing":
            raise DefiNetInputError(f"recipe {name}: missing key {where!r}") from None
        message = error["msg"].removeprefix("Value error, ")
        raise DefiNetInputError(f"recipe {name}: {where + ': ' if where else ''}{message}") from None


def _builtin(name: str, host: str, size: int, vacancies: list[str], substitutions: dict[str, list[str]],
             counts: list[int] | None = None, vacuum: float | None = 20.0, structures: int = 500) -> Recipe:
    return Recipe(name=name, host=host, supercell=[size, size, 1], vacuum=vacuum, vacancies=vacancies,
                  substitutions=substitutions, defect_counts=counts,
                  defects_per_structure=None if counts else (3, 3), balanced=counts is not None,
                  structures=structures, seed=0)


_CONCENTRATIONS = (0.025, 0.05, 0.075, 0.1, 0.125)


def _counts(sites: int) -> list[int]:
    """Defect counts of the published high-density sets: 2.5 %, 5 %, ... 12.5 % of the sites, rounded down."""
    return [int(c * sites + 1e-9) for c in _CONCENTRATIONS]


BUILTIN_RECIPES: dict[str, Recipe] = {r.name: r for r in [
    _builtin("MoS2-high", "MoS2-1L", 8, ["Mo", "S"], {"Mo": ["W"], "S": ["Se"]}, _counts(192)),
    _builtin("WSe2-high", "WSe2-1L", 8, ["W", "Se"], {"W": ["Mo"], "Se": ["S"]}, _counts(192)),
    _builtin("hBN-high", "hBN-1L", 8, ["B", "N"], {"B": ["C"], "N": ["C"]}, _counts(128)),
    _builtin("GaSe-high", "GaSe-1L", 6, ["Ga", "Se"], {"Ga": ["In"], "Se": ["S"]}, _counts(144)),
    _builtin("InSe-high", "InSe-1L", 6, ["In", "Se"], {"In": ["Ga"], "Se": ["S"]}, _counts(144)),
    _builtin("BP-high", "BP-1L", 6, ["P"], {"P": ["N"]}, _counts(144)),
    _builtin("MoS2-low", "MoS2-1L", 8, ["Mo", "S"], {"Mo": ["W"], "S": ["Se"]}, vacuum=None, structures=1100),
    # measured: the low-density WSe2 supercells have the MoS2 cell's c (14.879 A), not WSe2's 15.069 A
    _builtin("WSe2-low", "WSe2-1L", 8, ["W", "Se"], {"W": ["Mo"], "Se": ["S"]}, vacuum=14.879004, structures=1100),
]}
"""Recipes reproducing the eight published sets of ../shared/data/definet_2d (statistics measured there)."""


def load_recipe(spec: str, stored: Callable[[str], dict[str, Any] | None] | None = None) -> Recipe:
    """A built-in recipe by name, a YAML recipe file, or (with ``stored``, e.g. ``RecipeRegistry.latest``) the
    recipe last built under that name."""
    if spec in BUILTIN_RECIPES:
        return BUILTIN_RECIPES[spec]
    path = Path(spec)
    if not path.is_file():
        content = stored(spec) if stored is not None else None
        if content is not None:
            return parse_recipe(content, spec)
        where = ", nor a recipe built before on this database" if stored is not None else ""
        raise DefiNetInputError(f"recipe {spec}: not a built-in recipe ({', '.join(BUILTIN_RECIPES)}), "
                                f"nor a recipe file{where}")
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DefiNetInputError(f"recipe {spec}: cannot read YAML ({str(exc).splitlines()[0]})") from None
    return parse_recipe(data, path.stem).model_copy(update={"base_dir": str(path.resolve().parent)})


def with_vacuum(host: Structure, recipe: Recipe) -> Structure:
    """The host with its c vector set to ``recipe.vacuum`` (Cartesian positions kept); unchanged without one."""
    if recipe.vacuum is None:
        return host
    if not is_two_dimensional(host) or not np.allclose(host.lattice.angles[:2], 90.0, atol=1e-3):
        raise DefiNetInputError(f"recipe {recipe.name}: vacuum is for 2D hosts with c normal to the layer; "
                                f"host {recipe.host} is not one")
    a, b, _ = host.lattice.abc
    lattice = Lattice.from_parameters(a, b, recipe.vacuum, *host.lattice.angles)
    result = Structure(lattice, host.species, host.cart_coords, coords_are_cartesian=True)
    if not is_two_dimensional(result) or result.frac_coords[:, 2].max() >= 1.0:
        raise DefiNetInputError(f"recipe {recipe.name}: vacuum {recipe.vacuum} A leaves no vacuum above the "
                                f"{np.ptp(host.cart_coords[:, 2]):.2f} A thick layer")
    return result


def _defect_types(recipe: Recipe, sampler: DenseSampler) -> tuple[list[tuple[str, str | None]], np.ndarray]:
    """(element, substituent or None for a vacancy) per defect type, and each type's drawing weight."""
    types: list[tuple[str, str | None]] = [(el, None) for el in dict.fromkeys(recipe.vacancies)]
    for el, news in recipe.substitutions.items():
        for new in dict.fromkeys(news):
            if not isinstance(new, str) or not Element.is_valid_symbol(new):
                raise DefiNetInputError(f"recipe {recipe.name}: substituent {new!r} is not a chemical element")
            if new == el:
                raise DefiNetInputError(f"recipe {recipe.name}: substitution {el} -> {new} does not change the "
                                        "element")
            types.append((el, new))
    sites = {}
    for el, _ in types:
        if el not in sampler.symbols:
            raise DefiNetInputError(f"recipe {recipe.name}: {el} is not in host {recipe.host} (elements: "
                                    f"{', '.join(sorted(set(sampler.symbols.tolist())))})")
        sites[el] = int((sampler.symbols == el).sum())
    per_element = {el: sum(1 for e, _ in types if e == el) for el in sites}
    return types, np.array([sites[el] / per_element[el] for el, _ in types])


def _caps(recipe: Recipe, weights: np.ndarray) -> np.ndarray:
    """Most defects of each type in one structure: its share of the largest count (balanced), else no limit."""
    largest = max(recipe.counts())
    if not recipe.balanced:
        return np.full(len(weights), largest)
    return np.ceil(largest * weights / weights.sum() - 1e-9).astype(int)


def _check_counts(recipe: Recipe, sampler: DenseSampler, types: list[tuple[str, str | None]],
                  caps: np.ndarray) -> None:
    """One-line errors for counts no supercell of this recipe can hold."""
    largest = max(recipe.counts())
    for el in dict.fromkeys(el for el, _ in types):
        available = int((sampler.symbols == el).sum())
        most = min(largest, int(sum(cap for (e, _), cap in zip(types, caps, strict=True) if e == el)))
        if most > available:
            raise DefiNetInputError(f"recipe {recipe.name}: up to {most} {el} defects per structure but the "
                                    f"supercell {sampler.matrix.tolist()} has only {available} {el} sites")
    if largest > len(sampler.symbols):
        raise DefiNetInputError(f"recipe {recipe.name}: {largest} defects per structure but the supercell has "
                                f"only {len(sampler.symbols)} sites")


def _draw_types(count: int, weights: np.ndarray, caps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How many defects of each type: ``count`` draws weighted by ``weights`` among types below their cap."""
    chosen = np.zeros(len(weights), dtype=int)
    for _ in range(count):
        open_weights = weights * (chosen < caps)
        chosen[rng.choice(len(weights), p=open_weights / open_weights.sum())] += 1
    return chosen


def structure_id(recipe: Recipe, case: DefectCase) -> str:
    """Deterministic structure id ``<recipe>-<12 hex>`` from the recipe's content hash and the configuration."""
    digest = hashlib.sha1(f"{recipe.content_hash}:{case.case_id}".encode(), usedforsecurity=False).hexdigest()
    return f"{recipe.name}-{digest[:12]}"


def iter_generate(recipe: Recipe, host_id: str, host: Structure,
                  structures: int | None = None) -> Iterator[DefectCase]:
    """The recipe's first ``structures`` (default ``recipe.structures``) distinct structures, ids as case ids.

    Deterministic: the same recipe and seed give the same sequence, and a longer one starts with a shorter
    one. The recipe is checked here (one-line errors); structures are drawn as the iterator is consumed,
    and it raises at the end when fewer distinct structures exist than were asked for.
    """
    wanted = recipe.structures if structures is None else structures
    if wanted < 1:
        raise DefiNetInputError(f"recipe {recipe.name}: --structures {wanted} must be at least 1")
    host = with_vacuum(host, recipe)
    try:
        sampler = DenseSampler(host_id, host, choose_supercell(host, recipe.supercell))
    except DefiNetInputError as exc:
        raise DefiNetInputError(f"recipe {recipe.name}: {exc}") from None
    types, weights = _defect_types(recipe, sampler)
    caps = _caps(recipe, weights)
    _check_counts(recipe, sampler, types, caps)

    def draws() -> Iterator[DefectCase]:
        counts = recipe.counts()
        rng = np.random.default_rng(recipe.seed)
        found = 0
        attempts = max(1000, 50 * wanted)
        for _ in range(attempts):
            chosen = _draw_types(int(rng.choice(counts)), weights, caps, rng)
            vacancies = {el: int(n) for (el, new), n in zip(types, chosen, strict=True) if new is None and n}
            substitutions: dict[str, dict[str, int | float]] = {}
            for (el, new), n in zip(types, chosen, strict=True):
                if new is not None and n:
                    substitutions.setdefault(el, {})[new] = int(n)
            case = sampler.draw(sampler.plan(vacancies, substitutions), rng)
            if case is not None:
                yield case.model_copy(update={"case_id": structure_id(recipe, case)})
                found += 1
                if found == wanted:
                    return
        raise DefiNetInputError(f"recipe {recipe.name}: only {found} distinct structures in {attempts} draws; "
                                f"ask for fewer structures or allow more defects")

    return draws()


def generate(recipe: Recipe, host_id: str, host: Structure, structures: int | None = None) -> list[DefectCase]:
    """:func:`iter_generate` as a list."""
    return list(iter_generate(recipe, host_id, host, structures))


def split_of(recipe: Recipe, structure_ids: list[str]) -> dict[str, list[str]]:
    """Deterministic split of ``structure_ids``: sorted by a hash of (seed, id), cut at the recipe's fractions."""
    order = sorted(structure_ids, key=lambda i: hashlib.sha1(f"{recipe.seed}:{i}".encode(),
                                                             usedforsecurity=False).hexdigest())
    bounds = np.rint(np.cumsum([recipe.splits.get(split, 0.0) for split in SPLITS]) * len(order)).astype(int)
    starts = [0, *bounds[:-1]]
    return {split: sorted(order[a:b]) for split, a, b in zip(SPLITS, starts, [*bounds[:-1], len(order)], strict=True)}
