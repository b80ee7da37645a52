"""``definet submit`` and ``definet dataset submit``: put a validation or dataset flow on a FireWorks LaunchPad.

Registered on the ``definet`` command through the ``definet.commands`` and ``definet.dataset_commands``
entry points, so that ``workflows`` never imports ``launchpad``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from launchpad.deploy import TEMPLATES, connect, submit
from workflows.cli.common import store_args
from workflows.cli.run import add_flow_options, enumeration_from_args
from workflows.flows.validation import prepare_flow

if TYPE_CHECKING:
    from jobflow import Flow


def add_submit_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``submit``."""
    parser = subparsers.add_parser("submit", help="add a validation flow to the FireWorks LaunchPad")
    add_flow_options(parser, default_relaxer="vasp")
    parser.set_defaults(handler=_submit)


def add_dataset_submit_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dataset submit``."""
    from workflows.cli.dataset import add_build_options

    parser = subparsers.add_parser("submit", help="add a dataset flow to the FireWorks LaunchPad")
    add_build_options(parser, default_relaxer="vasp")
    parser.set_defaults(handler=_dataset_submit)


def _submit(args: argparse.Namespace) -> None:
    uri, database = _lasting_server(args, "definet submit")
    flow, _ = prepare_flow(args.host, enumeration_from_args(args), args.relaxer, args.checkpoint, args.device,
                           not args.no_comparison, args.fmax, args.start, args.companions)
    _put(flow, uri, database)


def _dataset_submit(args: argparse.Namespace) -> None:
    from workflows.cli.dataset import dataset_flow
    from workflows.storage.server import StoreSettings

    uri, database = _lasting_server(args, "definet dataset submit")
    flow, _ = dataset_flow(args, StoreSettings.from_env(uri=uri, database=database))
    _put(flow, uri, database)


def _lasting_server(args: argparse.Namespace, command: str) -> tuple[str, str]:
    """(URI, database) of a server the workers can reach after this command ends; one-line error otherwise."""
    from workflows.storage.server import DefiNetStoreError, StoreSettings, check_reachable, server_status

    settings = StoreSettings.from_env(**store_args(args))
    if settings.uri:
        uri = settings.uri
    else:
        record = server_status(settings.data_dir)
        if record is None or record.mode != "daemon":
            raise DefiNetStoreError(f"{command}: workers need a server that outlives this command; set "
                                    "DEFINET_MONGO_URI (or --db-uri) or run `definet db start` first")
        uri = record.uri
    check_reachable(uri, settings.timeout_ms)
    return uri, settings.database


def _put(flow: Flow, uri: str, database: str) -> None:
    """Submit ``flow`` to the LaunchPad on ``uri`` and say how to start workers."""
    from workflows.storage.stores import job_store

    ids = submit(flow, connect(uri, name=database), store=job_store(uri, database))
    print(f"submitted {len(ids)} Fireworks to {database}; the relaxations are added when they run.")
    print(f"workers: rlaunch -w {TEMPLATES / 'my_fworker_gpu.yaml'} ... (prediction) and "
          f"{TEMPLATES / 'my_fworker_cpu.yaml'} (everything else); see the README")
