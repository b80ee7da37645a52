"""Scale: streamed prediction equals one-by-one prediction; cases and predictions stream through their collections."""

from __future__ import annotations

import logging

import bson
import numpy as np
import pytest
from jobflow import CURRENT_JOB, Flow, job, run_locally
from pymatgen.core import Structure
from pymongo import MongoClient

from definet_core.predict import EDGE_KEYS, Predictor
from tests.conftest import random_defect_cell
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.jobs.enumerate import enumerate_defects, enumeration_job, with_store
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.schemas.prediction import PredictionJobOutput
from workflows.storage.cases import (
    CaseCollection,
    PredictionCollection,
    read_cases,
    read_predictions,
    write_cases,
    write_predictions,
)
from workflows.storage.server import DefiNetStoreError
from workflows.storage.stores import BLOBS_COLLECTION, JOBS_COLLECTION, job_store

SMALL_DENSE = EnumerationSettings(mode="dense", supercell_matrix=[[3, 0, 0], [0, 3, 0], [0, 0, 1]],
                                  dense_vacancies={"S": 1}, dense_substitutions={"S": {"Se": 1}}, n_configs=3)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(device="cpu", batch_size=3)


def test_streamed_batches_equal_one_by_one_predictions(predictor: Predictor) -> None:
    rng = np.random.default_rng(3)
    pairs = [random_defect_cell(rng, n_vacancies=int(rng.integers(1, 3)), c=20.0) for _ in range(10)]
    cells, hosts = [cell for cell, _ in pairs], [host for _, host in pairs]
    streamed = predictor.predictions(cells, hosts)  # batches of 3, 3, 3, 1
    alone = [predictor.predictions([cell], host)[0] for cell, host in pairs]
    assert len(streamed) == 10
    for batched, single in zip(streamed, alone, strict=True):
        assert np.allclose(batched.structure.cart_coords, single.structure.cart_coords, atol=1e-5)
        assert batched.structure.species == single.structure.species
        assert batched.verdict == single.verdict
        assert not any(key in batched.graph for key in EDGE_KEYS)  # dropped once judged
        assert batched.graph.marker.shape == single.graph.marker.shape
    graphs = [predictor.graph(cell, host) for cell, host in pairs]
    from_graphs = predictor.predictions(cells, graphs=graphs)
    assert all(key in g for g in graphs for key in EDGE_KEYS)  # the caller's graphs are left whole
    assert [p.verdict for p in from_graphs] == [p.verdict for p in streamed]
    assert all(np.allclose(a.structure.cart_coords, b.structure.cart_coords, atol=1e-5)
               for a, b in zip(from_graphs, streamed, strict=True))


@job
def stored_predictions(prediction: PredictionJobOutput) -> dict[str, bool]:
    """A downstream job: each predicted case's id, and whether its structure came back from the store."""
    from workflows.storage.stores import mongo_location

    location = mongo_location(CURRENT_JOB.store)
    with PredictionCollection(*location) as collection:
        ids = [doc["case_id"] for doc in collection.find({"prediction_id": prediction.prediction_id}, ["case_id"])]
    predicted = read_predictions(location, prediction.prediction_id, ids)
    return {case_id: isinstance(p.structure, Structure) for case_id, p in predicted.items()}


def test_cases_and_predictions_stream_through_collections(mongo_uri: str, database_name: str, tmp_path,
                                                          monkeypatch) -> None:
    """Cases and predictions go to their collections in chunks (3 cases, chunks of 2); job outputs stay small."""
    from workflows.hosts import resolve_host
    from workflows.storage import cases as case_store

    monkeypatch.setattr(case_store, "CHUNK_SIZE", 2)
    cases = enumeration_job([resolve_host("MoS2-1L")], SMALL_DENSE)
    predict = DefiNetPredictMaker(device="cpu", batch_size=2).make(cases.output)
    downstream = with_store(stored_predictions(predict.output), "downstream")
    responses = run_locally(Flow([cases, predict, downstream]), store=job_store(mongo_uri, database_name),
                            ensure_success=True, log=False, root_dir=str(tmp_path), create_folders=True)
    case_set = responses[cases.uuid][1].output
    output = responses[predict.uuid][1].output
    assert case_set.count == 3 and case_set.set_id == cases.uuid
    assert output.count == 3 and output.prediction_id == predict.uuid and output.in_domain == 3
    location = (mongo_uri, database_name)
    enumerated = [case.case_id for case in read_cases(location, case_set)]
    assert enumerated == [case.case_id for case in SMALL_DENSE.enumerate(*resolve_host("MoS2-1L"))]
    assert responses[downstream.uuid][1].output == dict.fromkeys(enumerated, True)

    with MongoClient(mongo_uri) as client:
        database = client[database_name]
        for job_uuid in (cases.uuid, predict.uuid):
            doc = database[JOBS_COLLECTION].find_one({"uuid": job_uuid})
            assert len(bson.encode(doc)) < 2000  # a reference, not the cases
        assert database[BLOBS_COLLECTION + ".files"].count_documents({}) == 0
        assert database[CaseCollection.COLLECTION].count_documents({"set_id": case_set.set_id}) == 3
        assert database[PredictionCollection.COLLECTION].count_documents({"prediction_id": predict.uuid}) == 3


