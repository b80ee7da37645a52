"""``definet run``, ``definet results`` and ``definet demo``: the validation flow from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from definet_core.errors import DefiNetInputError
from workflows.cli.common import add_store_options, report, run_flow_locally, store_args
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.relaxers.makers import RELAXERS
from workflows.starts import START_CHOICES

DEMO_HOST = "MoS2-1L"
DEMO_SETTINGS = EnumerationSettings(mode="dense", supercell_matrix=[[8, 0, 0], [0, 8, 0], [0, 0, 1]],
                                    dense_vacancies={"S": 4, "Mo": 1},
                                    dense_substitutions={"Mo": {"W": 3}, "S": {"Se": 2}}, n_configs=4, seed=0)
"""Like the DefiNet high-density MoS2 data: 8x8 supercells with several defects each."""


def _pairs(values: list[str], name: str) -> dict[str, str]:
    """Parse ``KEY=VALUE`` options."""
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise DefiNetInputError(f"{name} {value!r}: expected KEY=VALUE")
        result[key] = rest
    return result


def _number(text: str, name: str) -> int | float:
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError as exc:
        raise DefiNetInputError(f"{name}: {text!r} is not a count or a density") from exc


def add_flow_options(run: argparse.ArgumentParser, default_relaxer: str) -> None:
    """Options that define a validation flow: hosts, enumeration, relaxer, model, database."""
    run.add_argument("--host", action="append", required=True,
                     help="well-known host (MoS2-1L, mp-149, ...), structure file or Materials Project id")
    run.add_argument("--defects", choices=("single", "dense"), default="single")
    run.add_argument("--n-configs", type=int, default=4, help="dense: configurations per host")
    run.add_argument("--supercell", type=int, nargs=3, metavar=("A", "B", "C"), default=None)
    run.add_argument("--min-length", type=float, default=None, help="shortest supercell vector (A)")
    run.add_argument("--substitute", action="append", default=[], metavar="EL=NEW[,NEW]",
                     help="single: substitutions, e.g. S=Se,Te")
    run.add_argument("--interstitial", action="append", default=[], metavar="EL", help="single: interstitials")
    run.add_argument("--no-vacancies", action="store_true", help="single: skip vacancies")
    run.add_argument("--vacancies", action="append", default=[], metavar="EL=COUNT",
                     help="dense: vacancies per element, a count or a density (S=3, S=0.05)")
    run.add_argument("--dense-substitute", action="append", default=[], metavar="EL:NEW=COUNT",
                     help="dense: substitutions, e.g. Mo:W=2")
    run.add_argument("--relaxer", choices=RELAXERS, default=default_relaxer)
    run.add_argument("--fmax", type=float, default=None, help="force convergence (eV/A)")
    run.add_argument("--no-comparison", "--no-unrelaxed-start", dest="no_comparison", action="store_true",
                     help="skip the comparison relaxations from the unrelaxed cell of the cases that start from the "
                          "prediction (--no-unrelaxed-start: its old name)")
    run.add_argument("--start", choices=START_CHOICES, default="auto",
                     help="auto: relax from the prediction only where the model vouches for it (else from the "
                          "unrelaxed cell, once); prediction: always; unrelaxed: never use the prediction")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    run.add_argument("--companion", dest="companions", action="append", default=[], metavar="CHECKPOINT",
                     help="a further checkpoint (repeatable): relaxations start from the mean of the models' "
                          "predictions, and each document stores their spread (A), an estimate of its error")
    run.add_argument("--device", default="auto")
    add_store_options(run)


def add_run_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``run``, ``results`` and ``demo``."""
    run = subparsers.add_parser("run", help="enumerate defects, predict, relax from both starts, store steps")
    add_flow_options(run, default_relaxer="chgnet")
    run.add_argument("--json", dest="json_out", default=None, help="write the results table as JSON")
    run.add_argument("--plot", default=None, help="write the step histogram PNG")
    run.set_defaults(handler=_run)

    results = subparsers.add_parser("results", help="ionic-step savings from stored validation documents")
    results.add_argument("--host", action="append", default=None)
    results.add_argument("--relaxer", action="append", default=None)
    results.add_argument("--start", dest="starts", action="append", choices=START_CHOICES, default=None,
                         help="only documents of runs under this start policy (repeatable; default: all, one row each)")
    results.add_argument("--checkpoint", dest="checkpoints", action="append", default=None,
                         help="only documents predicted by this checkpoint (repeatable; default: all, one row each): a "
                              "packaged name or file (its current content), an id from the table's checkpoint column, "
                              "or an ensemble as FIRST+SECOND")
    results.add_argument("--json", dest="json_out", default=None)
    results.add_argument("--plot", default=None)
    add_store_options(results)
    results.set_defaults(handler=_results)

    demo = subparsers.add_parser("demo", help="MoS2 monolayer, dense defects, CHGNet, embedded database")
    demo.add_argument("--out", default="definet-demo", help="directory for results.json and steps.png")
    demo.add_argument("--relaxer", choices=RELAXERS, default="chgnet")
    add_store_options(demo)
    demo.set_defaults(handler=_demo)


