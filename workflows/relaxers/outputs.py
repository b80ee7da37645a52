"""What an atomate2 relaxation's task document says, read the same way for VASP and force fields.

Ionic step: one configuration whose energy and forces were computed by the relaxer, the starting
configuration included. For VASP that is ``len(calcs_reversed[0].output.ionic_steps)`` (the final
run only; custodian restarts hide earlier ones); for force fields it is the length of the stored
trajectory of ionic steps, which equals atomate2's ``output.n_steps``. This is the one definition
of an ionic step in the project.
"""

from __future__ import annotations

from typing import Any


def ionic_steps(task_doc: Any) -> int:
    """Number of ionic steps (force evaluations, the start included) of an atomate2 relaxation document."""
    calcs = getattr(task_doc, "calcs_reversed", None)
    if calcs and calcs[0].output.ionic_steps is not None:
        return len(calcs[0].output.ionic_steps)
    output = task_doc.output
    if getattr(output, "ionic_steps", None):
        return len(output.ionic_steps)
    return int(output.n_steps)


def converged(task_doc: Any) -> bool | None:
    """Whether the relaxation met its force criterion: atomate2's flag for force fields, the task state for VASP."""
    flag = getattr(task_doc, "is_force_converged", None)
    if flag is not None:
        return bool(flag)
    state = getattr(task_doc, "state", None)
    return None if state is None else str(getattr(state, "value", state)) == "successful"


def final_energy(task_doc: Any) -> float:
    """Total energy (eV) of the final structure (NaN when the document holds none)."""
    energy = task_doc.output.energy
    return float("nan") if energy is None else float(energy)


def final_forces(task_doc: Any) -> list[list[float]] | None:
    """Forces (eV/A) on the atoms of the final structure, when the relaxation document holds them."""
    forces = getattr(task_doc.output, "forces", None)
    return None if forces is None else [[float(x) for x in row] for row in forces]


def final_structure(task_doc: Any) -> Any:
    """Final relaxed structure of an atomate2 relaxation document."""
    output = task_doc.output
    return getattr(output, "structure", None) or output.mol_or_struct
