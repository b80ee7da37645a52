"""``definet dataset recipes | build | status | export``: regenerate and extend a defect dataset.

``definet dataset submit`` (the same flow on a FireWorks LaunchPad) is added by the ``launchpad`` package
through the ``definet.dataset_commands`` entry point, so that ``workflows`` never imports ``launchpad``.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from definet_core.errors import DefiNetInputError
from workflows.relaxers import RELAXERS
from workflows.run_cli import add_store_options, run_flow_locally, store_args

if TYPE_CHECKING:
    from jobflow import Flow

    from workflows.recipes import Recipe


def add_dataset_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``dataset`` command group (and the subcommands plugins add to it)."""
    dataset = subparsers.add_parser("dataset", help="regenerate and extend a defect dataset from a recipe")
    commands = dataset.add_subparsers(dest="dataset_command", required=True)
    recipes = commands.add_parser("recipes", help="the built-in recipes, one line each")
    recipes.set_defaults(handler=_recipes)

    build = commands.add_parser("build", help="generate, predict, relax and record a recipe here (jobflow, locally)")
    add_build_options(build, default_relaxer="chgnet")
    build.set_defaults(handler=_build)

    status = commands.add_parser("status", help="per recipe: structures generated, relaxed, converged, failed")
    status.add_argument("--recipe", action="append", default=None, help="recipe name (default: all)")
    status.add_argument("--json", dest="json_out", default=None, help="write the rows as JSON")
    add_store_options(status)
    status.set_defaults(handler=_status)

    export = commands.add_parser("export", help="write the relaxed pairs in the layout `definet train` reads")
    export.add_argument("--recipe", required=True, help="built-in recipe name or recipe YAML file")
    export.add_argument("-o", "--out", required=True, help="directory; the recipe's folder goes inside it")
    export.add_argument("--relaxer", default=None, help="which relaxer's documents (needed when several)")
    add_store_options(export)
    export.set_defaults(handler=_export)
    for plugin in entry_points(group="definet.dataset_commands"):  # e.g. `submit` from the launchpad package
        plugin.load()(commands)


def add_build_options(parser: argparse.ArgumentParser, default_relaxer: str) -> None:
    """Options that define a dataset flow: recipe, how many structures, relaxer, start, model, database."""
    from workflows.dataset_jobs import DATASET_STARTS

    parser.add_argument("--recipe", required=True, help="built-in recipe name (`definet dataset recipes`) or YAML file")
    parser.add_argument("--structures", type=int, default=None, help="how many structures (default: the recipe's)")
    parser.add_argument("--relaxer", choices=RELAXERS, default=default_relaxer)
    parser.add_argument("--start", choices=DATASET_STARTS, default="prediction",
                        help="relax from DefiNet's prediction (default) or from the unrelaxed cell")
    parser.add_argument("--fmax", type=float, default=None, help="force convergence (eV/A)")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--companion", dest="companions", action="append", default=[], metavar="CHECKPOINT",
                        help="a further checkpoint (repeatable): predict with the ensemble's mean, record its spread")
    parser.add_argument("--select", type=int, default=None, metavar="N",
                        help="relax only N of the generated structures (--structures: the pool), those with the "
                             "largest spread between the models (needs --companion): DFT where the model knows least")
    parser.add_argument("--device", default="auto")
    add_store_options(parser)


def recipe_host(recipe: Recipe) -> tuple[str, Any]:
    """(host id, unit cell with the recipe's vacuum) of a recipe."""
    from workflows.hosts import resolve_host
    from workflows.recipes import with_vacuum

    host_id, host = resolve_host(recipe.host_spec())
    return host_id, with_vacuum(host, recipe)


def prepare_dataset_flow(args: argparse.Namespace) -> tuple[Flow, Recipe]:
    """The dataset flow of parsed build options, after generating the structures once here to fail early."""
    from workflows.enumeration import survey
    from workflows.flows import DatasetBuildMaker
    from workflows.jobs import DefiNetPredictMaker
    from workflows.recipes import iter_generate, load_recipe
    from workflows.relaxers import check_elements, relax_maker

    recipe = load_recipe(args.recipe)
    host_id, host = recipe_host(recipe)
    count, elements = survey(iter_generate(recipe, host_id, host, args.structures))
    check_elements(args.relaxer, elements)
    check_selection(args.select, count)
    chosen = "" if args.select is None else f", of which the {args.select} with the largest spread are relaxed"
    print(f"recipe {recipe.name} ({recipe.content_hash}): {count} structures on {host_id}{chosen}; relaxer "
          f"{args.relaxer}, from the {args.start} (structures already relaxed are skipped)")
    maker = DatasetBuildMaker(relaxer=args.relaxer, relax_maker=relax_maker(args.relaxer, fmax=args.fmax),
                              predict_maker=DefiNetPredictMaker(checkpoint=args.checkpoint, device=args.device,
                                                                companions=args.companions),
                              start=args.start, select=args.select)
    return maker.make(recipe, (host_id, host), args.structures), recipe


def check_selection(select: int | None, pool: int) -> None:
    """A one-line error unless ``--select`` (when given) is between 1 and the pool size (``DatasetBuildMaker``
    checks that it has an ensemble)."""
    if select is not None and not 1 <= select <= pool:
        raise DefiNetInputError(f"--select {select}: must be between 1 and the {pool} generated structures "
                                "(raise --structures for a larger pool)")


def _recipes(args: argparse.Namespace) -> None:
    from workflows.recipes import BUILTIN_RECIPES

    for recipe in BUILTIN_RECIPES.values():
        print(recipe.summary())


