"""A stand-in for VASP in tests: relax with a cheap real potential and write VASP-format outputs.

``fake_relaxation`` relaxes a structure (fixed cell, steepest descent) with ASE's Lennard-Jones
calculator, recording every configuration whose energy and forces were computed; ``write_vasp_outputs``
turns such a trajectory plus the inputs VASP would have read (INCAR, KPOINTS, POTCAR.spec) into the files
atomate2's parser reads: ``vasprun.xml``, ``OUTCAR``, ``OSZICAR`` and ``CONTCAR``. ``write_reference_dir``
lays inputs and outputs out the way ``atomate2.utils.testing.vasp.monkeypatch_vasp`` expects:
``<ref>/inputs/{INCAR,KPOINTS,POSCAR,POTCAR.spec}`` (checked against what the job writes) and
``<ref>/outputs/*`` (copied into the job directory in place of running VASP).

The numbers are not DFT: they only need to be internally consistent (energy falls along the trajectory,
forces are the potential's gradients, the final configuration is the CONTCAR) and parseable by
pymatgen's ``Vasprun``/``Outcar``/``Oszicar`` and emmet's ``TaskDoc.from_directory``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from ase.calculators.lj import LennardJones
from ase.units import GPa
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Incar, Kpoints, Poscar

INPUT_FILES = ("INCAR", "KPOINTS", "POSCAR", "POTCAR.spec")
FAKE_VASP_VERSION = "6.4.2"


@dataclass
class IonicStep:
    """One configuration of a relaxation with its energy (eV), forces (eV/A) and stress (kbar, VASP sign)."""

    structure: Structure
    energy: float
    forces: np.ndarray
    stress: np.ndarray


def fake_relaxation(structure: Structure, n_steps: int, step_size: float = 0.1, max_move: float = 0.05,
                    sigma: float = 2.0, epsilon: float = 0.05) -> list[IonicStep]:
    """``n_steps`` ionic steps (the start included) of a fixed-cell steepest-descent relaxation.

    Energies and forces come from ASE's Lennard-Jones potential; each step moves the atoms along the
    forces by ``step_size`` A per eV/A, capped at ``max_move`` A per atom.
    """
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = LennardJones(sigma=sigma, epsilon=epsilon, rc=3 * sigma, smooth=True)
    steps: list[IonicStep] = []
    for k in range(n_steps):
        forces = atoms.get_forces()
        stress_voigt = atoms.get_stress(voigt=False)  # eV/A^3, ASE sign convention
        steps.append(IonicStep(structure=AseAtomsAdaptor.get_structure(atoms),
                               energy=float(atoms.get_potential_energy()),
                               forces=forces.copy(), stress=-stress_voigt / GPa * 10.0))
        if k < n_steps - 1:
            move = step_size * forces
            norms = np.linalg.norm(move, axis=1, keepdims=True)
            atoms.positions += move * np.minimum(1.0, max_move / np.maximum(norms, 1e-12))
    return steps


def _xml_value(name: str, value: Any) -> str:
    """One INCAR-style parameter as a vasprun.xml ``<i>`` or ``<v>`` element."""
    def typed(v: Any) -> tuple[str, str]:
        if isinstance(v, bool):
            return ' type="logical"', "T" if v else "F"
        if isinstance(v, int):
            return ' type="int"', str(v)
        if isinstance(v, float):
            return "", f"{v:.8f}"
        return ' type="string"', escape(str(v))

    if isinstance(value, list | tuple | np.ndarray):
        values = [typed(v) for v in value]
        return f'<v{values[0][0] if values else ""} name="{name}">{" ".join(t for _, t in values)}</v>'
    kind, text = typed(value)
    return f'<i{kind} name="{name}">{text}</i>'


def _varray(name: str, rows: np.ndarray) -> str:
    lines = "".join(f"<v>{' '.join(f'{x:16.8f}' for x in row)}</v>\n" for row in np.atleast_2d(rows))
    return f'<varray name="{name}">\n{lines}</varray>'


def _structure_xml(structure: Structure, name: str | None = None) -> str:
    attr = f' name="{name}"' if name else ""
    lattice = structure.lattice
    return (f"<structure{attr}>\n<crystal>\n{_varray('basis', lattice.matrix)}\n"
            f'<i name="volume">{lattice.volume:.8f}</i>\n'
            f"{_varray('rec_basis', lattice.reciprocal_lattice_crystallographic.matrix)}\n</crystal>\n"
            f"{_varray('positions', structure.frac_coords)}\n</structure>")


def _energy_xml(energy: float) -> str:
    return (f'<energy>\n<i name="e_fr_energy">{energy:.8f}</i>\n<i name="e_wo_entrp">{energy:.8f}</i>\n'
            f'<i name="e_0_energy">{energy:.8f}</i>\n</energy>')


def _kpoint_list(kpoints: Kpoints) -> np.ndarray:
    """The k-points of a Gamma-centred or Monkhorst-Pack grid (full grid, no symmetry reduction)."""
    divisions = np.array(kpoints.kpts[0], dtype=int)
    shift = 0.0 if kpoints.style == Kpoints.supported_modes.Gamma else (1 - divisions % 2) / 2
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in divisions), indexing="ij"), axis=-1).reshape(-1, 3)
    frac = (grid + shift) / divisions
    return frac - np.rint(frac - 1e-9) * (frac > 0.5)


def vasprun_xml(steps: list[IonicStep], incar: Incar, kpoints: Kpoints, potcar_symbols: list[str],
                electronic_steps: int = 3) -> str:
    """A minimal vasprun.xml for the relaxation ``steps`` run with ``incar``/``kpoints``/POTCARs.

    ``potcar_symbols`` are POTCAR names as in POTCAR.spec (``Mo_sv``), one per species in POSCAR order.
    Each ionic step gets ``electronic_steps`` SCF steps converging onto its energy.
    """
    first = steps[0].structure
    species = [el.symbol for el in dict.fromkeys(site.specie for site in first)]
    counts = [sum(site.specie.symbol == el for site in first) for el in species]
    atoms_rows = "".join(f"<rc><c>{site.specie.symbol}</c><c>{species.index(site.specie.symbol) + 1}</c></rc>\n"
                         for site in first)
    type_rows = "".join(f"<rc><c>{n}</c><c>{el}</c><c>1.0</c><c>1.0</c><c>PAW_PBE {sym} 00Jan0000</c></rc>\n"
                        for el, n, sym in zip(species, counts, potcar_symbols, strict=True))
    params = dict(incar)
    params.setdefault("NELM", 60)
    params.setdefault("ISPIN", 1)
    params.setdefault("LORBIT", 0)
    kpts = _kpoint_list(kpoints)
    style = "Gamma" if kpoints.style == Kpoints.supported_modes.Gamma else "Monkhorst-Pack"
    calculations = []
    for step in steps:
        scf = "".join(f"<scstep>\n{_energy_xml(step.energy + 10.0 ** -(2 * j))}\n</scstep>\n"
                      for j in range(electronic_steps - 1, 0, -1))
        scf += f"<scstep>\n{_energy_xml(step.energy)}\n</scstep>\n"
        calculations.append(f"<calculation>\n{scf}{_structure_xml(step.structure)}\n{_varray('forces', step.forces)}\n"
                            f"{_varray('stress', step.stress)}\n{_energy_xml(step.energy)}\n</calculation>\n")
    newline = "\n"
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
<generator>
<i name="program" type="string">vasp </i>
<i name="version" type="string">{FAKE_VASP_VERSION} </i>
<i name="subversion" type="string">definet test stand-in</i>
<i name="platform" type="string">LinuX </i>
<i name="date" type="string">2025 01 01 </i>
<i name="time" type="string">00:00:00 </i>
</generator>
<incar>
{newline.join(_xml_value(k, v) for k, v in incar.items())}
</incar>
<kpoints>
<generation param="{style}">
<v type="int" name="divisions">{" ".join(str(int(n)) for n in kpoints.kpts[0])}</v>
<v name="usershift">{" ".join(f"{x:.1f}" for x in kpoints.kpts_shift)}</v>
</generation>
{_varray("kpointlist", kpts)}
{_varray("weights", np.full((len(kpts), 1), 1.0 / len(kpts)))}
</kpoints>
<parameters>
<separator name="general">
{newline.join(_xml_value(k, v) for k, v in params.items())}
</separator>
</parameters>
<atominfo>
<atoms>{len(first)}</atoms>
<types>{len(species)}</types>
<array name="atoms">
<dimension dim="1">ion</dimension>
<field type="string">element</field>
<field type="int">atomtype</field>
<set>
{atoms_rows}</set>
</array>
<array name="atomtypes">
<dimension dim="1">type</dimension>
<field type="int">atomspertype</field>
<field type="string">element</field>
<field>mass</field>
<field>valence</field>
<field type="string">pseudopotential</field>
<set>
{type_rows}</set>
</array>
</atominfo>
{_structure_xml(first, "initialpos")}
{"".join(calculations)}{_structure_xml(steps[-1].structure, "finalpos")}
</modeling>
"""


