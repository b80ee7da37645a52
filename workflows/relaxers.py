"""Relaxation makers chosen by name, and the one definition of an ionic step used everywhere.

``vasp``   atomate2 VASP relaxation, fixed cell (ISIF = 2), settings for defect supercells.
``chgnet`` atomate2 ForceFieldRelaxMaker with CHGNet (weights ship in its package), fixed cell.
``emt``    the same maker with ASE's EMT potential: fast, for tests on metals.

Ionic step: one configuration whose energy and forces were computed by the relaxer, the starting
configuration included. For VASP that is ``len(calcs_reversed[0].output.ionic_steps)`` (the final
run only; custodian restarts hide earlier ones); for force fields it is the length of the stored
trajectory of ionic steps, which equals atomate2's ``output.n_steps``.
"""

from __future__ import annotations

from typing import Any

from jobflow import Maker

from definet_core.errors import DefiNetInputError

RELAXERS = ("chgnet", "emt", "vasp")
DEFAULT_FMAX = 0.05
DEFAULT_MAX_STEPS = 500

VASP_DEFECT_INCAR: dict[str, Any] = {
    "ISIF": 2,  # fixed cell: a defect relaxes in the host's lattice
    "IBRION": 2,  # conjugate gradient, robust from far-from-minimum starts
    "EDIFFG": -0.02,  # stop when all forces are below 0.02 eV/A
    "EDIFF": 1e-5,
    "NSW": 200,
    "ISPIN": 2,  # defects often carry a moment
    "ISYM": 0,  # defect supercells have low symmetry; avoid symmetrising the displacement field
    "LCHARG": False,
    "LWAVE": False,
    "LREAL": "Auto",
    "ENCUT": 520,
    "GGA": "PE",  # PBE, as the DefiNet training data (atomate2's base set would give PBEsol)
    "LAECHG": False,  # no AECCAR / LOCPOT per defect run
    "LVTOT": False,
}


def relax_maker(name: str, fmax: float | None = None, max_steps: int | None = None,
                incar_updates: dict[str, Any] | None = None) -> Maker:
    """atomate2 relaxation Maker for ``name`` (one of RELAXERS), fixed cell.

    ``fmax`` (eV/A) and ``max_steps`` override the defaults (force fields: 0.05 and 500; VASP:
    EDIFFG = -0.02 and NSW = 200); ``incar_updates`` overrides any INCAR setting for VASP.
    """
    if name == "vasp":
        from atomate2.vasp.jobs.core import RelaxMaker
        from atomate2.vasp.sets.core import RelaxSetGenerator

        incar = dict(VASP_DEFECT_INCAR)
        if fmax is not None:
            incar["EDIFFG"] = -abs(fmax)
        if max_steps is not None:
            incar["NSW"] = max_steps
        incar.update(incar_updates or {})
        generator = RelaxSetGenerator(user_incar_settings=incar, user_kpoints_settings={"reciprocal_density": 64})
        return RelaxMaker(name="defect relax (vasp)", input_set_generator=generator)
    if name in ("chgnet", "emt"):
        from atomate2.forcefields.jobs import ForceFieldRelaxMaker

        force_field: Any = "CHGNet" if name == "chgnet" else {"@module": "ase.calculators.emt", "@callable": "EMT"}
        return ForceFieldRelaxMaker(name=f"defect relax ({name})", force_field_name=force_field, relax_cell=False,
                                    steps=max_steps or DEFAULT_MAX_STEPS, relax_kwargs={"fmax": fmax or DEFAULT_FMAX})
    raise DefiNetInputError(f"--relaxer {name}: unknown relaxer; choose one of {', '.join(RELAXERS)}")


def check_elements(name: str, elements: set[str]) -> None:
    """Fail before any job runs when the relaxer cannot treat some element (EMT covers a few metals only)."""
    if name != "emt":
        return
    from ase.calculators.emt import parameters

    missing = sorted(elements - set(parameters))
    if missing:
        raise DefiNetInputError(f"--relaxer emt: no EMT potential for {', '.join(missing)} "
                                f"(EMT covers {', '.join(sorted(parameters))}); use chgnet")


def relaxer_settings(name: str, maker: Maker) -> dict[str, Any]:
    """The settings of a relaxation maker worth storing next to its results."""
    if name == "vasp":
        generator = maker.input_set_generator
        return {"incar": dict(generator.user_incar_settings), "kpoints": dict(generator.user_kpoints_settings)}
    return {"force_field": str(maker.force_field_name), "fmax": maker.relax_kwargs.get("fmax"),
            "max_steps": maker.steps, "relax_cell": maker.relax_cell}


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
    """Total energy (eV) of the final structure."""
    return float(task_doc.output.energy)


def final_structure(task_doc: Any) -> Any:
    """Final relaxed structure of an atomate2 relaxation document."""
    output = task_doc.output
    return getattr(output, "structure", None) or output.mol_or_struct
