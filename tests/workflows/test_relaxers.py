"""Provenance: the relaxer settings stored in validation documents name what actually ran, as plain JSON values."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from workflows.relaxers.makers import relax_maker, relaxer_settings
from workflows.storage.stores import ValidationStore


def _assert_plain(value: Any, path: str = "settings") -> None:
    """Only JSON's own types, and no enum repr such as ``MLFF.Forcefield``, anywhere in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{path}: key {key!r}"
            _assert_plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            _assert_plain(item, f"{path}[{number}]")
    else:
        assert value is None or type(value) in (bool, int, float, str), f"{path}: {type(value).__name__}"
        assert not (isinstance(value, str) and "MLFF" in value), f"{path}: {value!r}"


def test_emt_settings_name_ases_emt() -> None:
    import ase
    from ase.calculators.emt import EMT

    maker = relax_maker("emt", fmax=0.02)
    settings = relaxer_settings("emt", maker)
    _assert_plain(settings)
    assert settings["force_field"] == "EMT"
    assert settings["calculator"] == "ase.calculators.emt.EMT"
    assert (settings["package"], settings["package_version"]) == ("ase", ase.__version__)
    assert settings["model_version"] is None
    assert settings["optimizer"] == "FIRE"
    assert (settings["fmax"], settings["max_steps"], settings["relax_cell"]) == (0.02, 500, False)
    assert settings["maker"] == "atomate2.forcefields.jobs.ForceFieldRelaxMaker"
    assert isinstance(maker.calculator, EMT)  # the calculator atomate2 builds is the one named


def test_chgnet_settings_name_the_package_and_weights() -> None:
    import chgnet
    from chgnet.model import CHGNet

    maker = relax_maker("chgnet")
    settings = relaxer_settings("chgnet", maker)
    _assert_plain(settings)
    assert settings["force_field"] == "CHGNet"
    assert settings["calculator"] == "chgnet.model.dynamics.CHGNetCalculator"
    assert (settings["package"], settings["package_version"]) == ("chgnet", chgnet.__version__)
    assert settings["model_version"] == inspect.signature(CHGNet.load).parameters["model_name"].default
    assert (settings["optimizer"], settings["fmax"], settings["relax_cell"]) == ("FIRE", 0.05, False)


def test_chgnet_model_version_is_the_loaded_weights() -> None:
    """The calculator atomate2 builds for ``chgnet`` carries the weights whose version is stored."""
    maker = relax_maker("chgnet")
    calculator = maker.calculator
    assert type(calculator).__module__ + "." + type(calculator).__name__ == relaxer_settings("chgnet", maker)[
        "calculator"]
    assert calculator.model.version == relaxer_settings("chgnet", maker)["model_version"]


def test_optimizer_given_to_the_maker_is_stored() -> None:
    maker = relax_maker("emt")
    maker.optimizer_kwargs = {"optimizer": "BFGS"}
    assert relaxer_settings("emt", maker)["optimizer"] == "BFGS"


def test_vasp_settings_name_the_input_set_and_incar_updates() -> None:
    settings = relaxer_settings("vasp", relax_maker("vasp", fmax=0.03, max_steps=80, incar_updates={"ENCUT": 450}))
    _assert_plain(settings)
    assert settings["code"] == "VASP"
    assert settings["input_set"] == "atomate2.vasp.sets.core.RelaxSetGenerator"
    assert settings["incar_updates"]["ENCUT"] == 450 and settings["incar_updates"]["ISIF"] == 2
    assert settings["kpoints_updates"] == {"reciprocal_density": 64}
    assert settings["potcar_functional"] == "PBE_54"
    assert settings["optimizer"] == "conjugate gradient (IBRION=2)"
    assert (settings["fmax"], settings["max_steps"], settings["relax_cell"]) == (0.03, 80, False)


@pytest.mark.parametrize("name", ["emt", "chgnet", "vasp"])
def test_settings_are_stored_unchanged(name: str, mongo_uri: str, database_name: str) -> None:
    """What a validation document stores is what ``relaxer_settings`` says, through JSON and the database."""
    settings = relaxer_settings(name, relax_maker(name))
    assert json.loads(json.dumps(settings)) == settings
    doc = {"case_id": "c", "relaxer": name, "checkpoint": "shipped", "start_policy": "auto", "comparison": True,
           "host_id": "h", "relaxer_settings": settings}
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert([doc])
        stored = store.query()[0]["relaxer_settings"]
    assert stored == settings
    _assert_plain(stored)
    assert "MLFF." not in json.dumps(stored)
