import pytest

from definet_core.errors import DefiNetInputError
from workflows.defects.enumeration import is_two_dimensional
from workflows.hosts import KNOWN_HOSTS, resolve_host


@pytest.mark.parametrize(("spec", "formula", "n_sites", "two_d"), [
    ("MoS2-1L", "MoS2", 3, True), ("WSe2", "WSe2", 3, True), ("hBN-1L", "BN", 2, True),
    ("mp-149", "Si", 2, False), ("mp-2534", "GaAs", 2, False), ("mp-804", "GaN", 4, False),
    ("mp-1265", "MgO", 2, False),
])
def test_well_known_hosts_resolve_offline(spec, formula, n_sites, two_d, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    host_id, structure = resolve_host(spec)
    assert host_id in KNOWN_HOSTS
    assert structure.composition.reduced_formula == formula and len(structure) == n_sites
    assert is_two_dimensional(structure) is two_d


def test_bulk_lattice_constants_are_those_of_the_materials():
    si = resolve_host("mp-149")[1]
    assert si.get_distance(0, 1) == pytest.approx(5.4687 * 3**0.5 / 4, abs=1e-3)  # Si-Si bond
    mgo = resolve_host("mp-1265")[1]
    assert mgo.get_distance(0, 1) == pytest.approx(4.2576 / 2, abs=1e-3)


def test_structure_file_host(tmp_path):
    path = tmp_path / "my_host.json"
    resolve_host("mp-149")[1].to(filename=str(path))
    host_id, structure = resolve_host(str(path))
    assert host_id == "my_host" and len(structure) == 2


def test_unknown_id_offline_says_how_to_set_up_materials_project(monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(DefiNetInputError, match=r"mp-9999999: cannot be resolved offline; set MP_API_KEY"):
        resolve_host("mp-9999999")


def test_missing_file_and_nonsense_are_clear_errors(tmp_path):
    with pytest.raises(DefiNetInputError, match="no such file"):
        resolve_host(str(tmp_path / "absent.cif"))
    with pytest.raises(DefiNetInputError, match="not a well-known host"):
        resolve_host("unobtainium")
