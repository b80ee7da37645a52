"""Defect enumeration on real hosts: counts with known answers, supercells, ids, dense configurations, errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from monty.json import MontyDecoder, MontyEncoder, jsanitize
from pymatgen.core import Element, Structure
from pymatgen.core.structure_matcher import StructureMatcher

from definet_core.errors import DefiNetInputError
from definet_core.markers import Marker, defect_nodes
from workflows.defects.enumeration import (
    DefectCase,
    DefectSpec,
    case_id,
    choose_supercell,
    dense_defects,
    is_two_dimensional,
    single_defects,
)
from workflows.hosts import resolve_host

BULK_2X = np.diag([2, 2, 2])
MONO_2X = np.diag([2, 2, 1])
MONO_4X = np.diag([4, 4, 1])


def host(key: str) -> Structure:
    return resolve_host(key)[1]


def assert_no_oxidation_states(structure: Structure) -> None:
    assert all(isinstance(site.specie, Element) for site in structure)


def marker_counts(case: DefectCase) -> dict[str, int]:
    return defect_nodes(case.structure, case.pristine).defect_summary()


@pytest.mark.parametrize(("key", "expected"), [
    ("mp-149", ["v_Si"]),
    ("mp-2534", ["v_As", "v_Ga"]),
    ("mp-1265", ["v_Mg", "v_O"]),
    ("MoS2-1L", ["v_Mo", "v_S"]),
])
def test_symmetry_distinct_vacancies(key: str, expected: list[str]) -> None:
    matrix = MONO_2X if key.endswith("1L") else BULK_2X
    cases = single_defects(key, host(key), matrix)
    assert sorted(c.name for c in cases) == expected
    for case in cases:
        assert marker_counts(case) == {"substitution": 0, "vacancy": 1, "interstitial": 0}
        (spec,) = case.defects
        assert case.pristine[spec.site_index].specie.symbol == spec.original
        assert len(case.structure) == len(case.pristine) - 1


def test_monolayer_substitutions() -> None:
    cases = single_defects("MoS2-1L", host("MoS2-1L"), MONO_2X, substitutions={"S": ["Se"]})
    assert sorted(c.name for c in cases) == ["Se_S", "v_Mo", "v_S"]
    (se,) = [c for c in cases if c.name == "Se_S"]
    assert se.structure.composition.as_dict() == {"Mo": 4, "S": 7, "Se": 1}
    assert marker_counts(se) == {"substitution": 1, "vacancy": 0, "interstitial": 0}
    two = single_defects("MoS2-1L", host("MoS2-1L"), MONO_2X, substitutions={"S": ["Se", "Te"]}, vacancies=False)
    assert sorted(c.name for c in two) == ["Se_S", "Te_S"]


def test_interstitials_bulk_and_slab() -> None:
    si = single_defects("mp-149", host("mp-149"), BULK_2X, interstitials=["Li"], vacancies=False)
    assert si and all(c.name == "Li_i" for c in si)
    assert len({c.case_id for c in si}) == len(si)
    for case in si:
        assert marker_counts(case) == {"substitution": 0, "vacancy": 0, "interstitial": 1}
    mos2 = host("MoS2-1L")
    cases = single_defects("MoS2-1L", mos2, MONO_2X, interstitials=["Li"], vacancies=False)
    assert cases
    heights = mos2.cart_coords[:, 2]
    for case in cases:
        z = case.structure[-1].coords[2]
        assert case.structure[-1].specie.symbol == "Li"
        assert heights.min() - 1.01 < z < heights.max() + 1.01  # nothing in the vacuum
    mos2.translate_sites(list(range(len(mos2))), [0, 0, -0.25])  # slab across the cell boundary along c
    shifted = single_defects("MoS2-1L", mos2, MONO_2X, interstitials=["Li"], vacancies=False)
    assert len(shifted) == len(cases)


@pytest.mark.parametrize(("kwargs", "min_length", "min_atoms"), [
    ({}, 10.0, 0), ({"min_atoms": 50}, 0.0, 50), ({"min_length": 7.0}, 7.0, 0),
])
def test_two_dimensional_supercells_grow_in_plane(kwargs: dict, min_length: float, min_atoms: int) -> None:
    for key in ["MoS2-1L", "WSe2-1L", "hBN-1L"]:
        mono = host(key)
        assert is_two_dimensional(mono)
        matrix = choose_supercell(mono, **kwargs)
        assert matrix[2].tolist() == [0, 0, 1] and not matrix[:2, 2].any()
        cell = mono * matrix
        assert min(cell.lattice.abc[:2]) >= min_length - 1e-6 and len(cell) >= min_atoms


def test_two_dimensional_detection_and_bulk_supercells() -> None:
    straddling = host("MoS2-1L")  # slab across the cell boundary along c
    straddling.translate_sites(list(range(len(straddling))), [0, 0, -0.25])
    assert is_two_dimensional(straddling)
    for key in ["mp-149", "mp-2534", "mp-804", "mp-1265"]:
        bulk = host(key)
        assert not is_two_dimensional(bulk)
        assert min((bulk * choose_supercell(bulk)).lattice.abc) >= 10.0 - 1e-6
    si = host("mp-149")
    assert len(si * choose_supercell(si, min_atoms=30)) >= 30
    explicit = [[1, 1, 0], [0, 1, 0], [0, 0, 2]]
    assert choose_supercell(si, explicit).tolist() == explicit
    with pytest.raises(DefiNetInputError, match="only grow in-plane"):
        choose_supercell(host("MoS2-1L"), np.diag([2, 2, 2]))
    with pytest.raises(DefiNetInputError, match="integer"):
        choose_supercell(si, [[1.5, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(DefiNetInputError, match="determinant"):
        choose_supercell(si, [[1, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_no_oxidation_states_anywhere() -> None:
    mos2 = host("MoS2-1L")
    mos2.add_oxidation_state_by_element({"Mo": 4, "S": -2})
    cases = single_defects("MoS2-1L", mos2, MONO_2X, substitutions={"S": ["Se"], "Mo": "W"}, interstitials=["Li"])
    cases += dense_defects("MoS2-1L", mos2, MONO_4X, 3, vacancies={"S": 2}, substitutions={"Mo": {"W": 1}})
    for case in cases:
        assert_no_oxidation_states(case.structure)
        assert_no_oxidation_states(case.pristine)


def test_ids_are_stable_and_distinct() -> None:
    mos2 = host("MoS2-1L")
    first = single_defects("MoS2-1L", mos2, MONO_2X, substitutions={"S": ["Se", "Te"]}, interstitials=["Li"])
    again = single_defects("MoS2-1L", mos2, MONO_2X, substitutions={"S": ["Se", "Te"]}, interstitials=["Li"])
    assert [c.case_id for c in first] == [c.case_id for c in again]
    assert len({c.case_id for c in first}) == len(first)
    assert all(c.case_id.startswith("MoS2-1L-") and len(c.case_id) == len("MoS2-1L-") + 16 for c in first)
    bigger = single_defects("MoS2-1L", mos2, np.diag([3, 3, 1]), substitutions={"S": ["Se", "Te"]})
    assert not {c.case_id for c in bigger} & {c.case_id for c in first}
    dense = dense_defects("MoS2-1L", mos2, MONO_4X, 4, vacancies={"S": 2}, substitutions={"Mo": {"W": 1}})
    specs = dense[0].defects
    assert case_id("MoS2-1L", MONO_4X, specs[::-1]) == dense[0].case_id
    assert case_id("WSe2-1L", MONO_4X, specs) != dense[0].case_id


def test_dense_configurations_honour_counts() -> None:
    vacancies = {"S": 3, "Mo": 1}
    substitutions = {"Mo": {"W": 2}, "S": {"Se": 1}}
    cases = dense_defects("MoS2-1L", host("MoS2-1L"), MONO_4X, 5, vacancies=vacancies, substitutions=substitutions)
    assert len(cases) == 5 and len({c.case_id for c in cases}) == 5
    for case in cases:
        assert case.structure.composition.as_dict() == {"Mo": 13, "W": 2, "S": 28, "Se": 1}
        assert len(case.pristine) == 48 and case.supercell_matrix == MONO_4X.tolist()
        nodes = defect_nodes(case.structure, case.pristine)
        assert nodes.defect_summary() == {"substitution": 3, "vacancy": 4, "interstitial": 0}
        vacated = sorted(Element.from_Z(z).symbol for z in nodes.atomic_numbers[nodes.markers == Marker.VACANCY])
        assert vacated == ["Mo", "S", "S", "S"]
        substituted = sorted(s.symbol for s in np.array(case.structure.species)[
            nodes.markers[nodes.site_index >= 0] == Marker.SUBSTITUTION])
        assert substituted == ["Se", "W", "W"]
        assert sorted(d.label for d in case.defects) == sorted(["v_S"] * 3 + ["v_Mo", "W_Mo", "W_Mo", "Se_S"])
    density = dense_defects("MoS2-1L", host("MoS2-1L"), MONO_4X, 2, vacancies={"S": 0.125})
    assert all(c.structure.composition.as_dict() == {"Mo": 16, "S": 28} for c in density)


def test_duplicates_removed() -> None:
    mos2 = host("MoS2-1L")
    assert len(dense_defects("MoS2-1L", mos2, MONO_2X, 10, vacancies={"S": 1})) == 1
    cases = dense_defects("MoS2-1L", mos2, MONO_2X, 50, substitutions={"S": {"Se": 2}})
    # independent count: group every one of the C(8, 2) pairs with pymatgen's StructureMatcher
    pristine = mos2 * MONO_2X
    sulfur = [i for i, site in enumerate(pristine) if site.specie.symbol == "S"]
    every = []
    for pair in itertools.combinations(sulfur, 2):
        cell = pristine.copy()
        for i in pair:
            cell.replace(i, "Se")
        every.append(cell)
    distinct = len(StructureMatcher(primitive_cell=False).group_structures(every))
    assert len(cases) == distinct == 3
    keys = [frozenset((d.site_index, d.species) for d in c.defects) for c in cases]
    assert len(set(keys)) == len(keys)


def test_seeds() -> None:
    mos2 = host("MoS2-1L")
    kwargs = {"vacancies": {"S": 2}, "substitutions": {"Mo": {"W": 1}}}
    a = dense_defects("MoS2-1L", mos2, MONO_4X, 4, seed=1, **kwargs)
    b = dense_defects("MoS2-1L", mos2, MONO_4X, 4, seed=1, **kwargs)
    c = dense_defects("MoS2-1L", mos2, MONO_4X, 4, seed=2, **kwargs)
    assert [x.case_id for x in a] == [x.case_id for x in b]
    assert [x.case_id for x in a] != [x.case_id for x in c]
    assert all(x.structure == y.structure for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vacancies": {"Mo": 3}, "substitutions": {"Mo": {"W": 2}}}, "5 Mo defects requested .* only 4 Mo sites"),
    ({"vacancies": {"S": 9}}, "only 8 S sites"),
    ({"vacancies": {"S": 1.5}}, "not in \\(0, 1\\)"),
    ({"vacancies": {"S": 0.01}}, "selects none"),
    ({"vacancies": {"S": -1}}, "negative"),
    ({"vacancies": {"Se": 1}}, "Se is not in the host"),
    ({"substitutions": {"S": {"Xx": 1}}}, "not a chemical element"),
    ({"substitutions": {"S": {"S": 1}}}, "does not change"),
    ({}, "no defects requested"),
    ({"vacancies": {"S": 0}}, "no defects requested"),
])
def test_dense_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(DefiNetInputError, match=match) as info:
        dense_defects("MoS2-1L", host("MoS2-1L"), MONO_2X, 3, **kwargs)
    assert "MoS2-1L" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vacancies": False}, "no single defects"),
    ({"vacancies": False, "substitutions": {"S": []}}, "no single defects"),
    ({"substitutions": {"Se": ["Te"]}}, "Se is not in the host"),
    ({"interstitials": ["Qq"]}, "not a chemical element"),
])
def test_single_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(DefiNetInputError, match=match) as info:
        single_defects("MoS2-1L", host("MoS2-1L"), MONO_2X, **kwargs)
    assert "MoS2-1L" in str(info.value) and "\n" not in str(info.value)


def assert_same_case(restored: object, case: DefectCase) -> None:
    assert isinstance(restored, DefectCase)
    assert isinstance(restored.structure, Structure) and isinstance(restored.pristine, Structure)
    assert restored.structure == case.structure and restored.pristine == case.pristine
    assert restored.defects == case.defects and all(isinstance(d, DefectSpec) for d in restored.defects)
    assert (restored.case_id, restored.host_id, restored.supercell_matrix, restored.name) == (
        case.case_id, case.host_id, case.supercell_matrix, case.name)


def test_json_round_trips() -> None:
    mos2 = host("MoS2-1L")
    case = dense_defects("MoS2-1L", mos2, MONO_4X, 1, vacancies={"S": 2}, substitutions={"Mo": {"W": 1}})[0]
    case_i = single_defects("MoS2-1L", mos2, MONO_2X, interstitials=["Li"], vacancies=False)[0]
    for item in (case, case_i):
        # jobflow stores outputs with jsanitize(strict=True) and restores them with MontyDecoder
        stored = json.loads(json.dumps(jsanitize(item, strict=True, allow_bson=True)))
        assert_same_case(MontyDecoder().process_decoded(stored), item)
        assert_same_case(json.loads(json.dumps(item, cls=MontyEncoder), cls=MontyDecoder), item)
        assert_same_case(DefectCase.model_validate_json(item.model_dump_json()), item)
        assert_same_case(DefectCase.model_validate(item.model_dump()), item)
        assert_same_case(DefectCase.model_validate(json.loads(json.dumps(item.model_dump(mode="json")))), item)
