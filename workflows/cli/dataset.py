"""``definet dataset recipes | build | status | export``: regenerate and extend a defect dataset.

``definet dataset submit`` (the same flow on a FireWorks LaunchPad) is added by the ``launchpad`` package
through the ``definet.dataset_commands`` entry point, so that ``workflows`` never imports ``launchpad``."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from definet_core.errors import DefiNetInputError
from workflows.cli.common import add_store_options, run_flow_locally, store_args
from workflows.relaxers.makers import RELAXERS
from workflows.starts import START_CHOICES

if TYPE_CHECKING:
    from jobflow import Flow

    from workflows.defects.recipes import Recipe
    from workflows.storage.server import StoreSettings

RECIPE_HELP = "built-in recipe name (`definet dataset recipes`), recipe YAML file, or the name of a recipe built before"


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
    export.add_argument("--recipe", required=True, help=RECIPE_HELP)
    export.add_argument("-o", "--out", required=True, help="directory; the recipe's folder goes inside it")
    export.add_argument("--relaxer", default=None, help="which relaxer's documents (needed when several)")
    add_store_options(export)
    export.set_defaults(handler=_export)
    for plugin in entry_points(group="definet.dataset_commands"):  # e.g. `submit` from the launchpad package
        plugin.load()(commands)


def add_build_options(parser: argparse.ArgumentParser, default_relaxer: str) -> None:
    """Options that define a dataset flow: recipe, how many structures, relaxer, start, model, database."""
    parser.add_argument("--recipe", required=True, help=RECIPE_HELP)
    parser.add_argument("--structures", type=int, default=None, help="how many structures (default: the recipe's)")
    parser.add_argument("--relaxer", choices=RELAXERS, default=default_relaxer)
    parser.add_argument("--start", choices=START_CHOICES, default="auto",
                        help="auto: from DefiNet's prediction where the model vouches for it, else from the unrelaxed "
                             "cell (the document says why); prediction: always; unrelaxed: never use the prediction")
    parser.add_argument("--fmax", type=float, default=None, help="force convergence (eV/A)")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--companion", dest="companions", action="append", default=[], metavar="CHECKPOINT",
                        help="a further checkpoint (repeatable): predict with the ensemble's mean, record its spread")
    parser.add_argument("--select", type=int, default=None, metavar="N",
                        help="relax only N of the generated structures (--structures: the pool), those with the "
                             "largest spread between the models (needs --companion, or a checkpoint whose route for the"
                             " host is an ensemble, as the default's bulk route): DFT where the model knows least")
    parser.add_argument("--device", default="auto")
    add_store_options(parser)


def resolve_recipe(spec: str, settings: StoreSettings) -> Recipe:
    """The recipe ``spec`` names: built-in, a YAML file, or else the recipe last built under that name on the
    configured database (``RecipeRegistry.latest``); a one-line error when none is."""
    from workflows.defects.recipes import BUILTIN_RECIPES, load_recipe
    from workflows.storage.server import open_database
    from workflows.storage.stores import RecipeRegistry

    if spec in BUILTIN_RECIPES or Path(spec).is_file():
        return load_recipe(spec)
    with open_database(settings) as uri, RecipeRegistry(uri, settings.database) as registry:
        return load_recipe(spec, registry.latest)


def dataset_flow(args: argparse.Namespace, settings: StoreSettings) -> tuple[Flow, Recipe]:
    """The dataset flow of parsed build options (``add_build_options``) and its recipe."""
    from workflows.flows.dataset import prepare_dataset_flow

    recipe = resolve_recipe(args.recipe, settings)
    return prepare_dataset_flow(recipe, args.relaxer, args.structures, args.start, args.fmax, args.checkpoint,
                                args.companions, args.select, args.device), recipe


def _recipes(args: argparse.Namespace) -> None:
    from workflows.defects.recipes import BUILTIN_RECIPES

    for recipe in BUILTIN_RECIPES.values():
        print(recipe.summary())


def _build(args: argparse.Namespace) -> None:
    from workflows.reports.dataset import format_status, status_rows
    from workflows.storage.server import StoreSettings

    settings = StoreSettings.from_env(**store_args(args))
    flow, recipe = dataset_flow(args, settings)
    with run_flow_locally(flow, settings) as uri:
        rows = status_rows(uri, settings.database, [recipe.name])
    print(format_status(rows))


def _status(args: argparse.Namespace) -> None:
    from workflows.reports.dataset import format_status, status_rows
    from workflows.storage.server import StoreSettings, open_database

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


def _export(args: argparse.Namespace) -> None:
    from workflows.reports.dataset import export_dataset
    from workflows.storage.server import StoreSettings, open_database
    from workflows.storage.stores import DatasetStore

    settings = StoreSettings.from_env(**store_args(args))
    recipe = resolve_recipe(args.recipe, settings)
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
