"""The database server definet talks to: URI resolution, reachability, and the embedded SecantusDB server.

The server is the one named by ``DEFINET_MONGO_URI``. With none configured, definet uses an embedded
SecantusDB server (a MongoDB wire-protocol server on WiredTiger) whose data live in a directory
(``DEFINET_DATA_DIR``, default ``~/.definet/db``):

- ``definet db start`` runs a long-lived one as a detached process and records it in
  ``<data_dir>/server.json``; every definet command with no URI configured then uses it, and so can
  FireWorks workers on the same machine.
- Otherwise :func:`open_database` starts one inside the calling process, records it in the same file
  (mode ``embedded``) and stops it when the ``with`` block ends.

WiredTiger allows one server per data directory: an exclusive lock on ``<data_dir>/server.lock``
serialises the start decision, and a live record in ``server.json`` is always used or refused, never
doubled. An unreachable or refusing server is a one-line :class:`DefiNetStoreError` within about
``timeout_ms``. What is stored on the server (JobStore, validation documents) is :mod:`workflows.storage.stores`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from definet_core.errors import DefiNetError
from workflows.settings import settings

if TYPE_CHECKING:
    from secantus import SecantusDBServer

RECORD_NAME = "server.json"
LOCK_NAME = "server.lock"
STORAGE_NAME = "wiredtiger"
LOG_NAME = "server.log"


class DefiNetStoreError(DefiNetError):
    """The database cannot be used (unreachable, refused, busy data directory): not bad input, but an environment
    to fix; one line naming the URI or path."""


@dataclass
class StoreSettings:
    """Where definet keeps its documents.

    ``uri`` None means the embedded SecantusDB server with its data in ``data_dir``.
    """

    uri: str | None
    database: str
    data_dir: Path
    timeout_ms: int = 3000

    @classmethod
    def from_env(cls, uri: str | None = None, database: str | None = None,
                 data_dir: str | Path | None = None) -> StoreSettings:
        """Settings from arguments, else from the environment (``workflows.settings``: ``DEFINET_MONGO_URI``,
        ``DEFINET_DB``, ``DEFINET_DATA_DIR``)."""
        env = settings()
        return cls(uri=uri or env.mongo_uri, database=database or env.db,
                   data_dir=Path(data_dir or env.data_dir).expanduser())


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, fit for messages and logs."""
    return re.sub(r"://([^:/@]*):([^@/]*)@", r"://\1:***@", uri)


def one_line(text: str, limit: int = 240) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters with ``...``."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_reachable(uri: str, timeout_ms: int = 3000) -> None:
    """Ping the server at ``uri``; raise :class:`DefiNetStoreError` within about ``timeout_ms`` if it won't answer."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError, ServerSelectionTimeoutError

    shown = mask_uri(uri)
    try:
        client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    except (ConfigurationError, ValueError) as exc:
        raise DefiNetStoreError(f"invalid MongoDB URI {shown}: {one_line(mask_uri(str(exc)))}") from None
    try:
        client.admin.command("ping")
    except ServerSelectionTimeoutError as exc:
        reason = re.sub(r" \(configured timeouts:[^)]*\)", "", str(exc).split(", Timeout:")[0])
        reason = one_line(mask_uri(reason))
        raise DefiNetStoreError(f"MongoDB server {shown} is unreachable (no answer within {timeout_ms} ms: "
                                f"{reason}); check DEFINET_MONGO_URI or unset it to use the embedded "
                                "server") from None
    except OperationFailure as exc:
        message = exc.details.get("errmsg", str(exc)) if exc.details else str(exc)
        raise DefiNetStoreError(f"MongoDB server {shown} refused the connection: {one_line(message)}") from None
    except PyMongoError as exc:
        raise DefiNetStoreError(f"MongoDB server {shown} failed: {one_line(mask_uri(str(exc)))}") from None
    finally:
        client.close()


def _answers(uri: str, timeout_ms: int = 1000) -> bool:
    try:
        check_reachable(uri, timeout_ms)
    except DefiNetStoreError:
        return False
    return True


# ---------------------------------------------------------------- the embedded SecantusDB server


@dataclass(frozen=True)
class ServerRecord:
    """A SecantusDB server serving a data directory, as recorded in ``<data_dir>/server.json``.

    ``mode`` is ``daemon`` for one started by ``definet db start`` and ``embedded`` for one running
    inside the definet process ``pid`` for the length of a command.
    """

    pid: int
    host: str
    port: int
    uri: str
    storage_path: str
    mode: str
    started: str


_CHILDREN: dict[int, subprocess.Popen] = {}


def _pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _daemon_command_line(pid: int) -> str | None:
    """Command line of ``pid`` where the system shows it (Linux ``/proc``), else None."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _record_alive(data_dir: Path, record: ServerRecord) -> bool:
    if record.mode == "embedded" and record.pid == os.getpid():
        return data_dir in _EMBEDDED  # else a crashed process's record whose pid came back to us
    if not _pid_alive(record.pid):
        return False
    if record.mode != "daemon":
        return True
    command = _daemon_command_line(record.pid)
    return command is None or ("secantus" in command and record.storage_path in command)


