"""The model commands of ``definet``: train, evaluate, predict."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.core import Structure

from definet_core.config import ModelConfig
from definet_core.errors import DefiNetError, DefiNetInputError
from definet_core.graph import graph_from_arrays, graph_to_arrays
from definet_core.model import COMPILE_AUTO_MIN, COMPILE_POLICIES
from definet_core.train import LOSS_BALANCES, LOSSES, PRECISIONS, SCHEDULES, SELECTIONS, TrainConfig

if TYPE_CHECKING:
    from definet_core.predict import Prediction

READER_WORKERS_AUTO_MIN = 64
"""``definet predict --workers auto`` reads files in worker processes from this many files (~25 ms per CIF)."""


def add_core_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``, ``evaluate`` and ``predict`` on the ``definet`` parser."""
    train = subparsers.add_parser("train", help="train DefiNet on dataset directories")
    train.add_argument("--data", action="append", required=True, help="dataset root (repeatable)")
    train.add_argument("--out", required=True, help="checkpoint to write (best EMA weights)")
    train.add_argument("--resume", action="store_true", help="continue from <out>.last.pt")
    defaults = ModelConfig()
    for item in fields(ModelConfig):  # one option per model field: bools parse true/false, str fields get choices
        default = getattr(defaults, item.name)
        kind = ({"type": parse_bool, "nargs": "?", "const": True} if isinstance(default, bool)
                else {"type": type(default)})
        train.add_argument(f"--{item.name.replace('_', '-')}", **kind, default=default,
                           choices=item.metadata.get("choices"), help=f"model: {item.name} (default %(default)s)")
    train.add_argument("--hidden-candidates", type=int, nargs="+", default=None, metavar="H",
                       help="time a few steps of each hidden size and train the largest that reaches "
                            "--min-epochs within --time-budget (overrides --hidden)")
    train.add_argument("--min-epochs", type=float, default=30, help="epochs a candidate size must reach in the budget")
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--min-lr", type=float, default=1e-5)
    train.add_argument("--schedule", choices=SCHEDULES, default="plateau",
                       help="plateau: halve on a val plateau; cosine: warm-up, then cosine over the epochs or budget")
    train.add_argument("--warmup-steps", type=int, default=0)
    train.add_argument("--weight-decay", type=float, default=1e-6)
    train.add_argument("--amsgrad", action="store_true")
    train.add_argument("--grad-clip", type=float, default=10.0)
    train.add_argument("--ema-decay", type=float, default=0.999)
    train.add_argument("--loss", choices=LOSSES, default="distance",
                       help="per-atom error the loss averages: distance (the paper's) or component-l1 (the mean of "
                            "|dx|, |dy|, |dz|, what the MAE metrics score)")
    train.add_argument("--loss-balance", choices=LOSS_BALANCES, default="none",
                       help="material: weight structures by 1 / their material's mean DFT displacement")
    train.add_argument("--select-on", choices=SELECTIONS, default="mae",
                       help="what picks the best epoch (and drives plateau and early stopping): mae, the mean val "
                            "MAE over the val sets; ratio, the mean of their val MAE / unrelaxed MAE")
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="bf16 autocast on CUDA (auto: where supported); the CPU trains in fp32")
    train.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="stop cleanly (validation, checkpoints) after this many minutes of training in all "
                            "(with --resume, the minutes before count: a larger budget trains on)")
    train.add_argument("--checkpoint-every", type=float, default=5.0, metavar="MINUTES",
                       help="write the resumable state at least this often inside an epoch")
    train.add_argument("--position-noise", type=float, default=0.0, metavar="A",
                       help="Gaussian noise (A) added to training input positions (a regulariser)")
    train.add_argument("--partway-starts", type=float, default=0.0, metavar="SHARE",
                       help="share of training structures whose input starts a random fraction of the way to "
                            "their relaxed positions (more starts, the same answers)")
    train.add_argument("--min-atoms", type=int, default=0, metavar="N",
                       help="train and validate only on structures of at least N atoms (dilute defects)")
    train.add_argument("--init", default=None, help="fine-tune: start from this checkpoint's weights and settings")
    train.add_argument("--domain-from", default=None, metavar="CHECKPOINT",
                       help="the written checkpoint's applicability domain also accepts what this checkpoint's "
                            "does (e.g. the --init, when training on part of its data; no definet "
                            "checkpoint-domain needed afterwards)")
    train.add_argument("--freeze", nargs="+", default=[], metavar="PREFIX",
                       help="with --init: keep the parameters under these names as they start "
                            "(e.g. element_embedding marker_embedding layers.0)")
    train.add_argument("--half-checkpoint", action="store_true", help="store the best weights in float16")
    train.add_argument("--compile", action="store_true",
                       help="torch.compile the training forward pass (~40 s once; ~2.6x faster steps on this CPU)")
    train.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("evaluate", help="MAE metrics of a checkpoint on dataset splits")
    evaluate.add_argument("--data", action="append", required=True, help="dataset root (repeatable)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", dest="json_out", default=None, help="write metrics JSON here")
    evaluate.add_argument("--plot", default=None, help="write a parity plot PNG here")
    evaluate.set_defaults(handler=_evaluate)

    domain = subparsers.add_parser("checkpoint-domain",
                                   help="store the applicability domain of a training set in a checkpoint copy")
    domain.add_argument("checkpoint", help="checkpoint file or packaged name")
    domain.add_argument("--data", action="append", default=[], help="dataset root it was trained on (repeatable)")
    domain.add_argument("--domain-from", default=None, metavar="CHECKPOINT",
                        help="also (or, without --data, only) what this checkpoint's stored domain accepts: a model "
                             "trained on that one's data, without building its graphs")
    domain.add_argument("-o", "--out", required=True, help="checkpoint to write (weights unchanged)")
    size_rule = domain.add_mutually_exclusive_group()
    size_rule.add_argument("--min-atoms", type=int, default=0, metavar="N",
                           help="the --min-atoms it was trained with (structures of fewer atoms left out)")
    size_rule.add_argument("--any-size", action="store_true",
                           help="no smallest-cell rule: cells of any size stay in domain (as in the 2D checkpoints)")
    domain.set_defaults(handler=_checkpoint_domain)

    average = subparsers.add_parser("average", help="average the weights of checkpoints of one network (a model "
                                                     "soup: runs fine-tuned from one start)")
    average.add_argument("checkpoints", nargs="+", help="checkpoint files or packaged names (two or more)")
    average.add_argument("--data", action="append", default=[],
                         help="dataset root (repeatable): score the average and its members' stored scores on its "
                              "val splits")
    average.add_argument("-o", "--out", required=True, help="checkpoint to write")
    average.set_defaults(handler=_average)

    pseudo = subparsers.add_parser("pseudo-label", help="new arrangements of a dataset's train defects, relaxed by a "
                                                        "teacher, in the layout `definet train` reads")
    pseudo.add_argument("--data", required=True, help="dataset root or material directory (its train splits)")
    pseudo.add_argument("--teacher", default="definet_v15_ensemble",
                        help="checkpoint or router whose (mean) prediction labels them; out-of-domain ones are dropped")
    pseudo.add_argument("--copies", type=int, default=1, help="rearrangements per train cell")
    pseudo.add_argument("--seed", type=int, default=0)
    pseudo.add_argument("--device", default="auto")
    pseudo.add_argument("-o", "--out", required=True,
                        help="root to write (each set at its path under --data; complete sets are kept)")
    pseudo.set_defaults(handler=_pseudo_label)

    router = subparsers.add_parser("router", help="write a checkpoint that predicts each host kind with its own model")
    router.add_argument("--from", dest="base", default=None, metavar="ROUTER",
                        help="start from this router's routes, specialists, spread bounds and default: the options "
                             "below replace only the kinds they name (--specialist replaces that kind's whole list)")
    router.add_argument("--route", action="append", default=[], metavar="KIND=CHECKPOINT[,CHECKPOINT...]",
                        help="host kind (2D, bulk, 1D, 0D) and the checkpoint, or the ensemble, that serves it "
                             "(repeatable; at least one without --from)")
    router.add_argument("--spread-bound", action="append", default=[], metavar="KIND=A",
                        help="out of domain above this ensemble spread (A) for an ensemble route (repeatable)")
    router.add_argument("--specialist", action="append", default=[], metavar="KIND=CHECKPOINT[,CHECKPOINT...]",
                        help="a checkpoint, or an ensemble, tried before KIND's route: it serves the structures its "
                             "(first member's) applicability domain accepts (hosts, elements, defect kinds, cell "
                             "size, share of defect sites); repeatable, tried in order")
    router.add_argument("--default", default=None,
                        help="the kind whose checkpoint serves kinds without a route (required without --from)")
    router.add_argument("-o", "--out", required=True, help="routing checkpoint to write")
    router.set_defaults(handler=_router)

    predict = subparsers.add_parser("predict", help="predict relaxed defect structures")
    predict.add_argument("structures", nargs="+", help="defect supercell files (CIF, POSCAR, JSON, ...)")
    predict.add_argument("--host", required=True, help="host unit cell or pristine supercell file")
    predict.add_argument("--supercell", type=int, nargs=3, metavar=("A", "B", "C"), default=None,
                         help="diagonal supercell of the host (default: inferred from the cells)")
    predict.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    predict.add_argument("--device", default="auto", help="auto|cpu|cuda")
    predict.add_argument("--batch-size", type=int, default=16)
    predict.add_argument("--companion", dest="companions", action="append", default=[], metavar="CHECKPOINT",
                         help="a further checkpoint (repeatable): predict the mean of all the models and report their "
                              "spread (A), an error estimate")
    predict.add_argument("--compile", choices=COMPILE_POLICIES, default="auto",
                         help=f"torch.compile the model (~40 s once, then several times faster); auto: for "
                              f"{COMPILE_AUTO_MIN} structures or more")
    predict.add_argument("--workers", default="auto",
                         help="processes that read the files and build their graphs: a number, or auto (all "
                              f"allotted cores but one, for {READER_WORKERS_AUTO_MIN} files or more)")
    predict.add_argument("--format", choices=OUTPUT_FORMATS, default="same",
                         help="output format (default: the input's; POSCAR keeps the lattice orientation)")
    predict.add_argument("-o", "--out", required=True, help="output directory")
    predict.set_defaults(handler=_predict)


BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_bool(text: str) -> bool:
    """A command-line boolean: true/false, yes/no, on/off, 1/0 (any case); the parser of every bool option."""
    try:
        return BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def _train(args: argparse.Namespace) -> None:
    from definet_core.train import train

    model_config = ModelConfig(**{f.name: getattr(args, f.name) for f in fields(ModelConfig)})
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, schedule=args.schedule,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, amsgrad=args.amsgrad,
        grad_clip=args.grad_clip, ema_decay=args.ema_decay, loss=args.loss, loss_balance=args.loss_balance,
        select_on=args.select_on, precision=args.precision, time_budget_min=args.time_budget,
        checkpoint_every_min=args.checkpoint_every,
        position_noise=args.position_noise, partway_starts=args.partway_starts,
        half_checkpoint=args.half_checkpoint, compile=args.compile,
        early_stop_patience=args.patience, seed=args.seed, device=args.device, min_atoms=args.min_atoms,
        freeze=tuple(args.freeze), domain_from=args.domain_from)
    sets = None
    if args.hidden_candidates and not args.resume:
        model_config, train_config, sets = _choose_size(args, model_config, train_config)
    summary = train(args.data, args.out, model_config, train_config, resume=args.resume, sets=sets, init=args.init)
    print(json.dumps(summary, indent=2))


