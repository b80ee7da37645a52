"""Faults and reruns: failed relaxations leave documents with their errors; a rerun redoes only those."""

from __future__ import annotations

import pytest
from jobflow import run_locally
from pymatgen.core import Lattice, Structure
from pymongo import MongoClient

from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.flows.validation import DefectValidationMaker
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.reports.validation import summarize
from workflows.schemas.relaxation import RelaxationSummary
from workflows.storage.cases import CaseCollection, PredictionCollection
from workflows.storage.stores import ValidationStore, job_store

# EMT (ASE) has no parameters for Zn: that relaxation raises inside the real atomate2 job.
SETTINGS = EnumerationSettings(mode="single", supercell_matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]],
                               substitutions={"Cu": ["Ni", "Zn"]})
NICKEL = EnumerationSettings(mode="single", supercell_matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]],
                             substitutions={"Cu": ["Ni"]})


def run_flow(mongo_uri: str, database: str, tmp_path, enumeration: EnumerationSettings = SETTINGS,
             **maker_options) -> None:
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    maker = DefectValidationMaker(relaxer="emt", enumeration=enumeration,
                                  predict_maker=DefiNetPredictMaker(device="cpu"), **maker_options)
    run_locally(maker.make([("Cu", host)]), store=job_store(mongo_uri, database), ensure_success=False, log=False,
                root_dir=tmp_path, create_folders=True)


def test_a_failed_relaxation_is_stored_with_its_error_and_only_it_is_rerun(mongo_uri, database_name, tmp_path):
    run_flow(mongo_uri, database_name, tmp_path)
    with ValidationStore(mongo_uri, database_name) as store:
        docs = {d["defect_name"]: d for d in store.query()}
    assert sorted(docs) == ["Ni_Cu", "Zn_Cu", "v_Cu"]
    failed = docs["Zn_Cu"]
    assert failed["status"] == "failed" and failed["steps_from_unrelaxed"] is None
    assert failed["errors"] == ["relaxation from the unrelaxed cell failed: its job gave no output (the job log "
                                "or the FireWorks launch holds the traceback)"]
    assert all(docs[name]["status"] == "complete" and docs[name]["errors"] == [] for name in ("Ni_Cu", "v_Cu"))
    assert leftover_cases(mongo_uri, database_name) == (0, 0)  # recorded, so the record job discarded them

    run_flow(mongo_uri, database_name, tmp_path)  # again: only the failed case is relaxed and recorded
    with ValidationStore(mongo_uri, database_name) as store:
        again = {d["defect_name"]: d for d in store.query()}
        assert store.count() == 3
    for name in ("Ni_Cu", "v_Cu"):
        assert again[name]["created_at"] == docs[name]["created_at"]  # untouched
    assert again["Zn_Cu"]["created_at"] > failed["created_at"] and again["Zn_Cu"]["status"] == "failed"
    assert leftover_cases(mongo_uri, database_name) == (0, 0)


def leftover_cases(mongo_uri: str, database: str) -> tuple[int, int]:
    """Documents left in ``defect_cases`` and ``defect_predictions``."""
    with CaseCollection(mongo_uri, database) as cases, PredictionCollection(mongo_uri, database) as predictions:
        return cases.count(), predictions.count()


def relaxation_jobs(mongo_uri: str, database: str) -> int:
    """Relaxation jobs ever run against this database (their outputs in ``jobs``)."""
    with MongoClient(mongo_uri) as client:
        return client[database]["jobs"].count_documents({"name": {"$regex": " from (prediction|unrelaxed)$"}})


