"""``definet evaluate`` on a split whose atoms do not move (dummy MAE 0): reported, with no ratio (n/a, JSON null)."""

import argparse
import json
import shutil

import numpy as np
import pytest

from definet_core.cli import add_core_commands, run_handler
from definet_core.metrics import average_errors, mae_ratio
from tests.conftest import write_dataset


def core_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="definet")
    add_core_commands(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


def test_the_ratio_is_none_without_a_dummy_error():
    rows = [{"mae": 0.01, "dummy_mae": 0.0, "local_mae_3A": 0.02, "dummy_local_mae_3A": 0.0}] * 2
    assert average_errors(rows)["ratio"] is None
    moved = [{"mae": 0.01, "dummy_mae": 0.04, "local_mae_3A": 0.02, "dummy_local_mae_3A": 0.05}]
    assert average_errors(moved)["ratio"] == pytest.approx(0.25)
    assert mae_ratio(0.1, float("nan")) is None and mae_ratio(0.0, 0.0) is None


def test_a_diverged_prediction_is_not_dropped_from_the_mean():
    good = {"mae": 0.01, "dummy_mae": 0.04, "local_mae_3A": float("nan"), "dummy_local_mae_3A": float("nan")}
    diverged = {**good, "mae": float("nan"), "local_mae_3A": 0.02, "dummy_local_mae_3A": 0.05}
    summary = average_errors([good, diverged])
    assert np.isnan(summary["mae"]) and summary["ratio"] != summary["ratio"]  # NaN, reported as such
    assert summary["local_mae_3A"] == pytest.approx(0.02)  # local metrics: over the structures with defects


def test_evaluate_reports_a_split_whose_atoms_do_not_move(tmp_path, cache_dir, tiny_checkpoint, capsys):
    material = write_dataset(tmp_path / "data", {"val": 2, "train": 1})
    for unrelaxed in (material / "CIF").glob("*_val_*_unrelaxed.cif"):  # "relaxed" = unrelaxed: nothing moves
        shutil.copy(unrelaxed, unrelaxed.with_name(unrelaxed.name.replace("_unrelaxed", "_relaxed")))
    out = tmp_path / "metrics.json"
    assert core_main(["evaluate", "--data", str(tmp_path / "data"), "--split", "val", "--checkpoint",
                      str(tiny_checkpoint), "--device", "cpu", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("MoS2"))
    assert row.split()[1] == "2" and row.split()[4] == "n/a"
    report = json.loads(out.read_text())
    assert report["MoS2"]["dummy_mae"] == 0.0 and report["MoS2"]["ratio"] is None
    assert report["MoS2"]["mae"] > 0  # the model still moves atoms, and that error is reported
    assert '"ratio": null' in out.read_text()