def outcar_text(steps: list[IonicStep], incar: Incar, n_kpoints: int = 1) -> str:
    """A short OUTCAR: header with the lines pymatgen's ``Outcar`` requires, energies per ionic step,
    the stop message of a converged relaxation and run statistics."""
    body = [f" vasp.{FAKE_VASP_VERSION} (definet test stand-in)", " running on    1 total cores", "",
            f"   k-points           NKPTS = {n_kpoints:6d}   k-points in BZ     NKDIM = {n_kpoints:6d}"
            "   number of bands    NBANDS=     64",
            "   total plane-waves  NPLWV =  64000",
            f"   ISPIN  = {incar.get('ISPIN', 1):6d}    spin polarized calculation?",
            f"   IBRION = {incar.get('IBRION', -1):6d}    ionic relax: 0-MD 1-quasi-New 2-CG",
            f"   NSW    = {incar.get('NSW', 0):6d}    number of steps for IOM", ""]
    for k, step in enumerate(steps, start=1):
        rule = "-" * 39
        body += [f"{rule} Iteration {k:6d}(   1)  {rule}",
                 "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)", "  " + "-" * 51,
                 f"  free  energy   TOTEN  = {step.energy:18.8f} eV", "",
                 " number of electron     100.0000000 magnetization       0.0000000",
                 " total drift:{:>24.6f}{:>14.6f}{:>14.6f}".format(*step.forces.sum(axis=0)),
                 f"  energy  without entropy= {step.energy:18.8f}  energy(sigma->0) = {step.energy:18.8f}", ""]
    body += [" reached required accuracy - stopping structural energy minimisation", "",
             " General timing and accounting informations for this job:",
             " ========================================================", "",
             "                  Total CPU time used (sec):        1.000",
             "                            User time (sec):        1.000",
             "                          System time (sec):        0.000",
             "                         Elapsed time (sec):        1.000", "",
             "                   Maximum memory used (kb):       1000.",
             "                   Average memory used (kb):          N/A", ""]
    return "\n".join(body)


