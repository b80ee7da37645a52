"""Dataset recipes: parsing errors, deterministic duplicate-free generation, new hosts, published statistics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from definet_core.errors import DefiNetInputError
from definet_core.markers import Marker, defect_nodes
from tests.conftest import shared_data_or_skip
from workflows.defects.enumeration import _canonical, _site_permutations
from workflows.defects.recipes import BUILTIN_RECIPES, generate, load_recipe, parse_recipe, split_of
from workflows.hosts import resolve_host

CU = {"name": "cu-demo", "host": "Cu.cif", "supercell": [2, 2, 2], "vacancies": ["Cu"],
      "substitutions": {"Cu": ["Ni"]}, "defects_per_structure": [1, 2], "structures": 4, "seed": 0}


def copper() -> tuple[str, Structure]:
    return "Cu", Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure()


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, "recipe cu-demo: unknown key 'colour'"),
    ({"defects_per_structure": [4, 2]}, r"recipe cu-demo: defects_per_structure \[4, 2\]: lo > hi"),
    ({"defects_per_structure": [0, 2]}, "recipe cu-demo: defects per structure must be at least 1"),
    ({"splits": {"train": 0.8, "val": 0.3}}, "recipe cu-demo: splits .*sum to 1"),
    ({"structures": 0}, "recipe cu-demo: structures: Input should be greater than 0"),
    ({"vacancies": [], "substitutions": {}}, "recipe cu-demo: no defect types"),
])
def test_parsing_errors_are_one_line_and_name_the_recipe(change, message):
    with pytest.raises(DefiNetInputError, match=message) as info:
        parse_recipe({**CU, **change}, "file")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"vacancies": ["Mo"]}, "recipe cu-demo: Mo is not in host Cu.cif"),
    ({"substitutions": {"Cu": ["Cu"]}}, "recipe cu-demo: substitution Cu -> Cu does not change the element"),
    ({"defects_per_structure": [2, 9]}, "recipe cu-demo: .* but the supercell .* has only 8 Cu sites"),
    ({"vacuum": 20.0}, "recipe cu-demo: vacuum is for 2D hosts"),
])
def test_recipes_impossible_on_their_host_fail_before_any_job(change, message):
    with pytest.raises(DefiNetInputError, match=message) as info:
        generate(parse_recipe({**CU, **change}, "file"), *copper())
    assert "\n" not in str(info.value)


def test_yaml_file_and_builtin_names(tmp_path):
    import yaml

    path = tmp_path / "cu.yaml"
    path.write_text(yaml.safe_dump(CU))
    copper()[1].to(filename=str(tmp_path / "Cu.cif"))
    recipe = load_recipe(str(path))
    assert recipe.name == "cu-demo" and recipe.host_spec() == str(tmp_path / "Cu.cif")
    assert load_recipe("MoS2-high") is BUILTIN_RECIPES["MoS2-high"]
    with pytest.raises(DefiNetInputError, match="recipe nothing: not a built-in recipe"):
        load_recipe("nothing")


def test_generation_is_deterministic_extends_and_has_no_symmetry_equivalent_duplicates():
    recipe = parse_recipe({**CU, "defects_per_structure": [1, 3], "structures": 10}, "file")
    cases = generate(recipe, *copper())
    assert len(cases) == 10 and len({c.case_id for c in cases}) == 10
    assert [c.case_id for c in generate(recipe, *copper(), structures=4)] == [c.case_id for c in cases[:4]]
    assert all(c.case_id.startswith("cu-demo-") and 1 <= len(c.defects) <= 3 for c in cases)
    perms = _site_permutations(cases[0].pristine)
    keys = set()
    for case in cases:
        sites = np.array([d.site_index for d in case.defects])
        codes = np.array([0 if d.kind == "vacancy" else 28 for d in case.defects])
        keys.add(_canonical(perms, sites, codes))
    assert len(keys) == 10  # no two structures are related by a symmetry operation of the supercell
    other_seed = generate(recipe.model_copy(update={"seed": 1}), *copper())
    assert [c.case_id for c in other_seed] != [c.case_id for c in cases]
    with pytest.raises(DefiNetInputError, match=r"recipe cu-demo: only \d+ distinct structures"):
        generate(parse_recipe({**CU, "defects_per_structure": [1, 1], "structures": 3}, "file"), *copper())


def test_splits_are_deterministic_and_follow_the_fractions():
    recipe = parse_recipe(CU, "file")
    ids = [f"id{k}" for k in range(20)]
    splits = split_of(recipe, ids)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert split_of(recipe, list(reversed(ids))) == splits
    assert sorted(i for part in splits.values() for i in part) == sorted(ids)


@pytest.mark.parametrize(("key", "folder", "cif"), [("GaSe", "GaSe", "GaSe.cif"), ("InSe", "InSe", "InSe.cif"),
                                                    ("BP", "BP", "P.cif")])
def test_new_hosts_have_the_dataset_geometry(key, folder, cif):
    from definet_core.io import read_structure

    unit = read_structure(shared_data_or_skip() / "high_density" / folder / cif)
    host_id, host = resolve_host(key)
    assert host_id == f"{key}-1L"
    assert np.allclose(host.lattice.matrix, unit.lattice.matrix, atol=1e-4)
    assert [s.specie for s in host] == [s.specie for s in unit]
    assert np.allclose(host.cart_coords, unit.cart_coords, atol=1e-4)


def _labels(structure: Structure, host: Structure) -> list[str]:
    """Defect labels (v_X, Y_X) of a structure against its host unit cell, from definet_core's markers."""
    from definet_core.markers import nearest_sites, pristine_supercell

    nodes = defect_nodes(structure, host)
    pristine = pristine_supercell(host, structure.lattice)
    sites = nearest_sites(structure.cart_coords, pristine.cart_coords, structure.lattice, 0.5)
    vacancies = [f"v_{el}" for el in (str(Structure(structure.lattice, [z], [[0, 0, 0]])[0].specie)
                                      for z in nodes.atomic_numbers[nodes.markers == Marker.VACANCY])]
    substitutions = [f"{structure[k].specie}_{pristine[int(sites[k])].specie}"
                     for k in np.flatnonzero(nodes.markers[:len(structure)] == Marker.SUBSTITUTION)]
    return vacancies + substitutions


