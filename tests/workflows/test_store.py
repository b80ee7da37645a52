"""Documents store against a real SecantusDB server: validation upserts, unique index, queries, JobStore."""

from __future__ import annotations

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from workflows.storage.server import DefiNetStoreError
from workflows.storage.stores import ValidationStore, job_store


def _doc(case: str, host: str, relaxer: str, steps: int, checkpoint: str = "shipped") -> dict:
    return {"case_id": case, "host_id": host, "relaxer": relaxer, "checkpoint": checkpoint, "start_policy": "auto",
            "comparison": True, "ionic_steps": steps}


def test_upsert_twice_never_duplicates(mongo_uri: str, database_name: str) -> None:
    docs = [_doc("MoS2_v_S_0", "MoS2-1L", "chgnet", 40), _doc("MoS2_v_S_0", "MoS2-1L", "vasp", 12),
            _doc("GaN_v_N_0", "mp-804", "chgnet", 70)]
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert(docs)
        assert store.count() == 3
        changed = [dict(d) for d in docs]
        changed[0]["ionic_steps"] = 5
        changed[0]["energy"] = -1.5
        store.upsert(changed)
        assert store.count() == 3
        first = [d for d in store.query() if d["case_id"] == "MoS2_v_S_0" and d["relaxer"] == "chgnet"]
    assert len(first) == 1 and first[0]["ionic_steps"] == 5 and first[0]["energy"] == -1.5
    assert "_id" not in first[0]


def test_unique_index_on_key(mongo_uri: str, database_name: str) -> None:
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert([_doc("c1", "MoS2-1L", "chgnet", 3)])
    client: MongoClient = MongoClient(mongo_uri)
    try:
        collection = client[database_name]["validation"]
        unique = [spec["key"] for spec in collection.index_information().values() if spec.get("unique")]
        assert [("case_id", 1), ("relaxer", 1), ("checkpoint", 1), ("start_policy", 1), ("comparison", 1)] in unique
        with pytest.raises(DuplicateKeyError):
            collection.insert_one(_doc("c1", "MoS2-1L", "chgnet", 9))
    finally:
        client.close()


def test_query_filters(mongo_uri: str, database_name: str) -> None:
    with ValidationStore(mongo_uri, database_name) as store:
        store.upsert([_doc("a", "MoS2-1L", "chgnet", 1), _doc("a", "MoS2-1L", "vasp", 2),
                      _doc("b", "mp-804", "chgnet", 3), _doc("c", "mp-149", "emt", 4)])
        assert {d["case_id"] for d in store.query(hosts=["MoS2-1L"])} == {"a"}
        assert len(store.query(hosts=["MoS2-1L"])) == 2
        assert {d["host_id"] for d in store.query(relaxers=["chgnet"])} == {"MoS2-1L", "mp-804"}
        both = store.query(hosts=["MoS2-1L", "mp-149"], relaxers=["vasp", "emt"])
        assert [(d["case_id"], d["relaxer"]) for d in both] == [("a", "vasp"), ("c", "emt")]
        assert len(store.query()) == 4
        assert store.query(hosts=["nothing"]) == []


def test_upsert_rejects_documents_without_key(mongo_uri: str, database_name: str) -> None:
    with ValidationStore(mongo_uri, database_name) as store, pytest.raises(DefiNetStoreError, match="checkpoint"):
        store.upsert([{"case_id": "x", "relaxer": "chgnet", "host_id": "MoS2-1L"}])


def test_job_store_writes_docs_and_blobs(mongo_uri: str, database_name: str) -> None:
    store = job_store(mongo_uri, database_name)
    store.connect()
    try:
        trajectory = [[0.1 * i, 0.0, 0.0] for i in range(500)]
        store.update({"uuid": "job-1", "index": 1, "output": {"energy": -3.25, "trajectory": trajectory}},
                     save={"data": ["trajectory"]})
        raw = store.query_one({"uuid": "job-1"})
        assert raw["output"]["trajectory"]["store"] == "data"  # a reference, the blob is elsewhere
        assert store.additional_stores["data"].count() == 1
        output = store.get_output("job-1", load=True)
        assert output["energy"] == -3.25 and output["trajectory"] == trajectory
        assert store.docs_store.collection_name == "jobs"
        assert store.additional_stores["data"].collection_name == "outputs_blobs"
    finally:
        store.close()
