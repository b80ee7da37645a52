"""A real SecantusDB server for the workflow tests (never mongomock)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a SecantusDB server on a free port with its data in a temporary directory, stopped at the end."""
    from secantus import SecantusDBServer

    from workflows.store import stop_in_process_server

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path_factory.mktemp("secantus")),
                              enable_test_commands=False)
    server.start()
    try:
        yield server.uri
    finally:
        stop_in_process_server(server)


@pytest.fixture()
def database_name(request: pytest.FixtureRequest) -> str:
    """A database name unique to this test."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"
