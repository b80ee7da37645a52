"""Database server: settings, URI masking, fast failures, the embedded server and the ``definet db`` commands."""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import pytest

from workflows.cli.db import add_db_commands
from workflows.storage.server import (
    RECORD_NAME,
    DefiNetStoreError,
    StoreSettings,
    check_reachable,
    mask_uri,
    open_database,
    server_status,
    stop_server,
)
from workflows.storage.stores import ValidationStore


def _doc(case: str, steps: int) -> dict:
    return {"case_id": case, "host_id": "MoS2-1L", "relaxer": "chgnet", "checkpoint": "shipped", "start_policy": "auto",
            "comparison": True, "ionic_steps": steps}


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
            store.upsert([_doc("kept", 7)])
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
                store.upsert([_doc("d", 1)])
                assert store.count() == 1
        assert server_status(data_dir) == record  # still running after the block
        assert "stopped" in run("db", "stop")
        assert _refused(record.port) and _pid_gone(record.pid)
        assert "not running" in run("db", "status")
        assert "not running" in run("db", "stop")
    finally:
        stop_server(data_dir)


def test_two_runs_on_one_embedded_data_directory_both_finish_without_duplicates(tmp_path: Path) -> None:
    import subprocess
    import sys

    from pymatgen.core import Lattice, Structure

    host = tmp_path / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).to(filename=str(host))
    command = [sys.executable, "-m", "workflows.cli", "run", "--host", str(host), "--relaxer", "emt",
               "--supercell", "2", "2", "2", "--substitute", "Cu=Ni", "--device", "cpu",
               "--data-dir", str(tmp_path / "db")]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-500:] for _, err in outputs]
    assert sum("waiting for definet process" in err for _, err in outputs) == 1
    settings = StoreSettings(uri=None, database="definet", data_dir=tmp_path / "db")
    with open_database(settings) as uri, ValidationStore(uri, settings.database) as store:
        docs = store.query()
    assert sorted(d["defect_name"] for d in docs) == ["Ni_Cu", "v_Cu"]
