import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from definet_core.io import read_structure
from definet_core.markers import Marker
from tests.conftest import random_defect_cell
from workflows.cli.main import main


@pytest.fixture()
def defect_files(tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for k in range(3):
        cell, host = random_defect_cell(rng)
        path = tmp_path / f"d{k}.cif"
        cell.to(filename=str(path))
        paths.append(path)
    host_path = tmp_path / "host.cif"
    host.to(filename=str(host_path))
    return paths, host_path


@pytest.mark.parametrize("workers", ["0", "2"])
def test_predict_writes_structures_in_input_order(defect_files, tmp_path, tiny_checkpoint, workers):
    paths, host = defect_files
    out = tmp_path / "out"
    assert main(["predict", *map(str, paths), "--host", str(host), "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--batch-size", "2", "--workers", workers, "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["structures"]) == 3
    for path, entry in zip(paths, summary["structures"], strict=True):
        original, predicted = read_structure(path), read_structure(entry["output"])
        assert [s.specie for s in original] == [s.specie for s in predicted]
        assert entry["markers"]["vacancy"] == 1 and entry["markers"]["substitution"] == 1
        assert np.abs(original.cart_coords - predicted.cart_coords).max() < 1.0


def test_predictor_in_memory_matches_markers(defect_files, tiny_checkpoint):
    from definet_core.predict import Predictor

    paths, host = defect_files
    predictor = Predictor(tiny_checkpoint, device="cpu", batch_size=2)
    structures = [read_structure(p) for p in paths]
    relaxed = predictor.predict(structures, read_structure(host))
    assert [len(s) for s in relaxed] == [len(s) for s in structures]
    graph = predictor.graph(structures[0], read_structure(host))
    assert int((graph.marker == Marker.VACANCY).sum()) == 1


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("definet: error:")
    return err


def test_unreadable_file_is_a_one_line_error(defect_files, tmp_path, capsys, tiny_checkpoint):
    _, host = defect_files
    bad = tmp_path / "garbage.cif"
    bad.write_text("this is not a cif\n")
    err = one_line_error(capsys, ["predict", str(bad), "--host", str(host), "--checkpoint", str(tiny_checkpoint),
                                  "-o", str(tmp_path / "o")])
    assert "garbage.cif" in err


def test_empty_structure_is_a_one_line_error(defect_files, tmp_path, capsys, tiny_checkpoint):
    _, host = defect_files
    empty = tmp_path / "empty.json"
    empty.write_text(Structure(Lattice.cubic(3), [], []).to_json())
    err = one_line_error(capsys, ["predict", str(empty), "--host", str(host), "--checkpoint",
                                  str(tiny_checkpoint), "-o", str(tmp_path / "o")])
    assert "empty.json" in err and ("no atoms" in err or "at least 1 site" in err)


def test_element_outside_the_embedding_is_a_one_line_error(defect_files, tmp_path, capsys, tiny_checkpoint):
    paths, host = defect_files
    heavy = read_structure(paths[0])
    heavy.replace(0, "Md")  # Z = 101, beyond the 100-element embedding
    heavy_path = tmp_path / "heavy.cif"
    heavy.to(filename=str(heavy_path))
    err = one_line_error(capsys, ["predict", str(heavy_path), "--host", str(host), "--checkpoint",
                                  str(tiny_checkpoint), "-o", str(tmp_path / "o")])
    assert "heavy.cif" in err and "Md" in err


def test_structure_not_matching_host_is_a_one_line_error(defect_files, tmp_path, capsys, tiny_checkpoint):
    paths, host = defect_files
    wrong = read_structure(paths[0])
    wrong.scale_lattice(wrong.volume * 1.3)
    wrong_path = tmp_path / "wrong.cif"
    wrong.to(filename=str(wrong_path))
    err = one_line_error(capsys, ["predict", str(wrong_path), "--host", str(host), "--checkpoint",
                                  str(tiny_checkpoint), "-o", str(tmp_path / "o")])
    assert "wrong.cif" in err and "does not match its host" in err


@pytest.mark.parametrize("workers", ["0", "2"])  # read in this process, or in worker processes
def test_one_bad_file_among_good_ones_is_named_and_the_rest_are_predicted(defect_files, tmp_path, capsys, workers):
    paths, host = defect_files
    bad = tmp_path / "broken.cif"
    bad.write_text("data_broken\n_cell_length_a 3\n")
    out = tmp_path / "out"
    err = one_line_error(capsys, ["predict", str(paths[0]), str(bad), str(paths[1]), "--host", str(host),
                                  "--device", "cpu", "--batch-size", "1", "--workers", workers, "-o", str(out)])
    assert "broken.cif" in err and "1 of 3" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [e["input"] for e in summary["structures"]] == [str(paths[0]), str(paths[1])]
    assert all(e["in_domain"] is True and e["domain_reasons"] == [] for e in summary["structures"])
    assert len(summary["errors"]) == 1 and (out / "d0_predicted.cif").is_file()


def test_poscar_in_poscar_out_with_the_lattice_orientation_kept(defect_files, tmp_path, capsys):
    paths, host = defect_files
    cell = read_structure(paths[0])
    poscar = tmp_path / "POSCAR_v_S"
    cell.to(filename=str(poscar), fmt="poscar")
    out = tmp_path / "out"
    assert main(["predict", str(poscar), "--host", str(host), "--device", "cpu", "-o", str(out)]) == 0
    written = out / "POSCAR_v_S_predicted.vasp"
    predicted = Structure.from_file(written)
    assert np.allclose(predicted.lattice.matrix, Structure.from_file(poscar).lattice.matrix, atol=1e-8)
    assert predicted.formula == cell.formula
    assert "in domain" in capsys.readouterr().out
    assert main(["predict", str(poscar), "--host", str(host), "--device", "cpu", "-o", str(out),
                 "--format", "cif"]) == 0
    assert (out / "POSCAR_v_S_predicted.cif").is_file()


def test_an_unusable_workers_value_is_a_one_line_error(defect_files, tmp_path, capsys):
    paths, host = defect_files
    err = one_line_error(capsys, ["predict", str(paths[0]), "--host", str(host), "--device", "cpu",
                                  "--workers", "many", "-o", str(tmp_path / "out")])
    assert "workers 'many'" in err