def test_a_rerun_under_another_start_policy_keeps_both_and_the_same_command_relaxes_nothing(
        mongo_uri, database_name, tmp_path):
    """The trap: documents were keyed without the start policy, so a second policy replaced the first's."""
    run_flow(mongo_uri, database_name, tmp_path, NICKEL)  # --start auto, with comparison
    with ValidationStore(mongo_uri, database_name) as store:
        auto = {d["case_id"]: d["created_at"] for d in store.query(start_policies=["auto"])}
    assert len(auto) == 2
    relaxed = relaxation_jobs(mongo_uri, database_name)

    run_flow(mongo_uri, database_name, tmp_path, NICKEL, start="unrelaxed")
    run_flow(mongo_uri, database_name, tmp_path, NICKEL, start="prediction", comparison=False)
    with ValidationStore(mongo_uri, database_name) as store:
        docs = store.query()
    assert len(docs) == 6  # two cases under three runs, none replaced
    assert {(d["start_policy"], d["comparison"]) for d in docs} == {("auto", True), ("unrelaxed", True),
                                                                  ("prediction", False)}
    only_prediction = [d for d in docs if d["start_policy"] == "prediction"]
    assert all(d["steps_from_prediction"] >= 1 and d["steps_from_unrelaxed"] is None for d in only_prediction)
    assert relaxation_jobs(mongo_uri, database_name) == relaxed + 2 + 2

    run_flow(mongo_uri, database_name, tmp_path, NICKEL)  # the first command again: nothing to relax
    assert relaxation_jobs(mongo_uri, database_name) == relaxed + 4
    with ValidationStore(mongo_uri, database_name) as store:
        assert {d["case_id"]: d["created_at"] for d in store.query(start_policies=["auto"])} == auto
        assert store.count() == 6
    rows = summarize(docs)
    assert sorted(r["start"] for r in rows) == ["auto+cmp", "prediction", "unrelaxed+cmp"]


def test_a_collection_made_under_the_old_key_accepts_a_second_policy(mongo_uri, database_name):
    """Databases written before the start policy joined the key carry a narrower unique index; it is dropped."""
    base = {"case_id": "c", "relaxer": "emt", "checkpoint": "k@1", "host_id": "h"}
    with MongoClient(mongo_uri) as client:
        client[database_name]["validation"].create_index([("case_id", 1), ("relaxer", 1), ("checkpoint", 1)],
                                                         unique=True, name="case_id_relaxer_checkpoint")
        client[database_name]["validation"].insert_one({**base, "start_policy": "auto", "comparison": True})
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert([{**base, "start_policy": "unrelaxed", "comparison": True}])
        assert sorted(d["start_policy"] for d in store.query()) == ["auto", "unrelaxed"]


def test_a_database_that_goes_down_mid_run_is_a_one_line_error_and_the_rerun_completes(tmp_path, monkeypatch):
    from secantus import SecantusDBServer

    from workflows.cli.run import run_validation
    from workflows.storage.server import DefiNetStoreError, stop_in_process_server

    storage = tmp_path / "db"
    storage.mkdir()
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(storage))
    server.start()
    host = tmp_path / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).to(filename=str(host))
    real_summary = RelaxationSummary.from_task_doc

    stopped = []

    def server_dies(task_doc):  # the server stops while the record job runs
        if not stopped:
            stopped.append(stop_in_process_server(server))
        return real_summary(task_doc)

    monkeypatch.setattr(RelaxationSummary, "from_task_doc", server_dies)
    options = {"uri": server.uri, "database": "definet"}
    with pytest.raises(DefiNetStoreError) as info:
        run_validation([str(host)], NICKEL, "emt", options, device="cpu")
    message = str(info.value)
    assert "went away during the run" in message and "\n" not in message

    monkeypatch.setattr(RelaxationSummary, "from_task_doc", real_summary)
    again = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(storage))
    again.start()
    try:
        docs = run_validation([str(host)], NICKEL, "emt", {"uri": again.uri, "database": "definet"}, device="cpu")
        assert sorted(d["defect_name"] for d in docs) == ["Ni_Cu", "v_Cu"]
        assert all(d["status"] == "complete" for d in docs)
    finally:
        stop_in_process_server(again)


def test_a_force_field_that_returns_nan_makes_a_failed_document(tmp_path):
    """A real EMT task document whose final energy is NaN is recorded as a failure, not as a result."""
    from jobflow import run_locally as run

    from workflows.jobs.fan_out import relaxation_summaries
    from workflows.relaxers.makers import relax_maker

    cell = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    cell.remove_sites([0])
    job = relax_maker("emt").make(cell)
    task_doc = run(job, log=False, ensure_success=True, root_dir=tmp_path, create_folders=True)[job.uuid][1].output
    (summary, _), errors = relaxation_summaries((task_doc, None), (True, False))
    assert summary is not None and errors == []
    task_doc.output.energy = float("nan")
    (summary, _), errors = relaxation_summaries((task_doc, None), (True, False))
    assert summary is None and errors == ["relaxation from the prediction failed: non-finite final energy (nan)"]