def oszicar_text(steps: list[IonicStep], electronic_steps: int = 3) -> str:
    """OSZICAR lines (``DAV:`` SCF steps and one ``F=`` line per ionic step) for the relaxation."""
    lines = []
    previous = 0.0
    for k, step in enumerate(steps, start=1):
        lines.append("       N       E                     dE             d eps       ncg     rms          rms(c)")
        for j in range(electronic_steps - 1, -1, -1):
            e = step.energy + (10.0 ** -(2 * j) if j else 0.0)
            lines.append(f"DAV: {electronic_steps - j:3d}   {e: .12E}   {e - previous: .5E}"
                         "   -0.10000E-03   100   0.100E-02")
            previous = e
        de = step.energy - (steps[k - 2].energy if k > 1 else 0.0)
        lines.append(f"{k:4d} F= {step.energy: .8E} E0= {step.energy: .8E}  d E ={de: .6E}  mag=     0.0000")
    return "\n".join(lines) + "\n"


def write_vasp_outputs(directory: Path, steps: list[IonicStep], input_dir: Path | None = None) -> None:
    """Write vasprun.xml, OUTCAR, OSZICAR and CONTCAR for ``steps`` into ``directory``.

    INCAR, KPOINTS and POTCAR.spec are read from ``input_dir`` (default: ``directory``), as VASP would.
    """
    input_dir = input_dir or directory
    incar = Incar.from_file(input_dir / "INCAR")
    kpoints = Kpoints.from_file(input_dir / "KPOINTS")
    potcar_symbols = (input_dir / "POTCAR.spec").read_text().split()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vasprun.xml").write_text(vasprun_xml(steps, incar, kpoints, potcar_symbols))
    (directory / "OUTCAR").write_text(outcar_text(steps, incar, len(_kpoint_list(kpoints))))
    (directory / "OSZICAR").write_text(oszicar_text(steps))
    Poscar(steps[-1].structure).write_file(directory / "CONTCAR", significant_figures=10)


def write_reference_dir(ref_dir: Path, input_dir: Path, steps: list[IonicStep]) -> Path:
    """A ``monkeypatch_vasp`` reference folder: ``inputs/`` copied from ``input_dir``, ``outputs/`` from ``steps``.

    ``outputs/`` also holds the inputs, as a real VASP directory would after the run.
    """
    for sub in ("inputs", "outputs"):
        (ref_dir / sub).mkdir(parents=True, exist_ok=True)
        for name in INPUT_FILES:
            shutil.copy(input_dir / name, ref_dir / sub / name)
    write_vasp_outputs(ref_dir / "outputs", steps, input_dir=input_dir)
    return ref_dir
