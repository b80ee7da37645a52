"""The ``definet db`` commands: start, stop and inspect the long-lived embedded SecantusDB server; prune what
interrupted flows left in the case collections."""

from __future__ import annotations

import argparse

from definet_core.errors import DefiNetInputError
from workflows.storage.server import (
    RECORD_NAME,
    DefiNetStoreError,
    StoreSettings,
    check_reachable,
    mask_uri,
    open_database,
    server_status,
    start_server,
    stop_server,
)


def add_db_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``db start|stop|status|prune`` on the ``definet`` parser."""
    from workflows.cli.common import add_store_options

    db = subparsers.add_parser("db", help="manage the embedded SecantusDB server (used with DEFINET_MONGO_URI unset)")
    commands = db.add_subparsers(dest="db_command", required=True)
    for name, handler, text in [
        ("start", _start, "start a long-lived server on the data directory (detached) and record it"),
        ("stop", _stop, "stop the server that `definet db start` started"),
        ("status", _status, "say whether the server is up, and its URI"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("--data-dir", default=None,
                             help="data directory (default: $DEFINET_DATA_DIR or ~/.definet/db)")
        command.set_defaults(handler=handler)
    prune = commands.add_parser("prune", help="delete defect cases and predictions that interrupted flows left behind")
    prune.add_argument("--older-than", type=float, default=7.0, metavar="DAYS",
                       help="only those whose job completed more than DAYS ago (default 7)")
    add_store_options(prune)
    prune.set_defaults(handler=_prune)


def _settings(args: argparse.Namespace) -> StoreSettings:
    return StoreSettings.from_env(data_dir=args.data_dir)


def _start(args: argparse.Namespace) -> None:
    settings = _settings(args)
    record, started = start_server(settings.data_dir)
    state = "started" if started else "already running"
    print(f"SecantusDB {state}: {record.uri} (pid {record.pid}, data {settings.data_dir})")
    print(f"definet commands with DEFINET_MONGO_URI unset use it; elsewhere set DEFINET_MONGO_URI={record.uri}")
    _warn_configured(settings)


def _stop(args: argparse.Namespace) -> None:
    settings = _settings(args)
    record = stop_server(settings.data_dir)
    if record is None:
        print(f"SecantusDB not running (data {settings.data_dir})")
    else:
        print(f"SecantusDB stopped: {record.uri} (pid {record.pid}, data {settings.data_dir})")


def _status(args: argparse.Namespace) -> None:
    settings = _settings(args)
    record = server_status(settings.data_dir)
    if record is None:
        print(f"SecantusDB not running (data {settings.data_dir}); `definet db start` starts one")
    else:
        owner = "started by `definet db start`" if record.mode == "daemon" else f"embedded in definet pid {record.pid}"
        try:
            check_reachable(record.uri, settings.timeout_ms)
            health = "up"
        except DefiNetStoreError as exc:  # report, do not fail: status is for looking
            health = f"NOT ANSWERING ({exc})"
        print(f"SecantusDB {health}: {record.uri} (pid {record.pid}, {owner}, since {record.started}, "
              f"data {settings.data_dir}, record {settings.data_dir / RECORD_NAME})")
    _warn_configured(settings)


def _prune(args: argparse.Namespace) -> None:
    from workflows.cli.common import store_args
    from workflows.storage.cases import prune_stale

    if args.older_than < 0:
        raise DefiNetInputError(f"--older-than {args.older_than:g}: must be 0 or more days")
    settings = StoreSettings.from_env(**store_args(args))
    with open_database(settings) as uri:
        counts = prune_stale((uri, settings.database), args.older_than)
    print(f"deleted {counts['cases']} defect cases and {counts['predictions']} predictions of jobs completed more "
          f"than {args.older_than:g} days ago; kept {counts['incomplete']} set(s) whose job never completed")


def _warn_configured(settings: StoreSettings) -> None:
    if settings.uri:
        print(f"note: DEFINET_MONGO_URI is set, so definet uses {mask_uri(settings.uri)}, not this server")
