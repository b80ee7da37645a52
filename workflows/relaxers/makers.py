"""Relaxation makers chosen by name (atomate2's makers, configured for defect supercells), and what ran.

``vasp``   atomate2 VASP relaxation, fixed cell (ISIF = 2), settings for defect supercells.
``chgnet`` atomate2 ForceFieldRelaxMaker with CHGNet (weights ship in its package), fixed cell.
``emt``    the same maker with ASE's EMT potential: fast, for tests on metals.

The ionic-step count and the other readings of a finished relaxation are :mod:`workflows.relaxers.outputs`.

:func:`relaxer_settings` records what ran (the potential's own name and version, never atomate2's
``MLFF.*`` placeholder; or the VASP input set and INCAR updates) as plain JSON values."""

from __future__ import annotations

import inspect
from enum import Enum
from typing import Any

from jobflow import Maker

from definet_core.errors import DefiNetInputError
from workflows.versions import package_version

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
    """What ran, as plain JSON values stored next to the results: code or potential, versions, optimizer, criteria.

    Force fields: ``force_field`` (the potential's own name, e.g. ``EMT`` or ``CHGNet``), ``calculator``
    (import path of the ASE calculator), ``package`` and ``package_version`` (the distribution providing
    it), ``model_version`` (CHGNet's pretrained weights), ``optimizer``, ``fmax``, ``max_steps``,
    ``relax_cell``. VASP: ``input_set`` (atomate2 generator), ``incar_updates`` and ``kpoints_updates`` (on
    top of the input set), ``potcar_functional``, and ``optimizer``, ``fmax``, ``max_steps``, ``relax_cell``
    read from the INCAR tags IBRION, EDIFFG, NSW and ISIF. Every record carries ``relaxer``, ``maker`` (the
    Maker's class) and ``atomate2_version``.
    """
    settings: dict[str, Any] = {"relaxer": name, "maker": _qualified_name(type(maker)),
                                "atomate2_version": package_version("atomate2")}
    if hasattr(maker, "input_set_generator"):
        settings.update(_vasp_settings(maker.input_set_generator))
    elif hasattr(maker, "calculator_meta"):
        settings.update(_force_field_settings(maker))
    # any other maker: its class (``maker``) is all that can be said without running it
    return _plain(settings)


# the packages behind atomate2's force-field names that definet offers (others: the name only)
_MLFF_CALCULATORS = {"CHGNet": ("chgnet", "chgnet.model.dynamics.CHGNetCalculator")}


_IBRION = {1: "RMM-DIIS (IBRION=1)", 2: "conjugate gradient (IBRION=2)", 3: "damped MD (IBRION=3)"}


def _vasp_settings(generator: Any) -> dict[str, Any]:
    """VASP settings of an atomate2 input set generator; criteria from its effective INCAR tags."""
    try:
        set_updates = dict(generator.incar_updates)
    except Exception:  # some generators need a structure to decide their updates
        set_updates = {}
    incar = {**generator.config_dict.get("INCAR", {}), **set_updates, **generator.user_incar_settings}
    ediffg, ibrion, isif = incar.get("EDIFFG"), incar.get("IBRION"), incar.get("ISIF")
    return {
        "code": "VASP",
        "input_set": _qualified_name(type(generator)),
        "incar_updates": dict(generator.user_incar_settings),
        "kpoints_updates": dict(generator.user_kpoints_settings or {}),
        "potcar_functional": generator.user_potcar_functional,
        "optimizer": _IBRION.get(ibrion, f"IBRION={ibrion}"),
        "fmax": abs(ediffg) if isinstance(ediffg, int | float) and ediffg < 0 else None,
        "max_steps": incar.get("NSW"),
        "relax_cell": isinstance(isif, int) and isif >= 3,
    }


def _force_field_settings(maker: Any) -> dict[str, Any]:
    """Settings of an atomate2 force-field maker: the potential that runs, not atomate2's placeholder enum."""
    from atomate2.ase.utils import AseRelaxer
    from atomate2.forcefields import MLFF

    meta = maker.calculator_meta
    model_version = None
    if isinstance(meta, MLFF):
        force_field = meta.value
        package, calculator = _MLFF_CALCULATORS.get(force_field, (None, None))
        if meta == MLFF.CHGNet:
            model_version = _chgnet_model_version(maker.calculator_kwargs)
    else:
        calculator = meta if isinstance(meta, str) else _qualified_name(meta)
        force_field = calculator.rsplit(".", 1)[-1]
        package = calculator.split(".", 1)[0]
    optimizer = maker.optimizer_kwargs.get("optimizer")
    if optimizer is None:
        optimizer = inspect.signature(AseRelaxer).parameters["optimizer"].default
    return {
        "force_field": force_field,
        "calculator": calculator,
        "package": package,
        "package_version": package_version(package) if package else None,
        "model_version": model_version,
        "optimizer": optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", str(optimizer)),
        "fmax": maker.relax_kwargs.get("fmax"),
        "max_steps": maker.steps,
        "relax_cell": maker.relax_cell,
    }


def _chgnet_model_version(calculator_kwargs: dict[str, Any]) -> str | None:
    """Version of the CHGNet weights the calculator loads: a given model's, else ``CHGNet.load``'s default."""
    model = calculator_kwargs.get("model")
    if model is not None:
        return getattr(model, "version", None)
    try:
        from chgnet.model import CHGNet
    except ImportError:
        return None
    return inspect.signature(CHGNet.load).parameters["model_name"].default



def _qualified_name(obj: Any) -> str:
    """``module.Name`` of a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON types: enums by value, tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)
