"""The VASP relaxer end to end, without VASP or POTCARs.

Inputs: the files atomate2 writes for a predicted defect supercell (POTCAR.spec in place of POTCAR).
Run: ``relax_maker("vasp")`` under ``jobflow.run_locally`` with VASP replaced by atomate2's own testing
helper ``monkeypatch_vasp``; the reference folder it checks inputs against and copies outputs from is
produced here (``tests/workflows/vasp_outputs.py``): a Lennard-Jones steepest-descent relaxation of the
predicted structure written as vasprun.xml/OUTCAR/OSZICAR/CONTCAR.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from atomate2.utils.testing.vasp import monkeypatch_vasp
from atomate2.vasp.files import write_vasp_input_set
from jobflow import run_locally
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar, Kpoints, Oszicar, Outcar, Poscar, Vasprun

from tests.workflows.vasp_outputs import IonicStep, fake_relaxation, write_reference_dir, write_vasp_outputs
from workflows.hosts import mos2_monolayer
from workflows.relaxers.makers import relax_maker, relaxer_settings
from workflows.relaxers.outputs import converged, final_energy, final_structure, ionic_steps

N_IONIC = 7
JOB_NAME = "defect relax (vasp)"


@pytest.fixture()
def predicted_defect() -> Structure:
    """3x3x1 MoS2 with one S vacancy, atoms displaced by ~0.03 A: stands for a DefiNet prediction."""
    cell = mos2_monolayer()
    cell.make_supercell([3, 3, 1])
    cell.remove_sites([next(i for i, site in enumerate(cell) if site.specie.symbol == "S")])
    rng = np.random.default_rng(7)
    coords = cell.cart_coords + rng.normal(scale=0.03, size=(len(cell), 3))
    return Structure(cell.lattice, cell.species, coords, coords_are_cartesian=True)


def write_inputs(structure: Structure, directory: Path, **maker_kwargs: object) -> Path:
    """Write the inputs the VASP relax job writes for ``structure`` (POTCAR.spec, no POTCAR)."""
    maker = relax_maker("vasp", **maker_kwargs)
    write_vasp_input_set(structure, maker.input_set_generator, directory=directory, potcar_spec=True)
    return directory


def assert_same_structure(actual: Structure, expected: Structure, atol: float = 1e-5) -> None:
    """Same lattice, same species in the same order, same Cartesian positions (modulo the lattice)."""
    assert [s.specie.symbol for s in actual] == [s.specie.symbol for s in expected]
    np.testing.assert_allclose(actual.lattice.matrix, expected.lattice.matrix, atol=atol)
    diff = actual.frac_coords - expected.frac_coords
    np.testing.assert_allclose((diff - np.rint(diff)) @ expected.lattice.matrix, 0.0, atol=atol)


def test_inputs_for_predicted_defect(tmp_path: Path, predicted_defect: Structure) -> None:
    """INCAR carries the defect settings, KPOINTS has one k-point along the vacuum, POSCAR is the prediction."""
    directory = write_inputs(predicted_defect, tmp_path)
    assert {p.name for p in directory.iterdir()} == {"INCAR", "KPOINTS", "POSCAR", "POTCAR.spec"}

    incar = Incar.from_file(directory / "INCAR")
    expected = {"ISIF": 2, "IBRION": 2, "EDIFFG": -0.02, "NSW": 200, "ISPIN": 2, "ISYM": 0}
    assert {key: incar[key] for key in expected} == expected
    assert len(incar["MAGMOM"]) == len(predicted_defect)

    kpoints = Kpoints.from_file(directory / "KPOINTS")
    assert kpoints.style in (Kpoints.supported_modes.Gamma, Kpoints.supported_modes.Monkhorst)
    assert len(kpoints.kpts) == 1
    assert kpoints.kpts[0][2] == 1  # c is the vacuum direction of the monolayer
    assert all(n >= 1 for n in kpoints.kpts[0][:2])

    poscar = Poscar.from_file(directory / "POSCAR")
    assert_same_structure(poscar.structure, predicted_defect)
    assert poscar.site_symbols == ["Mo", "S"] and poscar.natoms == [9, 17]

    potcars = (directory / "POTCAR.spec").read_text().split()
    assert [p.split("_")[0] for p in potcars] == poscar.site_symbols


def test_incar_updates_win(tmp_path: Path, predicted_defect: Structure) -> None:
    """``incar_updates`` overrides both the defect defaults and the ``fmax``/``max_steps`` shortcuts."""
    updates = {"EDIFFG": -0.01, "ISPIN": 1, "ENCUT": 400}
    directory = write_inputs(predicted_defect, tmp_path, fmax=0.05, max_steps=50, incar_updates=updates)
    incar = Incar.from_file(directory / "INCAR")
    assert incar["EDIFFG"] == -0.01
    assert incar["ISPIN"] == 1
    assert incar["ENCUT"] == 400
    assert incar["NSW"] == 50
    assert incar["ISIF"] == 2
    settings = relaxer_settings("vasp", relax_maker("vasp", incar_updates=updates))
    assert settings["incar_updates"]["ENCUT"] == 400
    assert settings["fmax"] == 0.01  # the stored criterion is the one that runs, not the fmax shortcut


def test_stand_in_outputs_parse(tmp_path: Path, predicted_defect: Structure) -> None:
    """The stand-in's files parse with pymatgen and describe a converged relaxation of N_IONIC steps."""
    directory = write_inputs(predicted_defect, tmp_path)
    steps = fake_relaxation(predicted_defect, N_IONIC)
    energies = [s.energy for s in steps]
    assert all(b < a for a, b in itertools.pairwise(energies))
    write_vasp_outputs(directory, steps)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no POTCAR to match the POTCAR.spec titles against
        vasprun = Vasprun(directory / "vasprun.xml")
    assert len(vasprun.ionic_steps) == N_IONIC
    assert vasprun.converged
    np.testing.assert_allclose([s["e_0_energy"] for s in vasprun.ionic_steps], energies, atol=1e-6)
    np.testing.assert_allclose(vasprun.ionic_steps[-1]["forces"], steps[-1].forces, atol=1e-6)
    assert_same_structure(vasprun.initial_structure, predicted_defect)
    assert_same_structure(vasprun.final_structure, steps[-1].structure)
    assert vasprun.kpoints.kpts[0][2] == 1
    assert len(Oszicar(directory / "OSZICAR").ionic_steps) == N_IONIC
    assert Outcar(directory / "OUTCAR").final_energy == pytest.approx(energies[-1], abs=1e-6)
    assert_same_structure(Poscar.from_file(directory / "CONTCAR").structure, steps[-1].structure)


