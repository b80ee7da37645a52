"""Host sources: well-known hosts built offline, structure files, and the Materials Project.

Well-known hosts resolve without network: monolayer MoS2, WSe2, hBN, GaSe, InSe and black phosphorus
(the shipped model's domain, with the geometry of the DefiNet dataset's unit cells) and bulk Si, GaAs, GaN and MgO
under their Materials Project ids, built with pymatgen from space group and lattice constants.
Any other ``mp-`` id goes to the Materials Project (``mp-api``, ``MP_API_KEY``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Lattice, Structure

from definet_core.errors import DefiNetInputError
from definet_core.io import read_structure
from workflows.settings import settings


def _monolayer(a: float, c: float, metal: str, chalcogen: str, z_metal: float, z_chalcogen: tuple[float, float],
               gamma: float = 120.0) -> Structure:
    lattice = Lattice.from_parameters(a, a, c, 90, 90, gamma)
    return Structure(lattice, [metal, chalcogen, chalcogen],
                     [[1 / 3, 2 / 3, z_metal], [2 / 3, 1 / 3, z_chalcogen[0]], [2 / 3, 1 / 3, z_chalcogen[1]]])


def mos2_monolayer() -> Structure:
    """2H MoS2 monolayer (a = 3.19 A, 14.9 A cell height), as in the DefiNet dataset."""
    return _monolayer(3.1903157, 14.879004, "Mo", "S", 0.25, (0.144826, 0.355174))


def wse2_monolayer() -> Structure:
    """2H WSe2 monolayer (a = 3.33 A, 15.1 A cell height), as in the DefiNet dataset."""
    return _monolayer(3.32706951, 15.068951, "W", "Se", 0.25, (0.361569, 0.138431))


def hbn_monolayer() -> Structure:
    """Hexagonal BN monolayer (a = 2.51 A, 20 A cell height), as in the DefiNet dataset."""
    lattice = Lattice.from_parameters(2.51242846, 2.51242846, 20.0, 90, 90, 120)
    return Structure(lattice, ["B", "N"], [[1 / 3, 2 / 3, 0.192681625], [2 / 3, 1 / 3, 0.192681625]])


def _double_layer(a: float, cation: str, cation_z: tuple[float, float], anion_z: tuple[float, float],
                  cation_xy: tuple[float, float]) -> Structure:
    """A four-atom 2D cell with two cation and two anion planes (GaSe and InSe monolayers), c = 20 A."""
    lattice = Lattice.from_parameters(a, a, 20.0, 90, 90, 120)
    anion_xy = (cation_xy[1], cation_xy[0])
    return Structure(lattice, [cation, cation, "Se", "Se"],
                     [[*cation_xy, cation_z[0]], [*cation_xy, cation_z[1]], [*anion_xy, anion_z[0]],
                      [*anion_xy, anion_z[1]]])


def gase_monolayer() -> Structure:
    """GaSe monolayer (Se-Ga-Ga-Se, a = 3.82 A, 20 A cell height), as in the DefiNet dataset."""
    return _double_layer(3.81906671, "Ga", (0.38327267, 0.50681713), (0.56548028, 0.32460952), (2 / 3, 1 / 3))


def inse_monolayer() -> Structure:
    """InSe monolayer (Se-In-In-Se, a = 4.10 A, 20 A cell height), as in the DefiNet dataset."""
    return _double_layer(4.09647352, "In", (0.52943777, 0.38773463), (0.59281346, 0.32435894), (1 / 3, 2 / 3))


def phosphorene() -> Structure:
    """Black phosphorus monolayer (puckered, a = 3.30 A, b = 4.60 A, 20 A cell height), as in the DefiNet dataset."""
    y, z_low, z_high = 0.588557, 0.20912339, 0.31443551
    return Structure(Lattice.orthorhombic(3.299918, 4.600926, 20.0), ["P"] * 4,
                     [[0, y, z_low], [0, 1 - y, z_high], [0.5, y - 0.5, z_high], [0.5, 1.5 - y, z_low]])


def _prototype(spacegroup: str, lattice: Lattice, species: list[str],
               coords: list[list[float]]) -> Callable[[], Structure]:
    def build() -> Structure:
        return Structure.from_spacegroup(spacegroup, lattice, species, coords).get_primitive_structure()
    return build


@dataclass(frozen=True)
class KnownHost:
    """A host the project builds itself."""

    key: str
    description: str
    build: Callable[[], Structure]


KNOWN_HOSTS: dict[str, KnownHost] = {h.key: h for h in [
    KnownHost("MoS2-1L", "monolayer 2H MoS2", mos2_monolayer),
    KnownHost("WSe2-1L", "monolayer 2H WSe2", wse2_monolayer),
    KnownHost("hBN-1L", "monolayer hexagonal BN", hbn_monolayer),
    KnownHost("GaSe-1L", "monolayer GaSe", gase_monolayer),
    KnownHost("InSe-1L", "monolayer InSe", inse_monolayer),
    KnownHost("BP-1L", "monolayer black phosphorus (phosphorene)", phosphorene),
    KnownHost("mp-149", "Si, diamond (Fd-3m)", _prototype("Fd-3m", Lattice.cubic(5.4687), ["Si"], [[0, 0, 0]])),
    KnownHost("mp-2534", "GaAs, zinc blende (F-43m)",
              _prototype("F-43m", Lattice.cubic(5.7504), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]])),
    KnownHost("mp-804", "GaN, wurtzite (P6_3mc)",
              _prototype("P6_3mc", Lattice.hexagonal(3.2162, 5.2399), ["Ga", "N"],
                         [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.3768]])),
    KnownHost("mp-1265", "MgO, rock salt (Fm-3m)",
              _prototype("Fm-3m", Lattice.cubic(4.2576), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])),
]}
ALIASES = {"MoS2": "MoS2-1L", "WSe2": "WSe2-1L", "hBN": "hBN-1L", "BN": "hBN-1L", "GaSe": "GaSe-1L",
           "InSe": "InSe-1L", "BP": "BP-1L", "phosphorene": "BP-1L", "Si": "mp-149",
           "GaAs": "mp-2534", "GaN": "mp-804", "MgO": "mp-1265"}


def resolve_host(spec: str) -> tuple[str, Structure]:
    """Host id and structure for a well-known host, a structure file, or a Materials Project id.

    The id is the well-known key, the file's stem, or the ``mp-`` id.
    """
    key = ALIASES.get(spec, spec)
    if key in KNOWN_HOSTS:
        return key, KNOWN_HOSTS[key].build()
    path = Path(spec)
    if path.suffix or path.exists():
        return path.stem, read_structure(path)
    if key.startswith(("mp-", "mvc-")):
        return key, _from_materials_project(key)
    raise DefiNetInputError(
        f"host {spec!r}: not a well-known host ({', '.join(KNOWN_HOSTS)}), a structure file or a Materials Project id"
    )


def _from_materials_project(material_id: str) -> Structure:
    """Structure of ``material_id`` from the Materials Project (needs mp-api and MP_API_KEY)."""
    setup = ("set MP_API_KEY (https://next-gen.materialsproject.org/api) and `pip install 'definet[mp]'`, "
             f"or give a structure file; offline ids: {', '.join(k for k in KNOWN_HOSTS if k.startswith('mp-'))}")
    api_key = settings().mp_api_key
    if not api_key:
        raise DefiNetInputError(f"host {material_id}: cannot be resolved offline; {setup}")
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise DefiNetInputError(f"host {material_id}: mp-api is not installed; {setup}") from exc
    try:
        with MPRester(api_key) as rester:
            structure = rester.get_structure_by_material_id(material_id)
    except Exception as exc:
        raise DefiNetInputError(f"host {material_id}: Materials Project lookup failed ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    structure.remove_oxidation_states()
    return structure