@pytest.mark.parametrize(("name", "folder"), [("MoS2-high", "high_density/MoS2"), ("BP-high", "high_density/BP"),
                                              ("WSe2-low", "low_density/WSe2")])
def test_builtin_recipes_match_the_published_statistics(name, folder):
    """Counts per structure, defect types and their shares, supercell and c of generated vs published structures."""
    from definet_core.dataset import MaterialSet
    from definet_core.io import read_structure

    material = MaterialSet(shared_data_or_skip() / folder)
    unit = read_structure(material.unit_cell_path)
    ids = material.split_ids("train")  # 30 spread over the split: files are grouped by defect type
    published = [read_structure(material.pair_paths(i)[0]) for i in ids[::len(ids) // 30][:30]]
    recipe = BUILTIN_RECIPES[name]
    host_id, host = resolve_host(recipe.host)
    generated = [case.structure for case in generate(recipe, host_id, host, structures=30)]

    def stats(structures: list[Structure]) -> tuple[Counter, Counter, set, set]:  # (lattice to 0.01 A)
        labels = [_labels(s, unit) for s in structures]
        return (Counter(len(x) for x in labels), Counter(label for x in labels for label in x),
                {round(s.lattice.c, 2) for s in structures},
                {tuple(np.round(s.lattice.abc[:2], 2)) for s in structures})

    (n_pub, types_pub, c_pub, ab_pub), (n_gen, types_gen, c_gen, ab_gen) = stats(published), stats(generated)
    assert c_gen == c_pub and ab_gen == ab_pub  # same supercell, same cell height
    assert set(types_gen) == set(types_pub)  # the same vacancies and substitutions
    assert set(n_gen) <= set(recipe.counts()) and max(n_pub.values()) and set(n_pub) - set(n_gen) <= {1, 2}
    share_pub = {k: v / sum(types_pub.values()) for k, v in types_pub.items()}
    share_gen = {k: v / sum(types_gen.values()) for k, v in types_gen.items()}
    assert all(abs(share_pub[k] - share_gen[k]) < 0.1 for k in share_pub), (share_pub, share_gen)
    if name.endswith("high"):
        assert set(n_gen) == set(recipe.counts()) and set(n_pub) <= set(recipe.counts())