def _choose_size(args: argparse.Namespace, model_config: ModelConfig, train_config: TrainConfig):
    """Time the candidate sizes on the loaded train set; the chosen config, precision and the loaded sets."""
    from dataclasses import replace

    from definet_core.checkpoint import resolve_device
    from definet_core.sizing import choose_model_size
    from definet_core.train import load_training_sets, resolve_precision

    if not args.time_budget:
        raise DefiNetInputError("--hidden-candidates: needs --time-budget to size the model against")
    sets = load_training_sets(args.data, model_config, None, True, train_config.min_atoms)
    device = resolve_device(args.device)
    precisions = sorted({"fp32", resolve_precision(args.precision, device)})
    graphs = [g for graphs in sets[0].values() for g in graphs]
    model_config, precision, timings = choose_model_size(
        model_config, args.hidden_candidates, graphs, args.batch_size, device, precisions, args.time_budget,
        args.min_epochs)
    for timing in timings:
        print(json.dumps({"sizing": timing.as_dict()}))
    print(f"chosen: hidden {model_config.hidden}, {precision}")
    extra = {**train_config.extra, "sizing": [t.as_dict() for t in timings]}
    return model_config, replace(train_config, precision=precision, extra=extra), sets


def _evaluate(args: argparse.Namespace) -> None:
    from definet_core.evaluate import evaluate

    report = evaluate(args.data, args.split, args.checkpoint, args.device, args.plot)
    print(f"{'material':<24}{'n':>6}{'mae':>10}{'dummy':>10}{'ratio':>8}{'local3A':>10}{'dummy3A':>10}")
    for key, row in report.items():
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}"  # n/a: the split's atoms do not move
        print(f"{key:<24}{row['n']:>6}{row['mae']:>10.4f}{row['dummy_mae']:>10.4f}"
              f"{ratio:>8}{row['local_mae_3A']:>10.4f}{row['dummy_local_mae_3A']:>10.4f}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))


def _checkpoint_domain(args: argparse.Namespace) -> None:
    from definet_core.applicability import domain_of
    from definet_core.checkpoint import load_model, save_checkpoint, stored_domain
    from definet_core.dataset import load_dataset, with_min_atoms
    from definet_core.predict import checkpoint_id

    if not args.data and not args.domain_from:
        raise DefiNetInputError("definet checkpoint-domain: give --data (the training data) or --domain-from")
    inherited = stored_domain(args.domain_from) if args.domain_from else None
    model, payload = load_model(args.checkpoint)
    config = model.config
    if args.data:
        sets = with_min_atoms(load_dataset(args.data, "train", config.radius, config.max_neighbors), args.min_atoms,
                              "train")
        domain = domain_of(g for graphs in sets.values() for g in graphs)
        domain = domain.union(inherited) if inherited else domain
    else:
        domain = inherited
    if args.any_size:
        domain = replace(domain, min_atoms=0)
    metadata = {**payload["metadata"], "domain_added_to": checkpoint_id(args.checkpoint), "domain_data": args.data,
                "domain_from": checkpoint_id(args.domain_from) if args.domain_from else None}
    save_checkpoint(args.out, model, list(domain.elements), metadata,
                    half=payload.get("weights_dtype") == "float16", domain=domain.to_dict())
    print(json.dumps({"checkpoint": args.out, "domain": domain.to_dict()}))


def _average(args: argparse.Namespace) -> None:
    from definet_core.averaging import average_payload, val_scores
    from definet_core.checkpoint import model_of, save_checkpoint
    from definet_core.predict import checkpoint_id

    payload = average_payload(args.checkpoints, [checkpoint_id(spec) for spec in args.checkpoints])
    model, metadata = model_of(payload), payload["metadata"]
    if args.data:
        metadata["val_mae"], metadata["val_ratio"] = val_scores(model, args.data)
        members = metadata["average_of"]
        print(f"{'val ratio':24}" + "".join(f"{m['checkpoint'].split('@')[0][:14]:>16}" for m in members)
              + f"{'average':>16}")
        for key, ratio in metadata["val_ratio"].items():
            stored = "".join(f"{(m['val_ratio'] or {}).get(key, float('nan')):16.4f}" for m in members)
            print(f"{key:24}{stored}{ratio:16.4f}")
    save_checkpoint(args.out, model, payload["trained_elements"], metadata, domain=payload["domain"])
    print(json.dumps({"checkpoint": args.out, "average_of": [m["checkpoint"] for m in metadata["average_of"]],
                      "val_ratio": metadata.get("val_ratio")}))


def _pseudo_label(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from definet_core.predict import Predictor
    from definet_core.pseudo_labels import write_pseudo_sets

    with Predictor(args.teacher, device=args.device) as teacher:
        written = write_pseudo_sets(args.data, args.out, teacher, args.copies, args.seed)
    print(json.dumps({"out": args.out, "teacher": teacher.checkpoint, "sets": [asdict(w) for w in written]}))


def _router(args: argparse.Namespace) -> None:
    from definet_core.applicability import DIMENSIONALITY
    from definet_core.checkpoint import Router, derived_router, pinned, read_router, save_router

    routes, bounds = {}, {}
    for item in args.route:
        kind, _, specs = item.partition("=")
        if kind not in DIMENSIONALITY.values() or not specs:
            raise DefiNetInputError(f"--route {item}: expected KIND=CHECKPOINT[,CHECKPOINT...] with KIND one of "
                                    f"{', '.join(DIMENSIONALITY.values())}")
        routes[kind] = specs.split(",")
    for item in args.spread_bound:
        kind, _, bound = item.partition("=")
        try:
            bounds[kind] = float(bound)
        except ValueError:
            raise DefiNetInputError(f"--spread-bound {item}: expected KIND=A with A a spread in A") from None
    specialists: dict[str, list[list[str]]] = {}
    for item in args.specialist:
        kind, _, specs = item.partition("=")
        if not specs:
            raise DefiNetInputError(f"--specialist {item}: expected KIND=CHECKPOINT[,CHECKPOINT...]")
        specialists.setdefault(kind, []).append(specs.split(","))
    if args.base is None:
        if not routes or args.default is None:
            raise DefiNetInputError("definet router: give --route and --default, or --from a router to start from")
        wanted = Router(routes, args.default, bounds, {}, specialists)
    else:
        base = read_router(args.base)
        if base is None:
            raise DefiNetInputError(f"--from {args.base}: a checkpoint of weights, not a router")
        wanted = derived_router(base, routes, specialists, bounds, args.default)
    metadata = {**wanted.metadata, "derived_from": pinned(args.base)} if args.base else {}
    save_router(args.out, wanted.routes, wanted.default, wanted.spread_bounds, metadata,
                specialists=wanted.specialists)
    router = read_router(args.out)
    print(json.dumps({"router": args.out, "routes": router.routes, "spread_bounds": router.spread_bounds,
                      "specialists": router.specialists}))


OUTPUT_FORMATS = ("same", "cif", "poscar", "json")
_SUFFIX = {"cif": ".cif", "poscar": ".vasp", "json": ".json"}


def output_path(out: Path, source: str, fmt: str) -> tuple[Path, str]:
    """Where the prediction of ``source`` goes, and its pymatgen format: the input's format unless ``fmt`` says.

    POSCAR/CONTCAR inputs (any name holding them, or ``.vasp``/``.poscar``) come back as POSCAR, which keeps
    the lattice vectors as given; a CIF keeps only the lattice parameters.
    """
    path = Path(source)
    if fmt == "same":
        upper = path.name.upper()
        if "POSCAR" in upper or "CONTCAR" in upper or path.suffix.lower() in (".vasp", ".poscar"):
            fmt = "poscar"
        elif path.suffix.lower() == ".json":
            fmt = "json"
        else:
            fmt = "cif"
    stem = path.stem if path.suffix.lower() in (".cif", ".json", ".vasp", ".poscar") else path.name
    return out / f"{stem}_predicted{_SUFFIX[fmt]}", fmt


def read_case(path: str, host: Structure, matrix: np.ndarray | None, config: ModelConfig,
              settings_by_kind: dict[str, tuple[float, int]]) -> tuple[Structure, dict] | str:
    """One defect supercell file read and its graph built as ``predict.defect_graph`` builds it for a model of
    ``config`` (as ``graph_to_arrays``), or the one-line error that either step raised (so that a worker process
    can hand it back)."""
    from definet_core.io import read_structure
    from definet_core.predict import defect_graph

    try:
        structure = read_structure(path)
        graph = defect_graph(structure, host, config, matrix, path, settings_by_kind=settings_by_kind)
        return structure, graph_to_arrays(graph)
    except DefiNetInputError as exc:
        return str(exc)


def _predict(args: argparse.Namespace) -> None:
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial
    from itertools import islice

    from tqdm import tqdm

    from definet_core.io import read_structure
    from definet_core.predict import Predictor, workers_policy

    count = len(args.structures)
    predictor = Predictor.for_count(count, args.checkpoint, args.device, args.batch_size, args.companions,
                                    args.compile)
    workers = workers_policy(args.workers, count, READER_WORKERS_AUTO_MIN)
    host = read_structure(args.host)
    matrix = np.diag(args.supercell) if args.supercell else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    read = partial(read_case, host=host, matrix=matrix, config=predictor.config,
                   settings_by_kind=predictor.settings_by_kind)
    entries, failures = [], []
    with ProcessPoolExecutor(workers) if workers else nullcontext() as pool:
        # the workers read ahead while this process predicts and writes one batch at a time
        cases = pool.map(read, args.structures, chunksize=8) if pool else map(read, args.structures)
        cases = tqdm(cases, total=count, desc="predict", unit="file", leave=False, disable=None)  # on terminals
        pairs = zip(args.structures, cases, strict=True)
        while batch := list(islice(pairs, args.batch_size)):
            good = []
            for path, case in batch:
                if isinstance(case, str):  # one bad file is reported, the others are still predicted
                    failures.append(case)
                else:
                    good.append((path, case[0], graph_from_arrays(case[1])))
            predictions = predictor.predictions([s for _, s, _ in good], graphs=[g for _, _, g in good])
            entries += [written_prediction(out, path, structure, prediction, args.format)
                        for (path, structure, _), prediction in zip(good, predictions, strict=True)]
    summary = {"checkpoint": predictor.checkpoint, "companions": predictor.companion_ids,
               "device": str(predictor.device), "seconds": round(time.perf_counter() - started, 3),
               "structures": entries, "errors": failures}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if failures:
        raise DefiNetInputError(f"{len(failures)} of {len(args.structures)} input(s) failed, the rest were "
                                f"predicted: {' | '.join(failures)}")


def written_prediction(out: Path, path: str, structure: Structure, prediction: Prediction,
                       output_format: str) -> dict:
    """Write one predicted structure below ``out`` (``output_path``), print a line about it and return its
    ``summary.json`` entry."""
    from definet_core.markers import Marker

    target, fmt = output_path(out, path, output_format)
    prediction.structure.to(filename=str(target), fmt=fmt)
    shift = np.linalg.norm(prediction.structure.cart_coords - structure.cart_coords, axis=1)
    counts = {m.name.lower(): int((prediction.graph.marker == m).sum()) for m in Marker}
    verdict = prediction.verdict
    domain = "in domain" if verdict.in_domain else "OUT OF DOMAIN: " + "; ".join(verdict.reasons)
    spread = f"; spread {prediction.spread:.4f} A" if prediction.spread is not None else ""
    print(f"{path} -> {target}  (mean shift {shift.mean():.3f} A, max {shift.max():.3f} A{spread}; {domain})")
    return {"input": str(path), "output": str(target), "formula": structure.composition.formula,
            "num_atoms": len(structure), "markers": counts,
            "mean_displacement": float(shift.mean()), "max_displacement": float(shift.max()),
            "in_domain": verdict.in_domain, "domain_reasons": list(verdict.reasons), "spread": prediction.spread}


def run_handler(args: argparse.Namespace) -> int:
    """Run a parsed command; any ``DefiNetError`` (bad input, a database that cannot be used) becomes a one-line
    error and exit status 2."""
    import sys

    try:
        args.handler(args)
    except DefiNetError as exc:
        print(f"definet: error: {exc}", file=sys.stderr)
        return 2
    return 0
