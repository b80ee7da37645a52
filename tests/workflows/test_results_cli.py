"""definet results / run from the command line against a populated real database."""

from __future__ import annotations

import json

import pytest

from workflows.cli.main import main
from workflows.reports.validation import summarize
from workflows.storage.stores import ValidationStore


def doc(case, host, relaxer, from_prediction, from_unrelaxed, same=True, mae=0.01, checkpoint="c@1"):
    return {"case_id": case, "host_id": host, "relaxer": relaxer, "checkpoint": checkpoint, "start_policy": "auto",
            "comparison": True,
            "steps_from_prediction": from_prediction, "steps_from_unrelaxed": from_unrelaxed,
            "same_minimum": same, "prediction_mae": mae}


@pytest.fixture()
def populated(mongo_uri, database_name):
    docs = [doc("a", "MoS2-1L", "chgnet", 10, 40), doc("b", "MoS2-1L", "chgnet", 20, 60, same=False, mae=0.03),
            doc("c", "MoS2-1L", "chgnet", 30, 50), doc("d", "mp-149", "emt", 5, 5)]
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert(docs)
    return ["--db-uri", mongo_uri, "--database", database_name]


def test_summary_rows():
    rows = summarize([doc("a", "h", "emt", 10, 40), doc("b", "h", "emt", 20, 60, same=False),
                      doc("c", "h", "emt", 30, None)])
    (row,) = rows
    assert row["n"] == 3 and row["median_steps_from_prediction"] == 20 and row["median_steps_from_unrelaxed"] == 50
    assert row["mean_steps_from_prediction"] == 20 and row["mean_steps_from_unrelaxed"] == 50
    assert row["saving_percent"] == pytest.approx(60.0) and row["n_same_minimum"] == 2


def test_summary_rows_order_checkpoints_by_version():
    docs = [doc(case, "h", "emt", 10, 40, checkpoint=checkpoint)
            for case, checkpoint in [("a", "definet_v10@2"), ("b", "definet_v9@1"), ("c", "definet_v11@3")]]
    assert [r["checkpoint"] for r in summarize(docs)] == ["definet_v9@1", "definet_v10@2", "definet_v11@3"]


def test_step_plot_wraps_many_groups_onto_rows(tmp_path):
    from PIL import Image

    from workflows.reports.validation import PLOT_COLUMNS, steps_plot

    docs = [doc("a", f"h{i}", "emt", 10 + i, 30) for i in range(PLOT_COLUMNS + 2)]  # six groups: two rows
    steps_plot(docs[:1], tmp_path / "single.png")
    steps_plot(docs, tmp_path / "many.png")
    many, single = Image.open(tmp_path / "many.png").size, Image.open(tmp_path / "single.png").size
    assert many[0] == PLOT_COLUMNS * single[0] and many[1] == 2 * single[1]


