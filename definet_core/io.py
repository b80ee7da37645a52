"""File input and output: structure files read with one-line errors that name the file, torch files written
atomically."""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import torch
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


def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file of its own in the same folder, then one rename.

    A reader never sees a half-written file, and two processes writing the same path (two trainings building the
    same graph cache) each write their own temporary file; the last rename wins with a whole file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # the umask's permissions
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
