"""Fixed per-element feature vectors from pymatgen's periodic table (``ModelConfig.element_features``).

A learned element embedding knows only the elements it was trained on: the row of an element never
seen in training is its random (or zero) initial value. With ``element_features`` the node scalars
also get a linear projection of a fixed chemical description of the element, so an unseen element
starts near its chemical neighbours (Se near S, not near Na).

Columns (``FEATURE_NAMES``, 26 in all):

- group (1-18), one-hot: a chemical family is a category, not a scale (halogens, group 17, are not
  "almost" noble gases, group 18);
- block (s, p, d, f), one-hot: pymatgen puts the lanthanides and actinides in group 3, and the block
  keeps them apart from Sc and Y;
- period, Pauling electronegativity, covalent radius (A) and valence electrons, as scalars, each
  standardised to zero mean and unit variance over elements 1..``num_elements``: these are ordered
  quantities (a period down is a larger, softer atom), and standardising puts them on the scale of the
  one-hot columns. The one-hot columns stay 0/1: standardising them would weight a sparsely populated
  group (7 noble gases) several times more than a populous one.

Valence electrons count the outer shell (principal quantum number = period) plus, for the d block,
the (period-1) d shell and, for the f block, the (period-1) d and (period-2) f shells, read from
pymatgen's ground-state electronic structure (S and Se: 6; Cu: 11; Pd: 10; Ce: 4). A value pymatgen
lacks (electronegativity of He, Ne, Ar; covalent radius of Bk-Fm) is taken from the element of the
same group with the nearest atomic number that has one (lower number on a tie). The table is stored
in the checkpoint as a buffer, so a trained model keeps the features it was trained with whatever
pymatgen version later loads it; row 0 (no element) is zero.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import Element
from torch import nn

GROUPS = 18
BLOCKS = ("s", "p", "d", "f")
SCALARS = ("period", "electronegativity", "covalent_radius", "valence_electrons")
FEATURE_NAMES = (*(f"group_{g}" for g in range(1, GROUPS + 1)), *(f"block_{b}" for b in BLOCKS), *SCALARS)
NUM_FEATURES = len(FEATURE_NAMES)


def valence_electrons(element: Element) -> int:
    """Electrons in the outer shell, plus the open inner d (d block) and f (f block) shells; see the module."""
    period, block = element.row, element.block
    inner = {"d": {(period - 1, "d")}, "f": {(period - 1, "d"), (period - 2, "f")}}.get(block, set())
    return sum(count for n, shell, count in element.full_electronic_structure
               if n == period or (n, shell) in inner)


def _raw_properties(z: int) -> dict[str, float]:
    """Group, block and the unstandardised scalars of element ``z``; NaN where pymatgen has no value."""
    element = Element.from_Z(z)
    with warnings.catch_warnings():  # pymatgen warns for the electronegativity of noble gases
        warnings.simplefilter("ignore")
        electronegativity = element.X
    electronegativity = float(electronegativity) if electronegativity is not None else math.nan
    return {"group": element.group, "block": element.block, "period": float(element.row),
            "electronegativity": electronegativity if electronegativity > 0 else math.nan,
            "covalent_radius": float(CovalentRadius.radius.get(element.symbol, math.nan)),
            "valence_electrons": float(valence_electrons(element))}


def _filled(rows: list[dict[str, float]], key: str) -> list[float]:
    """Column ``key`` with each missing value taken from the nearest atomic number of the same group that has one."""
    values = [row[key] for row in rows]
    filled = []
    for i, value in enumerate(values):
        if math.isnan(value):
            donors = [j for j, row in enumerate(rows) if row["group"] == rows[i]["group"] and not math.isnan(values[j])]
            if not donors:
                donors = [j for j in range(len(rows)) if not math.isnan(values[j])]
            value = values[min(donors, key=lambda j: (abs(j - i), j))]
        filled.append(value)
    return filled


@functools.lru_cache(maxsize=8)
def _table(num_elements: int) -> torch.Tensor:
    rows = [_raw_properties(z) for z in range(1, num_elements + 1)]
    table = torch.zeros(num_elements + 1, NUM_FEATURES, dtype=torch.float64)
    for z, row in enumerate(rows, start=1):
        table[z, row["group"] - 1] = 1.0
        table[z, GROUPS + BLOCKS.index(row["block"])] = 1.0
    for k, key in enumerate(SCALARS):
        column = torch.tensor(_filled(rows, key), dtype=torch.float64)
        std = column.std(unbiased=False)
        table[1:, GROUPS + len(BLOCKS) + k] = (column - column.mean()) / (std if std > 0 else 1.0)
    return table.float()


def element_feature_table(num_elements: int) -> torch.Tensor:
    """(num_elements + 1, ``NUM_FEATURES``) float32 features by atomic number; row 0 is zero. Deterministic."""
    return _table(num_elements).clone()


class ElementFeatures(nn.Module):
    """Node scalars from the fixed feature table: ``projection(table[z])``, a bias-free linear map."""

    def __init__(self, num_elements: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("table", element_feature_table(num_elements))
        self.projection = nn.Linear(NUM_FEATURES, hidden, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.projection(self.table[z])


def add_element_features(state: dict[str, torch.Tensor], num_elements: int, hidden: int,
                         trained_elements: list[int]) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint without element features, made loadable by a model with them, computing the
    same function on the ``trained_elements``: the projection is zero, and the learned embedding rows of the
    other elements (never trained, so random) are zeroed, as a model with features starts them."""
    state = dict(state)
    state["element_features.table"] = element_feature_table(num_elements)
    state["element_features.projection.weight"] = torch.zeros(hidden, NUM_FEATURES)
    embedding = state["element_embedding.weight"].clone()
    trained = torch.zeros(embedding.shape[0], dtype=torch.bool)
    trained[[z for z in trained_elements if 0 <= z < embedding.shape[0]]] = True
    embedding[~trained] = 0.0
    state["element_embedding.weight"] = embedding
    return state
