"""What to enumerate for each host: a serializable request the enumeration job carries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field
from pymatgen.core import Structure

from workflows.defects.enumeration import DefectCase, choose_supercell, iter_dense_defects, single_defects


class EnumerationSettings(BaseModel):
    """Single symmetry-distinct defects, or seeded dense multi-defect configurations, per host."""

    mode: Literal["single", "dense"] = "single"
    supercell_matrix: list[list[int]] | None = Field(None, description="explicit supercell; else min length/atoms")
    min_length: float | None = Field(None, description="shortest supercell vector (A); in-plane only for 2D hosts")
    min_atoms: int | None = None
    substitutions: dict[str, list[str]] = Field(default_factory=dict, description="single: {'S': ['Se']}")
    interstitials: list[str] = Field(default_factory=list, description="single: interstitial elements")
    vacancies: bool = Field(True, description="single: vacancies of every species")
    dense_vacancies: dict[str, int | float] = Field(default_factory=dict, description="dense: {'S': 3} or density")
    dense_substitutions: dict[str, dict[str, int | float]] = Field(
        default_factory=dict, description="dense: {'Mo': {'W': 2}} or densities")
    n_configs: int = 4
    seed: int = 0

    def iter_cases(self, host_id: str, host: Structure) -> Iterator[DefectCase]:
        """Defect cases of one host, one at a time (the request is checked before the first is made)."""
        matrix = choose_supercell(host, self.supercell_matrix, self.min_atoms, self.min_length)
        if self.mode == "single":
            return iter(single_defects(host_id, host, matrix, self.substitutions or None, self.interstitials or None,
                                       self.vacancies))
        return iter_dense_defects(host_id, host, matrix, self.n_configs, self.dense_vacancies or None,
                                  self.dense_substitutions or None, self.seed)

    def enumerate(self, host_id: str, host: Structure) -> list[DefectCase]:
        """Defect cases of one host, as a list."""
        return list(self.iter_cases(host_id, host))