def _build(args: argparse.Namespace) -> None:
    from workflows.db_server import StoreSettings

    flow, recipe = prepare_dataset_flow(args)
    settings = StoreSettings.from_env(**store_args(args))
    with run_flow_locally(flow, settings) as uri:
        rows = status_rows(uri, settings.database, [recipe.name])
    print(format_status(rows))


def status_rows(uri: str, database: str, recipes: list[str] | None = None) -> list[dict[str, Any]]:
    """Per (recipe, relaxer, start): structures generated, relaxed, converged, failed, and mean ionic steps."""
    from workflows.store import DatasetStore, RecipeRegistry

    with RecipeRegistry(uri, database) as registry:
        generated: dict[str, set[str]] = defaultdict(set)
        for entry in registry.find({"recipe": {"$in": recipes}} if recipes else {}):
            generated[entry["recipe"]].update(entry["structure_ids"])
    with DatasetStore(uri, database) as store:
        docs = store.find({"recipe": {"$in": recipes}} if recipes else {},
                          ["recipe", "relaxer", "start", "status", "converged", "ionic_steps", "structure_id"])
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        groups[(doc["recipe"], doc["relaxer"], doc["start"])].append(doc)
    rows = []
    for name in sorted(set(generated) | {key[0] for key in groups}):
        keys = sorted(key for key in groups if key[0] == name) or [(name, None, None)]
        for key in keys:
            group = groups.get(key, [])
            steps = [d["ionic_steps"] for d in group if d.get("ionic_steps") is not None]
            rows.append({"recipe": name, "relaxer": key[1], "start": key[2], "generated": len(generated[name]),
                         "relaxed": sum(d["status"] == "complete" for d in group),
                         "converged": sum(d["status"] == "complete" and d.get("converged") is True for d in group),
                         "failed": sum(d["status"] == "failed" for d in group),
                         "mean_ionic_steps": float(np.mean(steps)) if steps else None})
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`status_rows`."""
    header = (f"{'recipe':<16}{'relaxer':<9}{'start':<12}{'generated':>10}{'relaxed':>9}{'converged':>10}"
              f"{'failed':>8}{'mean steps':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        steps = "-" if r["mean_ionic_steps"] is None else f"{r['mean_ionic_steps']:.1f}"
        lines.append(f"{r['recipe']:<16}{r['relaxer'] or '-':<9}{r['start'] or '-':<12}{r['generated']:>10}"
                     f"{r['relaxed']:>9}{r['converged']:>10}{r['failed']:>8}{steps:>12}")
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> None:
    from workflows.db_server import StoreSettings, open_database

    settings = StoreSettings.from_env(**store_args(args))
    with open_database(settings) as uri:
        rows = status_rows(uri, settings.database, args.recipe)
    if not rows:
        raise DefiNetInputError("definet dataset status: no dataset recipe has been built; run "
                                "`definet dataset build` first")
    print(format_status(rows))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"rows": rows}, indent=2))


def export_dataset(recipe: Recipe, docs: list[dict[str, Any]], out: Path) -> dict[str, int]:
    """Write ``out/<recipe>/``: CIF pairs of the converged structures, the host unit cell, split csv files.

    ``docs`` are the recipe's documents of one relaxer (either start; a structure relaxed from both starts
    is exported once, from the prediction). Returns counts: exported, unconverged and failed (left out).
    """
    from pymatgen.core import Structure

    from workflows.recipes import split_of

    best: dict[str, dict[str, Any]] = {}
    left_out = {"unconverged": set(), "failed": set()}
    for doc in sorted(docs, key=lambda d: (d["structure_id"], d["start"] != "prediction")):
        if doc["status"] == "failed":
            left_out["failed"].add(doc["structure_id"])
        elif not doc.get("converged"):
            left_out["unconverged"].add(doc["structure_id"])
        else:
            best.setdefault(doc["structure_id"], doc)
    folder = out / recipe.name
    (folder / "CIF").mkdir(parents=True, exist_ok=True)
    host_id, host = recipe_host(recipe)
    host.to(filename=str(folder / f"{host_id}.cif"))
    for structure_id, doc in best.items():
        for kind in ("unrelaxed", "relaxed"):
            path = folder / "CIF" / f"{structure_id}_{kind}.cif"
            Structure.from_dict(doc[f"{kind}_structure"]).to(filename=str(path))
    for split, ids in split_of(recipe, sorted(best)).items():
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["atoms_id"])
            writer.writerows([i] for i in ids)
    return {"exported": len(best), "unconverged": len(left_out["unconverged"] - set(best)),
            "failed": len(left_out["failed"] - set(best))}


def _export(args: argparse.Namespace) -> None:
    from workflows.db_server import StoreSettings, open_database
    from workflows.recipes import load_recipe
    from workflows.store import DatasetStore

    recipe = load_recipe(args.recipe)
    settings = StoreSettings.from_env(**store_args(args))
    with open_database(settings) as uri, DatasetStore(uri, settings.database) as store:
        docs = store.find({"recipe": recipe.name, "recipe_hash": recipe.content_hash})
    relaxers = sorted({d["relaxer"] for d in docs})
    if args.relaxer:
        docs = [d for d in docs if d["relaxer"] == args.relaxer]
    elif len(relaxers) > 1:
        raise DefiNetInputError(f"definet dataset export: recipe {recipe.name} has documents of several relaxers "
                                f"({', '.join(relaxers)}); choose one with --relaxer")
    if not docs:
        raise DefiNetInputError(f"definet dataset export: recipe {recipe.name} has no relaxed structures"
                                f"{' from ' + args.relaxer if args.relaxer else ''}; run `definet dataset build`")
    counts = export_dataset(recipe, docs, Path(args.out))
    print(f"exported {counts['exported']} structures of {recipe.name} to {Path(args.out) / recipe.name}; "
          f"left out: {counts['unconverged']} unconverged, {counts['failed']} failed")
