"""What to enumerate for each host: a serializable request the enumeration job carries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pymatgen.core import Structure

from workflows.enumeration import DefectCase, choose_supercell, dense_defects, single_defects


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

    def enumerate(self, host_id: str, host: Structure) -> list[DefectCase]:
        """Defect cases of one host."""
        matrix = choose_supercell(host, self.supercell_matrix, self.min_atoms, self.min_length)
        if self.mode == "single":
            return single_defects(host_id, host, matrix, self.substitutions or None, self.interstitials or None,
                                  self.vacancies)
        return dense_defects(host_id, host, matrix, self.n_configs, self.dense_vacancies or None,
                             self.dense_substitutions or None, self.seed)