def _read_record(data_dir: Path) -> ServerRecord | None:
    path = data_dir / RECORD_NAME
    try:
        return ServerRecord(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise DefiNetStoreError(f"{path}: unreadable server record ({one_line(str(exc), 80)}); delete it if no "
                                "server runs on this data directory") from None


def _write_record(data_dir: Path, record: ServerRecord) -> None:
    path = data_dir / RECORD_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    tmp.replace(path)


def _live_record(data_dir: Path) -> ServerRecord | None:
    """The record of the server that serves ``data_dir`` now; a stale record is removed."""
    record = _read_record(data_dir)
    if record is not None and not _record_alive(data_dir, record):
        (data_dir / RECORD_NAME).unlink(missing_ok=True)
        return None
    return record


@contextmanager
def _dir_lock(data_dir: Path, timeout_s: float = 90.0) -> Iterator[None]:
    """Exclusive lock on ``data_dir`` between definet processes (the start and stop decisions)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_NAME).open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DefiNetStoreError(f"{data_dir}: another definet process holds {LOCK_NAME} for more "
                                            f"than {timeout_s:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _resolve(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser().resolve()


def server_status(data_dir: str | Path) -> ServerRecord | None:
    """The server recorded for ``data_dir`` if its process is alive, else None (a stale record is removed)."""
    folder = _resolve(data_dir)
    if not (folder / RECORD_NAME).exists():
        return None
    with _dir_lock(folder):
        return _live_record(folder)


def start_server(data_dir: str | Path, timeout_s: float = 60.0) -> tuple[ServerRecord, bool]:
    """Start a detached SecantusDB server on ``data_dir``, or find the one running; (record, started now)."""
    folder = _resolve(data_dir)
    with _dir_lock(folder):
        record = _live_record(folder)
        if record is not None:
            if record.mode != "daemon":
                raise DefiNetStoreError(f"{folder} is in use by the embedded server of definet process {record.pid}; "
                                        "run `definet db start` after it finishes")
            return record, False
        storage = folder / STORAGE_NAME
        storage.mkdir(exist_ok=True)
        config = folder / "secantusd.toml"  # an explicit (empty) config turns off secantusd's config discovery
        if not config.exists():
            config.write_text("# SecantusDB settings for definet's server; definet passes host, port and storage.\n")
        failure = ""
        for _attempt in range(3):
            port = _free_port()
            command = [sys.executable, "-m", "secantus", "--config", str(config), "--host", "127.0.0.1",
                       "--port", str(port), "--storage-path", str(storage), "--log-level", "WARNING"]
            with (folder / LOG_NAME).open("ab") as log:
                child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True)
            _CHILDREN[child.pid] = child
            uri = f"mongodb://127.0.0.1:{port}/"
            deadline = time.monotonic() + timeout_s
            while child.poll() is None and time.monotonic() < deadline:
                if _answers(uri, 500):
                    record = ServerRecord(pid=child.pid, host="127.0.0.1", port=port, uri=uri,
                                          storage_path=str(storage), mode="daemon", started=_now())
                    _write_record(folder, record)
                    return record, True
                time.sleep(0.2)
            if child.poll() is None:  # alive but silent past the deadline
                _terminate(child.pid, 10.0)
                raise DefiNetStoreError(f"SecantusDB on {folder} did not answer at {uri} within {timeout_s:.0f} s; "
                                        f"see {folder / LOG_NAME}")
            _CHILDREN.pop(child.pid, None)
            failure = _last_log_line(folder / LOG_NAME)
            if "Address already in use" not in failure:
                break
        raise DefiNetStoreError(f"SecantusDB could not start on {folder}: {failure or 'no message'} "
                                f"(log: {folder / LOG_NAME})")


def _last_log_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return one_line(lines[-1], 200) if lines else ""


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM ``pid`` (the daemon closes WiredTiger cleanly on it); SIGKILL if it outlives ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            child = _CHILDREN.pop(pid, None)
            if child is not None:
                child.wait(5)
            return
        time.sleep(0.1)


def stop_server(data_dir: str | Path, timeout_s: float = 30.0) -> ServerRecord | None:
    """Stop the server that ``definet db start`` started on ``data_dir``; the record of the stopped one, or None."""
    folder = _resolve(data_dir)
    if not (folder / RECORD_NAME).exists():
        return None
    with _dir_lock(folder):
        record = _live_record(folder)
        if record is None:
            return None
        if record.mode != "daemon":
            raise DefiNetStoreError(f"the server on {folder} is the embedded one of definet process {record.pid}; "
                                    "it stops when that command ends")
        _terminate(record.pid, timeout_s)
        (folder / RECORD_NAME).unlink(missing_ok=True)
        return record


def stop_in_process_server(server: SecantusDBServer) -> None:
    """Stop a ``SecantusDBServer`` running in this process, and free its port at once.

    secantusdb 0.7.0b3's ``stop()`` closes the listening socket while the accept thread sits in
    ``accept()``; on Linux the port then keeps listening (and ``stop()`` waits 2 s for the thread) until
    some client connects. Shutting the listener down first wakes the thread, so the port closes now.
    """
    listener = getattr(server, "_socket", None)
    if isinstance(listener, socket.socket):
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
    server.stop()


@dataclass
class _Embedded:
    server: SecantusDBServer
    record: ServerRecord
    users: int = 1


"""How long a definet process waits for another one's embedded server to release the data directory."""
_EMBEDDED: dict[Path, _Embedded] = {}
_EMBEDDED_LOCK = threading.Lock()


def _acquire_embedded(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """URI of the server for ``data_dir``: the recorded daemon, or one started in this process; and its release."""
    with _EMBEDDED_LOCK:
        held = _EMBEDDED.get(data_dir)
        if held is not None and held.record.pid != os.getpid():  # a forked child: the parent's server serves it
            return held.record.uri, lambda: None
        if held is not None:
            held.users += 1
            return held.record.uri, lambda: _release_embedded(data_dir)
        wait_s = settings().db_wait_s
        deadline, told = time.monotonic() + wait_s, False
        while True:  # another process's embedded server holds the directory: wait for it to finish
            with _dir_lock(data_dir):
                record = _live_record(data_dir)
                if record is None:
                    return _start_embedded(data_dir)
                if record.mode == "daemon":
                    return record.uri, lambda: None
            if time.monotonic() > deadline:
                raise DefiNetStoreError(f"{data_dir} is in use by the embedded server of definet process "
                                        f"{record.pid} for more than {wait_s:.0f} s; share one server "
                                        "with `definet db start`")
            if not told:
                told = True
                print(f"definet: waiting for definet process {record.pid}, which holds the embedded server of "
                      f"{data_dir} (`definet db start` lets several processes share one)", file=sys.stderr)
            time.sleep(1.0)


def _start_embedded(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Start an in-process server on ``data_dir`` (the caller holds both locks); its URI and its release."""
    from secantus import SecantusDBServer

    storage = data_dir / STORAGE_NAME
    storage.mkdir(exist_ok=True)
    try:
        server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(storage),
                                  enable_test_commands=False)
    except Exception as exc:  # WiredTiger refuses a directory another process has open
        raise DefiNetStoreError(f"cannot open the SecantusDB data in {storage}: "
                                f"{one_line(str(exc), 160)}") from None
    try:
        server.start()
    except OSError as exc:
        stop_in_process_server(server)
        raise DefiNetStoreError(f"cannot start SecantusDB on 127.0.0.1: {exc}") from None
    host, port = server.address
    record = ServerRecord(pid=os.getpid(), host=host, port=port, uri=server.uri,
                          storage_path=str(storage), mode="embedded", started=_now())
    try:
        _write_record(data_dir, record)
    except OSError:
        stop_in_process_server(server)
        raise
    _EMBEDDED[data_dir] = _Embedded(server, record)
    return record.uri, lambda: _release_embedded(data_dir)


def _release_embedded(data_dir: Path) -> None:
    with _EMBEDDED_LOCK:
        held = _EMBEDDED[data_dir]
        held.users -= 1
        if held.users > 0:
            return
        del _EMBEDDED[data_dir]
        try:
            stop_in_process_server(held.server)
        finally:
            with _dir_lock(data_dir):
                if _read_record(data_dir) == held.record:
                    (data_dir / RECORD_NAME).unlink(missing_ok=True)


@contextmanager
def open_database(settings: StoreSettings) -> Iterator[str]:
    """Yield the URI of a reachable server for ``settings``.

    A configured URI is checked with a ping (a clear :class:`DefiNetStoreError` within ``timeout_ms``).
    With none, the server that ``definet db start`` runs on ``settings.data_dir`` is used; failing that,
    an embedded SecantusDB server is started in this process and stopped when the block ends.
    Nested blocks on one data directory share one server.
    """
    if settings.uri:
        check_reachable(settings.uri, settings.timeout_ms)
        yield settings.uri
        return
    uri, release = _acquire_embedded(_resolve(settings.data_dir))
    try:
        check_reachable(uri, settings.timeout_ms)
        yield uri
    finally:
        release()
