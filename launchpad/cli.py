"""``definet submit``: put a validation flow on a FireWorks LaunchPad for GPU and CPU workers.

Registered on the ``definet`` command through the ``definet.commands`` entry point, so that
``workflows`` never imports ``launchpad``.
"""

from __future__ import annotations

import argparse

from definet_core.errors import DefiNetInputError
from launchpad.deploy import TEMPLATES, connect, submit
from workflows.run_cli import add_flow_options, enumeration_from_args, prepare_flow, store_args


def add_submit_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``submit``."""
    parser = subparsers.add_parser("submit", help="add a validation flow to the FireWorks LaunchPad")
    add_flow_options(parser, default_relaxer="vasp")
    parser.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> None:
    from workflows.db_server import StoreSettings, check_reachable, server_status
    from workflows.store import job_store

    settings = StoreSettings.from_env(**store_args(args))
    if settings.uri:
        uri = settings.uri
    else:
        record = server_status(settings.data_dir)
        if record is None or record.mode != "daemon":
            raise DefiNetInputError("definet submit: workers need a server that outlives this command; set "
                                    "DEFINET_MONGO_URI (or --db-uri) or run `definet db start` first")
        uri = record.uri
    check_reachable(uri, settings.timeout_ms)
    flow, _ = prepare_flow(args.host, enumeration_from_args(args), args.relaxer, args.checkpoint, args.device,
                           not args.no_unrelaxed_start, args.fmax, args.start)
    ids = submit(flow, connect(uri, name=settings.database), store=job_store(uri, settings.database))
    print(f"submitted {len(ids)} Fireworks to {settings.database}; the relaxations are added when they run.")
    print(f"workers: rlaunch -w {TEMPLATES / 'my_fworker_gpu.yaml'} ... (prediction) and "
          f"{TEMPLATES / 'my_fworker_cpu.yaml'} (everything else); see the README")