def test_results_command_writes_table_json_and_plot(populated, tmp_path, capsys):
    out, plot = tmp_path / "r.json", tmp_path / "steps.png"
    assert main(["results", *populated, "--json", str(out), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "MoS2-1L" in table and "mp-149" in table
    rows = json.loads(out.read_text())["rows"]
    mos2 = next(r for r in rows if r["host"] == "MoS2-1L")
    assert set(mos2) == {"host", "relaxer", "checkpoint", "start", "n", "median_steps_from_prediction",
                         "median_steps_from_unrelaxed", "mean_steps_from_prediction", "mean_steps_from_unrelaxed",
                         "saving_percent", "n_same_minimum", "mean_prediction_mae", "n_out_of_domain"}
    assert mos2["n"] == 3 and mos2["saving_percent"] == pytest.approx(60.0) and mos2["n_same_minimum"] == 2
    assert plot.stat().st_size > 5_000


def test_results_filters_by_host_and_relaxer(populated, tmp_path):
    out = tmp_path / "r.json"
    assert main(["results", *populated, "--host", "mp-149", "--relaxer", "emt", "--json", str(out)]) == 0
    assert [r["host"] for r in json.loads(out.read_text())["rows"]] == ["mp-149"]


def test_results_keep_start_policies_apart_and_filter_on_them(populated, mongo_uri, database_name, tmp_path):
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert([{**doc("a", "MoS2-1L", "chgnet", None, 44), "start_policy": "unrelaxed"}])
        assert store.count() == 5  # the auto document of case a is kept beside it
    out = tmp_path / "r.json"
    assert main(["results", *populated, "--host", "MoS2-1L", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["start"], r["n"]) for r in rows] == [("auto+cmp", 3), ("unrelaxed+cmp", 1)]
    assert main(["results", *populated, "--start", "unrelaxed", "--json", str(out)]) == 0
    assert [r["mean_steps_from_unrelaxed"] for r in json.loads(out.read_text())["rows"]] == [44]


def test_results_keep_checkpoints_apart_and_filter_on_them(populated, mongo_uri, database_name, tmp_path, capsys):
    """Documents of another checkpoint (an earlier default, an ensemble) are their own row, not averaged in."""
    from definet_core.predict import checkpoint_id

    shipped = checkpoint_id("definet_v11")
    ensemble = f"{shipped}+definet_2d_seed1@0123456789ab"
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert([doc("a", "MoS2-1L", "chgnet", 12, 40, checkpoint=shipped),
                      doc("b", "MoS2-1L", "chgnet", 16, 60, checkpoint=shipped),
                      doc("a", "MoS2-1L", "chgnet", 30, 40, checkpoint=ensemble)])
    out = tmp_path / "r.json"
    assert main(["results", *populated, "--host", "MoS2-1L", "--json", str(out)]) == 0
    rows = {r["checkpoint"]: r for r in json.loads(out.read_text())["rows"]}
    assert {name: row["n"] for name, row in rows.items()} == {"c@1": 3, shipped: 2, ensemble: 1}
    assert rows[shipped]["mean_steps_from_prediction"] == 14
    assert ensemble in capsys.readouterr().out  # the table names each row's checkpoint

    for spec, expected in [("definet_v11", {shipped}), (ensemble, {ensemble}), ("c@1", {"c@1"}),
                           ("definet_v11+definet_2d_seed1@0123456789ab", {ensemble})]:
        assert main(["results", *populated, "--checkpoint", spec, "--json", str(out)]) == 0
        assert {r["checkpoint"] for r in json.loads(out.read_text())["rows"]} == expected, spec
    assert main(["results", *populated, "--checkpoint", "definet_v11", "--checkpoint", "c@1", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["rows"]) == 3  # c@1 on both hosts, definet_v11 on MoS2-1L


def test_ensemble_id_names_the_default_files_and_stored_ids():
    """``None`` is the default; a file is named by its content; a stored ``name@hash`` is kept verbatim."""
    from definet_core.predict import checkpoint_id, ensemble_id

    assert ensemble_id([None]) == checkpoint_id(None)
    assert ensemble_id([None, "definet_2d_seed1"]) == f"{checkpoint_id(None)}+{checkpoint_id('definet_2d_seed1')}"
    assert ensemble_id(["definet_v3@0123456789ab", "definet_2d_seed1"]).startswith("definet_v3@0123456789ab+")


def test_results_for_an_unknown_checkpoint_is_a_one_line_error(populated, capsys):
    assert main(["results", *populated, "--checkpoint", "definet_v99"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "definet_v99: checkpoint not found" in err


def test_results_with_no_match_is_a_one_line_error(populated, capsys):
    assert main(["results", *populated, "--host", "nothing"]) == 2
    assert capsys.readouterr().err.strip().startswith("definet: error: definet results: no validation documents")


def test_down_database_fails_fast_with_a_clear_message(capsys):
    import time

    started = time.monotonic()
    assert main(["results", "--db-uri", "mongodb://127.0.0.1:1/"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - started < 10
    assert "\n" not in err and "127.0.0.1:1" in err


def test_run_command_bad_option_is_a_one_line_error(capsys):
    assert main(["run", "--host", "MoS2-1L", "--defects", "dense", "--vacancies", "S"]) == 2
    assert "--vacancies 'S': expected KEY=VALUE" in capsys.readouterr().err


def test_emt_on_elements_it_does_not_cover_fails_before_any_job(capsys):
    assert main(["run", "--host", "mp-149", "--relaxer", "emt"]) == 2
    assert "--relaxer emt: no EMT potential for Si" in capsys.readouterr().err
