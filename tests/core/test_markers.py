import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from definet_core.errors import DefiNetInputError
from definet_core.markers import Marker, defect_nodes, infer_supercell_matrix, pristine_sites, pristine_supercell
from workflows.hosts import mos2_monolayer


def supercell(size=3):
    cell = mos2_monolayer()
    cell.make_supercell([size, size, 1])
    return cell


def test_pristine_cell_has_only_pristine_markers():
    nodes = defect_nodes(supercell(), mos2_monolayer())
    assert (nodes.markers == Marker.PRISTINE).all()
    assert nodes.num_atoms == 27


def test_vacancy_becomes_virtual_node_at_pristine_site():
    cell = supercell()
    removed = cell[4]
    cell.remove_sites([4])
    nodes = defect_nodes(cell, mos2_monolayer())
    assert len(nodes.markers) == 27 and nodes.num_atoms == 26
    assert nodes.markers[-1] == Marker.VACANCY and nodes.site_index[-1] == -1
    assert nodes.atomic_numbers[-1] == removed.specie.Z
    assert np.allclose(nodes.cart_coords[-1], removed.coords)
    assert (nodes.markers[:-1] == Marker.PRISTINE).all()


def test_substitution_and_interstitial():
    cell = supercell()
    cell.replace(1, "Se")
    cell.append("Li", [0.0, 0.0, 0.25])  # hollow site above nothing: no pristine site within tolerance
    nodes = defect_nodes(cell, mos2_monolayer())
    assert nodes.markers[1] == Marker.SUBSTITUTION
    assert nodes.markers[len(cell) - 1] == Marker.INTERSTITIAL
    assert nodes.defect_summary() == {"substitution": 1, "vacancy": 0, "interstitial": 1}


def test_displaced_atoms_still_match_within_tolerance():
    cell = supercell()
    cell.perturb(0.2, min_distance=0.1)
    nodes = defect_nodes(cell, mos2_monolayer())
    assert (nodes.markers == Marker.PRISTINE).all()


def test_2d_cell_with_more_vacuum_keeps_cartesian_positions():
    unit = mos2_monolayer()
    cell = supercell(4)
    taller = Structure(Lattice.from_parameters(*cell.lattice.abc[:2], 20.0, *cell.lattice.angles),
                       cell.species, cell.cart_coords, coords_are_cartesian=True)
    taller.remove_sites([0])
    assert infer_supercell_matrix(unit.lattice, taller.lattice, "t").tolist() == [[4, 0, 0], [0, 4, 0], [0, 0, 1]]
    nodes = defect_nodes(taller, unit)
    assert (nodes.markers == Marker.VACANCY).sum() == 1
    assert (nodes.markers == Marker.PRISTINE).sum() == len(taller)


def test_pristine_supercell_as_host():
    cell = supercell()
    host = cell.copy()
    cell.remove_sites([2])
    nodes = defect_nodes(cell, host)
    assert (nodes.markers == Marker.VACANCY).sum() == 1


def test_wrong_lattice_is_a_clear_error():
    cell = supercell()
    cell.scale_lattice(cell.volume * 1.2)
    with pytest.raises(DefiNetInputError, match="does not match its host"):
        defect_nodes(cell, mos2_monolayer(), name="bad.cif")


def test_shifted_structure_does_not_match():
    cell = supercell()
    cell.translate_sites(list(range(len(cell))), [0.9, 0.4, 0.0], frac_coords=False)
    with pytest.raises(DefiNetInputError, match=r"bad\.cif: .* does not match its host"):
        defect_nodes(cell, mos2_monolayer(), name="bad.cif")


def test_pristine_sites_are_remembered_by_content_not_by_object():
    host, cell = mos2_monolayer(), supercell()
    numbers, coords = pristine_sites(host, cell.lattice)
    reference = pristine_supercell(host, cell.lattice)
    assert numbers.tolist() == list(reference.atomic_numbers) and np.allclose(coords, reference.cart_coords)
    assert pristine_sites(mos2_monolayer(), supercell().lattice)[0] is numbers  # an equal host: the same arrays
    with pytest.raises(ValueError):
        numbers[0] = 1  # shared between calls, so read-only
    host.replace(0, "W")  # the same object with other content is another pristine supercell
    assert sorted(set(pristine_sites(host, cell.lattice)[0].tolist())) == [16, 74]
    changed = defect_nodes(supercell(), host)
    assert (changed.markers[[i for i, site in enumerate(supercell()) if site.specie.symbol == "Mo"]]
            == Marker.SUBSTITUTION).all()