def enumeration_from_args(args: argparse.Namespace) -> EnumerationSettings:
    """EnumerationSettings from ``definet run`` options."""
    matrix = None
    if args.supercell:
        matrix = [[args.supercell[0], 0, 0], [0, args.supercell[1], 0], [0, 0, args.supercell[2]]]
    dense_subs: dict[str, dict[str, int | float]] = {}
    for key, count in _pairs(args.dense_substitute, "--dense-substitute").items():
        old, sep, new = key.partition(":")
        if not sep:
            raise DefiNetInputError(f"--dense-substitute {key}={count}: expected EL:NEW=COUNT")
        dense_subs.setdefault(old, {})[new] = _number(count, "--dense-substitute")
    return EnumerationSettings(
        mode=args.defects, supercell_matrix=matrix, min_length=args.min_length,
        substitutions={k: v.split(",") for k, v in _pairs(args.substitute, "--substitute").items()},
        interstitials=args.interstitial, vacancies=not args.no_vacancies,
        dense_vacancies={k: _number(v, "--vacancies") for k, v in _pairs(args.vacancies, "--vacancies").items()},
        dense_substitutions=dense_subs, n_configs=args.n_configs, seed=args.seed)


def run_validation(host_specs: list[str], enumeration: EnumerationSettings, relaxer: str, store_options: dict[str, Any],
                   checkpoint: str | None = None, device: str = "auto", comparison: bool = True,
                   fmax: float | None = None, start: str = "auto", companions: Sequence[str] = ()
                   ) -> list[dict[str, Any]]:
    """Run the validation flow locally against the configured (or embedded) database; return its documents: those
    of these hosts, relaxer and start policy predicted by this checkpoint (and companions), not those an earlier run
    with another checkpoint left in the same database."""
    from definet_core.predict import ensemble_id
    from workflows.flows.validation import prepare_flow
    from workflows.storage.server import StoreSettings
    from workflows.storage.stores import ValidationStore

    flow, host_ids = prepare_flow(host_specs, enumeration, relaxer, checkpoint, device, comparison, fmax, start,
                                  companions)
    settings = StoreSettings.from_env(**store_options)
    predictor_id = ensemble_id((checkpoint, *companions))
    with run_flow_locally(flow, settings) as uri, ValidationStore(uri, settings.database) as store:
        docs = store.query(hosts=host_ids, relaxers=[relaxer], start_policies=[start], comparison=comparison,
                           checkpoints=[predictor_id])
    if not docs:
        raise DefiNetInputError("definet run: no validation document was recorded; see the job log above")
    return docs


def _run(args: argparse.Namespace) -> None:
    docs = run_validation(args.host, enumeration_from_args(args), args.relaxer, store_args(args), args.checkpoint,
                          args.device, not args.no_comparison, args.fmax, args.start, args.companions)
    report(docs, args.json_out, args.plot)


def _results(args: argparse.Namespace) -> None:
    from definet_core.predict import ensemble_id
    from workflows.storage.server import StoreSettings, open_database
    from workflows.storage.stores import ValidationStore

    checkpoints = [ensemble_id(spec.split("+")) for spec in args.checkpoints or ()]
    settings = StoreSettings.from_env(**store_args(args))
    with open_database(settings) as uri, ValidationStore(uri, settings.database) as store:
        docs = store.query(hosts=args.host, relaxers=args.relaxer, start_policies=args.starts, checkpoints=checkpoints)
    if not docs:
        raise DefiNetInputError("definet results: no validation documents match; run `definet run` first")
    report(docs, args.json_out, args.plot)


def _demo(args: argparse.Namespace) -> None:
    out = Path(args.out)
    docs = run_validation([DEMO_HOST], DEMO_SETTINGS, args.relaxer, store_args(args))
    report(docs, str(out / "results.json"), str(out / "steps.png"))
