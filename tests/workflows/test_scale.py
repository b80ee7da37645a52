"""Scale: streamed prediction equals one-by-one prediction; the prediction job's cases go to GridFS, not `jobs`."""

from __future__ import annotations

import numpy as np
import pytest
from jobflow import Flow, job, run_locally
from pymatgen.core import Structure
from pymongo import MongoClient

from definet_core.predict import EDGE_KEYS, Predictor
from tests.conftest import random_defect_cell
from workflows.documents import PredictionOutput
from workflows.enumeration_settings import EnumerationSettings
from workflows.jobs import DefiNetPredictMaker, enumerate_defects
from workflows.store import BLOBS_COLLECTION, JOBS_COLLECTION, job_store

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
    from_graphs = predictor.predictions_from_graphs(cells, graphs)
    assert all(key in g for g in graphs for key in EDGE_KEYS)  # the caller's graphs are left whole
    assert [p.verdict for p in from_graphs] == [p.verdict for p in streamed]
    assert all(np.allclose(a.structure.cart_coords, b.structure.cart_coords, atol=1e-5)
               for a, b in zip(from_graphs, streamed, strict=True))


@job
def predicted_case_ids(prediction: PredictionOutput) -> list[str]:
    """A downstream job: the ids of the predicted cases whose structure came back from GridFS as a Structure."""
    return [case.case_id for case in prediction.cases if isinstance(case.structure, Structure)]


def test_prediction_cases_go_to_gridfs_and_resolve_downstream(mongo_uri: str, database_name: str, tmp_path) -> None:
    from workflows.hosts import resolve_host

    cases = enumerate_defects([resolve_host("MoS2-1L")], SMALL_DENSE)
    predict = DefiNetPredictMaker(device="cpu", batch_size=2).make(cases.output)
    downstream = predicted_case_ids(predict.output)
    responses = run_locally(Flow([cases, predict, downstream]), store=job_store(mongo_uri, database_name),
                            ensure_success=True, log=False, root_dir=str(tmp_path), create_folders=True)
    enumerated = [case.case_id for case in responses[cases.uuid][1].output]
    assert len(enumerated) == 3 and responses[downstream.uuid][1].output == enumerated

    with MongoClient(mongo_uri) as client:
        database = client[database_name]
        doc = database[JOBS_COLLECTION].find_one({"uuid": predict.uuid})
        reference = doc["output"]["cases"]
        assert set(reference) >= {"blob_uuid", "store"} and reference["store"] == "data"
        assert doc["output"]["checkpoint"] == responses[predict.uuid][1].output.checkpoint  # the rest stays inline
        blob = database[f"{BLOBS_COLLECTION}.files"].find_one({"metadata.blob_uuid": reference["blob_uuid"]})
        assert blob is not None and blob["metadata"]["job_uuid"] == predict.uuid and blob["length"] > 0
    loaded = job_store(mongo_uri, database_name)
    loaded.connect()
    try:
        output = loaded.get_output(predict.uuid, load=True)  # raw: jobflow decodes when it resolves a reference
    finally:
        loaded.close()
    assert [case["case_id"] for case in output["cases"]] == enumerated
    assert all(case["structure"]["@class"] == "Structure" for case in output["cases"])
