"""Pseudo-labelled pairs: rearranged defects of train cells, relaxed by a teacher (``definet pseudo-label``)."""

import json

import numpy as np
import pytest
from pymatgen.core import Structure

from definet_core import pseudo_labels
from definet_core.dataset import MaterialSet, find_material_sets, load_split
from definet_core.errors import DefiNetInputError
from definet_core.io import read_structure
from definet_core.markers import defect_nodes
from definet_core.predict import Predictor
from definet_core.pseudo_labels import rearranged_defects, write_pseudo_sets
from tests.conftest import random_defect_cell, write_dataset
from workflows.cli.main import main


def test_rearranged_defects_keep_the_defects_and_move_them():
    rng = np.random.default_rng(0)
    cell, host = random_defect_cell(rng, size=6, n_vacancies=3, n_substitutions=3, c=20.0)
    moved = rearranged_defects(cell, host, np.random.default_rng(1))
    assert moved.composition == cell.composition and moved.lattice == cell.lattice
    before, after = defect_nodes(cell, host), defect_nodes(moved, host)
    assert after.defect_summary() == before.defect_summary() == {"substitution": 3, "vacancy": 3, "interstitial": 0}
    vacancies = [tuple(np.round(after.cart_coords[k], 3)) for k in np.flatnonzero(after.site_index < 0)]
    assert vacancies != [tuple(np.round(before.cart_coords[k], 3)) for k in np.flatnonzero(before.site_index < 0)]
    again = rearranged_defects(cell, host, np.random.default_rng(1))
    assert np.array_equal(again.cart_coords, moved.cart_coords)  # the seed decides


def test_rearranging_needs_a_cell_on_the_ideal_lattice():
    rng = np.random.default_rng(0)
    cell, host = random_defect_cell(rng, size=4, n_vacancies=1, n_substitutions=1, c=20.0)
    shifted = cell.copy()
    shifted.translate_sites([0], [1.0, 0.0, 0.0], frac_coords=False)
    with pytest.raises(DefiNetInputError, match=r"^cell: atom 0 is 1\.00 A from the nearest site of the pristine"):
        rearranged_defects(shifted, host, rng, name="cell")
    crowded = Structure(cell.lattice, [*cell.species, "S"], [*cell.frac_coords, cell.frac_coords[-1] + 1e-4])
    with pytest.raises(DefiNetInputError, match="two atoms sit on one site"):
        rearranged_defects(crowded, host, rng)


def test_pseudo_sets_are_the_teachers_predictions_in_the_dataset_layout(tmp_path, tiny_checkpoint):
    data = tmp_path / "data"
    write_dataset(data, {"train": 3, "val": 2})
    out = tmp_path / "pseudo"
    teacher = Predictor("definet_2d_v2", device="cpu")
    (written,) = write_pseudo_sets(data, out, teacher, copies=2)
    assert (written.key, written.generated, written.kept) == ("MoS2", 6, 6)
    (material,) = find_material_sets(out)
    ids = material.split_ids("train")
    assert len(ids) == 6 and ids[0].startswith("pseudo0_") and not (material.root / "val.csv").exists()
    host = read_structure(material.unit_cell_path)
    unrelaxed, relaxed = (read_structure(path) for path in material.pair_paths(ids[0]))
    (predicted,) = teacher.predictions([unrelaxed], host)
    assert np.allclose(relaxed.cart_coords, predicted.structure.cart_coords, atol=1e-4)  # CIF precision
    assert len(load_split(material, "train", 5.0, 24)) == 6  # `definet train` reads it
    assert write_pseudo_sets(data, out, teacher) == []  # complete sets are kept, not redone


def test_labelling_in_chunks_writes_what_one_pass_writes(tmp_path, monkeypatch, tiny_checkpoint):
    data = tmp_path / "data"
    write_dataset(data, {"train": 3, "val": 1})
    teacher = Predictor("definet_2d_v2", device="cpu")
    write_pseudo_sets(data, tmp_path / "whole", teacher, copies=2, seed=3)
    monkeypatch.setattr(pseudo_labels, "LABEL_CHUNK", 4)  # 6 cells: a chunk of 4, then one of 2
    (written,) = write_pseudo_sets(data, tmp_path / "chunked", teacher, copies=2, seed=3)
    assert written.generated == 6
    whole, chunked = (find_material_sets(tmp_path / name)[0] for name in ("whole", "chunked"))
    assert chunked.split_ids("train") == whole.split_ids("train")
    for atoms_id in whole.split_ids("train"):
        (unrelaxed, relaxed), (unrelaxed_chunked, relaxed_chunked) = (
            [read_structure(path) for path in material.pair_paths(atoms_id)] for material in (whole, chunked))
        assert unrelaxed == unrelaxed_chunked  # the same rearrangements
        assert np.allclose(relaxed.cart_coords, relaxed_chunked.cart_coords, atol=1e-5)  # other batches: fp noise


def test_the_pseudo_label_command_writes_sets_and_refuses_bad_input(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(data, {"train": 2, "val": 1})
    out = tmp_path / "pseudo"
    assert main(["pseudo-label", "--data", str(data / "MoS2"), "--teacher", "definet_2d_v2", "--device", "cpu",
                 "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["teacher"].startswith("definet_2d_v2@") and report["sets"][0]["kept"] == 2
    assert MaterialSet(out / "MoS2").split_ids("train")
    assert main(["pseudo-label", "--data", str(data), "--copies", "0", "-o", str(out / "x")]) == 2
    assert "--copies 0: must be at least 1" in capsys.readouterr().err
