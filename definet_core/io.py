"""Reading structure files with one-line errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

from pymatgen.core import Structure

from definet_core.errors import DefiNetInputError
from definet_core.markers import atomic_numbers_of


def read_structure(path: str | Path) -> Structure:
    """Read a structure file (CIF, POSCAR, JSON, ... any format pymatgen knows) without oxidation states."""
    path = Path(path)
    if not path.is_file():
        raise DefiNetInputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DefiNetInputError(f"{path}: cannot be read as a structure ({reason})") from exc
    structure.remove_oxidation_states()
    atomic_numbers_of(structure, str(path))
    return structure