def test_stored_case_keeps_structure_and_pristine(mongo_uri: str, database_name: str) -> None:
    """A case read back equals the one written: structure, defects and the pristine cell rebuilt from them."""
    from workflows.hosts import resolve_host

    written = SMALL_DENSE.enumerate(*resolve_host("MoS2-1L"))
    location = (mongo_uri, database_name)
    case_set = write_cases(location, "set-a", iter(written))
    write_cases(location, "set-a", iter(written))  # a job run again replaces its documents
    read = list(read_cases(location, case_set))
    assert case_set.count == 3 and len(read) == 3
    for a, b in zip(written, read, strict=True):
        assert a.case_id == b.case_id and a.defects == b.defects
        assert a.structure == b.structure and a.pristine == b.pristine
    assert [c.case_id for c in read_cases(location, case_set, [written[2].case_id])] == [written[2].case_id]
    with MongoClient(mongo_uri) as client:
        client[database_name][CaseCollection.COLLECTION].delete_one({"set_id": "set-a", "index": 1})
    with pytest.raises(DefiNetStoreError, match="2 stored, 3 expected"):
        list(read_cases(location, case_set))


def test_prune_deletes_only_what_old_completed_jobs_left(mongo_uri: str, database_name: str, capsys) -> None:
    """``definet db prune``: sets and predictions of jobs completed long ago go; recent or unfinished ones stay."""
    from datetime import datetime, timedelta

    from workflows.cli.main import main
    from workflows.hosts import resolve_host
    from workflows.schemas.prediction import PredictedCase

    cases = SMALL_DENSE.enumerate(*resolve_host("MoS2-1L"))
    location = (mongo_uri, database_name)
    ages = {"old": 10, "recent": 1, "unfinished": None}
    for owner in ages:
        write_cases(location, f"set-{owner}", iter(cases))
        write_predictions(location, f"predict-{owner}", [
            PredictedCase(case_id=c.case_id, structure=c.structure, mean_displacement=0.0, in_domain=True)
            for c in cases])
    with MongoClient(mongo_uri) as client:
        jobs = client[database_name][JOBS_COLLECTION]
        for owner, days in ages.items():
            if days is not None:
                completed = (datetime.now() - timedelta(days=days)).isoformat()
                jobs.insert_many([{"uuid": f"{kind}-{owner}", "index": 1, "completed_at": completed}
                                  for kind in ("set", "predict")])
    store = ("--db-uri", mongo_uri, "--database", database_name)
    assert main(["db", "prune", "--older-than", "-1", *store]) == 2
    assert main(["db", "prune", "--older-than", "7", *store]) == 0
    assert "deleted 3 defect cases and 3 predictions" in capsys.readouterr().out
    with MongoClient(mongo_uri) as client:
        database = client[database_name]
        assert sorted(database[CaseCollection.COLLECTION].distinct("set_id")) == ["set-recent", "set-unfinished"]
        assert sorted(database[PredictionCollection.COLLECTION].distinct("prediction_id")) == [
            "predict-recent", "predict-unfinished"]
    assert main(["db", "prune", "--older-than", "0", *store]) == 0  # the recent ones too; never the unfinished
    assert "kept 2 set(s) whose job never completed" in capsys.readouterr().out
    with MongoClient(mongo_uri) as client:
        assert client[database_name][CaseCollection.COLLECTION].distinct("set_id") == ["set-unfinished"]


def test_jobs_without_a_mongodb_store_say_so(tmp_path, caplog) -> None:
    from workflows.hosts import resolve_host

    cases = enumerate_defects([resolve_host("MoS2-1L")], SMALL_DENSE)  # store not exposed
    with caplog.at_level(logging.INFO, logger="jobflow"):
        responses = run_locally(cases, ensure_success=False, log=False, root_dir=str(tmp_path), create_folders=True)
    assert cases.uuid not in responses
    assert "enumerate defects: needs jobflow's store exposed" in caplog.text
