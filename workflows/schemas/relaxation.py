"""What the documents keep of one atomate2 relaxation."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from workflows.relaxers.outputs import converged, final_energy, final_forces, final_structure, ionic_steps


class RelaxationError(Exception):
    """A relaxation finished without a usable result (e.g. NaN energies from a force field)."""


class RelaxationSummary(BaseModel):
    """Ionic steps, energy, forces, convergence, wall time and final structure of one relaxation."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ionic_steps: int = Field(description="force evaluations, the start included (see workflows.relaxers.outputs)")
    energy: float = Field(description="final total energy (eV)")
    converged: bool | None = None
    seconds: float | None = None
    structure: Structure
    forces: list[list[float]] | None = Field(None, description="final forces (eV/A), when the relaxer reports them")

    @classmethod
    def from_task_doc(cls, task_doc: Any) -> RelaxationSummary:
        """The summary of an atomate2 task document (VASP or force field); :class:`RelaxationError` when its
        final energy is not finite."""
        energy = final_energy(task_doc)
        if not np.isfinite(energy):
            raise RelaxationError(f"non-finite final energy ({energy})")
        return cls(ionic_steps=ionic_steps(task_doc), energy=energy, converged=converged(task_doc),
                   seconds=getattr(task_doc.output, "elapsed_time", None), structure=final_structure(task_doc),
                   forces=final_forces(task_doc))

    @property
    def max_force(self) -> float | None:
        """Largest final force norm (eV/A), when the relaxer reports forces."""
        return float(np.linalg.norm(np.asarray(self.forces), axis=1).max()) if self.forces else None
