"""What the commands share: database options, running a flow locally on the configured database, printing the
results table."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobflow import Flow

    from workflows.storage.server import StoreSettings


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Database options: --db-uri, --database, --data-dir."""
    parser.add_argument("--db-uri", default=None, help="MongoDB URI (default: $DEFINET_MONGO_URI, else embedded)")
    parser.add_argument("--database", default=None, help="database name (default: $DEFINET_DB or 'definet')")
    parser.add_argument("--data-dir", default=None, help="embedded server data directory (default ~/.definet/db)")


def store_args(args: argparse.Namespace) -> dict[str, Any]:
    """The database options of a parsed command, as ``StoreSettings.from_env`` keywords."""
    return {"uri": args.db_uri, "database": args.database, "data_dir": args.data_dir}


@contextmanager
def run_flow_locally(flow: Flow, settings: StoreSettings) -> Iterator[str]:
    """Run ``flow`` with jobflow on the database of ``settings``, then yield its URI (the server still up).

    Each job runs in its own temporary folder; everything worth keeping goes to the database. Jobs that
    cannot write their outputs fail quietly in ``run_locally``, so a server that went away during the run
    is reported afterwards in one line.
    """
    from jobflow import run_locally

    from workflows.storage.server import DefiNetStoreError, check_reachable, open_database
    from workflows.storage.stores import job_store

    logging.getLogger("jobflow").setLevel(logging.INFO)
    with open_database(settings) as uri, tempfile.TemporaryDirectory(prefix="definet-jobs-") as work_dir:
        run_locally(flow, store=job_store(uri, settings.database), ensure_success=False, log=True,
                    root_dir=work_dir, create_folders=True)
        try:
            check_reachable(uri, settings.timeout_ms)
        except DefiNetStoreError as exc:
            raise DefiNetStoreError(f"{exc}; the database went away during the run: bring it back and run the "
                                    "same command again (completed work is kept and not redone)") from None
        yield uri


def report(docs: list[dict[str, Any]], json_out: str | None, plot: str | None) -> None:
    """Print the results table and write the JSON and plot when asked."""
    from workflows.reports.validation import format_table, steps_plot, summarize

    rows = summarize(docs)
    print(format_table(rows))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps({"rows": rows}, indent=2))
    if plot:
        steps_plot(docs, plot)
        print(f"step histogram: {plot}")