@pytest.fixture()
def reference(tmp_path: Path, predicted_defect: Structure) -> tuple[Path, list[IonicStep]]:
    """A monkeypatch_vasp reference folder for relaxing the predicted defect, and the relaxation in it."""
    inputs = write_inputs(predicted_defect, tmp_path / "expected_inputs")
    steps = fake_relaxation(predicted_defect, N_IONIC)
    return write_reference_dir(tmp_path / "vasp_ref" / "defect_relax", inputs, steps), steps


@contextlib.contextmanager
def fake_vasp(monkeypatch: pytest.MonkeyPatch, ref_dir: Path) -> Iterator[None]:
    """Replace VASP for the job ``JOB_NAME`` by ``ref_dir`` (all four inputs checked against ``ref_dir/inputs``)."""
    with contextlib.contextmanager(monkeypatch_vasp)(monkeypatch, ref_dir.parent) as mock:
        mock({JOB_NAME: ref_dir.name},
             {JOB_NAME: {"incar_settings": None, "check_inputs": ("incar", "kpoints", "poscar", "potcar")}})
        yield


def test_vasp_job_ionic_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, predicted_defect: Structure,
                              reference: tuple[Path, list[IonicStep]]) -> None:
    """The atomate2 VASP job parses the outputs into a TaskDoc with N_IONIC ionic steps and the CONTCAR structure."""
    ref_dir, steps = reference
    job = relax_maker("vasp").make(predicted_defect)
    with fake_vasp(monkeypatch, ref_dir), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        responses = run_locally(job, root_dir=tmp_path / "run", create_folders=True, ensure_success=True,
                                log=False)
    doc = responses[job.uuid][1].output

    assert ionic_steps(doc) == N_IONIC
    assert doc.state == "successful" and converged(doc) is True
    assert doc.task_label == JOB_NAME
    assert_same_structure(final_structure(doc), steps[-1].structure)
    assert final_energy(doc) == pytest.approx(steps[-1].energy, abs=1e-6)
    assert_same_structure(doc.calcs_reversed[0].output.ionic_steps[0].structure, predicted_defect, atol=1e-4)
    assert doc.calcs_reversed[0].input.incar["ISIF"] == 2
    assert [p.titel.split()[1] for p in doc.calcs_reversed[0].input.potcar_spec] == ["Mo_sv", "S"]


def test_reference_check_catches_wrong_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              predicted_defect: Structure,
                                              reference: tuple[Path, list[IonicStep]]) -> None:
    """The input check is live: a job writing a different INCAR fails instead of parsing the outputs."""
    ref_dir, _ = reference
    job = relax_maker("vasp", incar_updates={"ISPIN": 1}).make(predicted_defect)
    with fake_vasp(monkeypatch, ref_dir), warnings.catch_warnings(), pytest.raises(RuntimeError):
        warnings.simplefilter("ignore")
        run_locally(job, root_dir=tmp_path / "run", create_folders=True, ensure_success=True, log=False)
