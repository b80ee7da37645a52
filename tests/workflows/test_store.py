"""Storage layer against real SecantusDB servers: validation upserts, JobStore, failures, embedded server, db CLI."""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from workflows.db_cli import add_db_commands
from workflows.store import (
    RECORD_NAME,
    DefiNetStoreError,
    StoreSettings,
    ValidationStore,
    check_reachable,
    job_store,
    mask_uri,
    open_database,
    server_status,
    stop_server,
)


def _doc(case: str, host: str, relaxer: str, steps: int, checkpoint: str = "shipped") -> dict:
    return {"case_id": case, "host_id": host, "relaxer": relaxer, "checkpoint": checkpoint, "ionic_steps": steps}


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DEFINET_MONGO_URI", "DEFINET_DB", "DEFINET_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    default = StoreSettings.from_env()
    assert default.uri is None and default.database == "definet" and default.timeout_ms == 3000
    assert default.data_dir == Path("~/.definet/db").expanduser()
    monkeypatch.setenv("DEFINET_MONGO_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("DEFINET_DB", "defects")
    monkeypatch.setenv("DEFINET_DATA_DIR", str(tmp_path))
    env = StoreSettings.from_env()
    assert (env.uri, env.database, env.data_dir) == ("mongodb://db.example:27017/", "defects", tmp_path)
    explicit = StoreSettings.from_env(uri="mongodb://other/", database="x", data_dir=tmp_path / "d")
    assert (explicit.uri, explicit.database, explicit.data_dir) == ("mongodb://other/", "x", tmp_path / "d")


def test_mask_uri() -> None:
    assert mask_uri("mongodb://alice:s3cret@db.example:27017/definet") == "mongodb://alice:***@db.example:27017/definet"
    assert mask_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"


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
        assert [("case_id", 1), ("relaxer", 1), ("checkpoint", 1)] in unique
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


def test_unreachable_uri_fails_fast_on_one_line() -> None:
    started = time.monotonic()
    with pytest.raises(DefiNetStoreError) as info:
        check_reachable("mongodb://127.0.0.1:1/")
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    assert "mongodb://127.0.0.1:1/" in message and "\n" not in message


def test_unreachable_configured_server_masks_password(tmp_path: Path) -> None:
    settings = StoreSettings(uri="mongodb://alice:s3cret@127.0.0.1:1/", database="x", data_dir=tmp_path,
                             timeout_ms=1000)
    started = time.monotonic()
    with pytest.raises(DefiNetStoreError) as info, open_database(settings):
        pass
    assert time.monotonic() - started < 5.0
    assert "s3cret" not in str(info.value) and "alice:***@127.0.0.1:1" in str(info.value)
    assert not (tmp_path / RECORD_NAME).exists()


def test_open_database_embedded_starts_and_stops(tmp_path: Path) -> None:
    settings = StoreSettings(uri=None, database="definet", data_dir=tmp_path / "db")
    with open_database(settings) as uri:
        record = json.loads((settings.data_dir / RECORD_NAME).read_text())
        assert record["mode"] == "embedded" and record["pid"] == os.getpid() and record["uri"] == uri
        with open_database(settings) as nested:  # one server per data directory, shared
            assert nested == uri
        with ValidationStore(uri, settings.database) as store:
            store.upsert([_doc("kept", "MoS2-1L", "chgnet", 7)])
    port = record["port"]
    assert _refused(port)
    assert not (settings.data_dir / RECORD_NAME).exists()
    assert server_status(settings.data_dir) is None
    with open_database(settings) as uri, ValidationStore(uri, settings.database) as store:  # the data persist
        assert [d["case_id"] for d in store.query()] == ["kept"]


def test_db_cli_start_status_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEFINET_MONGO_URI", raising=False)
    parser = argparse.ArgumentParser(prog="definet")
    add_db_commands(parser.add_subparsers(dest="command", required=True))
    data_dir = tmp_path / "db"

    def run(*argv: str) -> str:
        args = parser.parse_args([*argv, "--data-dir", str(data_dir)])
        args.handler(args)
        return capsys.readouterr().out

    try:
        assert "not running" in run("db", "status")
        assert "started" in run("db", "start")
        record = server_status(data_dir)
        assert record is not None and record.mode == "daemon" and record.pid != os.getpid()
        status = run("db", "status")
        assert "up" in status and record.uri in status
        assert "already running" in run("db", "start")
        settings = StoreSettings(uri=None, database="definet", data_dir=data_dir)
        with open_database(settings) as uri:  # the long-lived server, not a second one
            assert uri == record.uri
            with ValidationStore(uri, settings.database) as store:
                store.upsert([_doc("d", "MoS2-1L", "chgnet", 1)])
                assert store.count() == 1
        assert server_status(data_dir) == record  # still running after the block
        assert "stopped" in run("db", "stop")
        assert _refused(record.port) and _pid_gone(record.pid)
        assert "not running" in run("db", "status")
        assert "not running" in run("db", "stop")
    finally:
        stop_server(data_dir)
