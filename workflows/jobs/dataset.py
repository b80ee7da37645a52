"""The dataset flow's own jobs: relax each generated structure once, from the start its ``--start`` policy
picks (``workflows.starts``; by default the prediction where its verdict is in-domain, else the unrelaxed
cell), and record one :class:`~workflows.schemas.dataset.DatasetDocument` per structure in ``dataset``.

The generation and prediction jobs, the relaxation makers, the fan-out and the store are those of the
validation flow; what differs is what is generated (a recipe's structures) and what is recorded.
"""

from __future__ import annotations

from typing import Any

from jobflow import CURRENT_JOB, Maker, Response, job

from definet_core.errors import DefiNetInputError
from workflows.defects.recipes import Recipe
from workflows.jobs.fan_out import fan_out, relaxation_summaries
from workflows.relaxers.makers import relaxer_settings
from workflows.schemas.dataset import DatasetDocument
from workflows.schemas.prediction import PredictionJobOutput
from workflows.starts import main_start, relaxation_starts
from workflows.storage.cases import (
    CaseSet,
    database_of,
    discard,
    read_case_ids,
    read_cases_with_predictions,
    read_prediction_fields,
)


@job
def relax_and_record_dataset(recipe: Recipe, cases: CaseSet, prediction_job: PredictionJobOutput,
                             relax_maker: Maker, relaxer: str, start: str = "auto",
                             select: int | None = None) -> Response:
    """Register the generated ids, then relax every structure without a stored relaxation and record them.

    A structure is done when it has a document of this recipe and relaxer, not ``failed``, from the start the
    policy picks for it (the documents' key holds that start), so running the flow again, or with more
    structures, relaxes only what is missing. With ``select``, the generated structures are a pool: only
    ``select`` of them are relaxed, those already documented first, then the ones whose ensemble spread is
    largest (``most_uncertain``).
    """
    from workflows.storage.stores import DatasetStore, RecipeRegistry, documented_keys

    location = database_of(CURRENT_JOB.store, "relax and record dataset")
    ids = read_case_ids(location, cases)
    with RecipeRegistry(*location) as registry:
        registry.register(recipe.name, recipe.content_hash, recipe.model_dump(mode="json"), ids)
    predicted = read_prediction_fields(location, prediction_job.prediction_id, ("in_domain", "spread"))
    documented = documented_keys(CURRENT_JOB.store, DatasetStore, ("structure_id", "start"), "structure_id", ids,
                                 {"recipe": recipe.name, "relaxer": relaxer, "status": {"$ne": "failed"}})
    done = {case_id for case_id in ids if (case_id, main_start(start, predicted[case_id]["in_domain"])) in documented}
    todo = [case_id for case_id in ids if case_id not in done]
    if select is not None:
        spreads = {case_id: fields["spread"] for case_id, fields in predicted.items()}
        todo = most_uncertain(spreads, todo, select - len(done))
    settings = relaxer_settings(relaxer, relax_maker)
    selection = "first" if select is None else "spread"
    return fan_out(location, cases, todo, prediction_job, relax_maker,
                   lambda case_prediction: relaxation_starts(start, False, case_prediction),
                   lambda from_p, from_u: record_dataset(recipe, cases, todo, prediction_job, from_p, from_u, relaxer,
                                                         settings, start, selection), "relax and record dataset")


def most_uncertain(spreads: dict[str, float | None], candidates: list[str], count: int) -> list[str]:
    """The ``count`` candidates with the largest ensemble spread, in the candidates' order (ties: the earlier).

    The spread estimates the prediction's error (``bench/ensemble_uncertainty.py``), so these are the
    structures the model knows least: the relaxations a DFT budget buys the most with.
    """
    missing = [case_id for case_id in candidates if spreads.get(case_id) is None]
    if missing:
        raise DefiNetInputError(f"selection by spread: no spread for {len(missing)} structure(s) (e.g. {missing[0]}); "
                                "the prediction job needs companion checkpoints, or a router whose route for this "
                                "host is an ensemble")
    ranked = sorted(candidates, key=lambda case_id: -spreads[case_id])
    chosen = set(ranked[:max(count, 0)])
    return [case_id for case_id in candidates if case_id in chosen]


@job(data=True)
def record_dataset(recipe: Recipe, cases: CaseSet, case_ids: list[str], prediction_job: PredictionJobOutput,
                   from_prediction: list[Any], from_unrelaxed: list[Any], relaxer: str, settings: dict[str, Any],
                   start: str = "auto", selection: str = "first") -> list[dict[str, Any]]:
    """One dataset document per structure of ``case_ids`` (failed relaxations included, with their errors),
    upserted into the ``dataset`` collection beside the JobStore; then the flow's cases and predictions are
    deleted (``workflows.storage.cases.discard``)."""
    from workflows.storage.stores import DatasetStore, upsert_documents

    location = database_of(CURRENT_JOB.store, "record dataset")
    pairs = read_cases_with_predictions(location, cases, prediction_job.prediction_id, case_ids)
    docs = []
    for (case, predicted), p, u in zip(pairs, from_prediction, from_unrelaxed, strict=True):
        (from_p, from_u), errors = relaxation_summaries((p, u), relaxation_starts(start, False, predicted))
        docs.append(DatasetDocument.from_relaxation(recipe, case, predicted, prediction_job, relaxer, settings, start,
                                                    from_p or from_u, errors, selection).model_dump())
    upsert_documents(CURRENT_JOB.store, docs, DatasetStore)
    discard(location, cases, prediction_job.prediction_id)
    return docs
