"""jobflow jobs of the dataset flow: generate a recipe's structures, fan out relaxations, record one document each.

The prediction job (``DefiNetPredictMaker``), the relaxation makers, the fan-out (``workflows.jobs.fan_out``)
and the store are the validation flow's; what differs is what is generated (a recipe's structures) and what
is recorded (a :class:`~workflows.documents.DatasetDocument` per structure, in the ``dataset`` collection).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jobflow import CURRENT_JOB, Job, Maker, Response, job
from pymatgen.core import Structure

from definet_core.errors import DefiNetInputError
from workflows.case_store import (
    CaseSet,
    database_of,
    discard,
    read_case_ids,
    read_cases_with_predictions,
    read_spreads,
    write_cases,
)
from workflows.documents import DatasetDocument, PredictedCase, PredictionOutput, RelaxationSummary
from workflows.enumeration import DefectCase
from workflows.jobs import (
    component_mae,
    definet_version,
    fan_out,
    relaxation_summaries,
    starts_from_prediction,
    with_store,
)
from workflows.recipes import Recipe, iter_generate
from workflows.relaxers import relaxer_settings

DATASET_STARTS = ("prediction", "unrelaxed")
"""Where a dataset relaxation starts: DefiNet's prediction (the default) or the unrelaxed cell."""


@job
def generate_structures(recipe: Recipe, host_id: str, host: Structure, structures: int | None = None) -> CaseSet:
    """The recipe's first ``structures`` structures (case ids are the structure ids), streamed into
    ``defect_cases`` (see ``case_store``). Needs jobflow's store exposed: build it with :func:`generation_job`."""
    location = database_of(CURRENT_JOB.store, "generate structures")
    return write_cases(location, CURRENT_JOB.job.uuid, iter_generate(recipe, host_id, host, structures))


def generation_job(recipe: Recipe, host_id: str, host: Structure, structures: int | None = None) -> Job:
    """The generation job of a dataset flow ("generate structures", with the store it writes the cases to)."""
    return with_store(generate_structures(recipe, host_id, host, structures), "generate structures")


def dataset_starts(start: str, predicted: PredictedCase) -> tuple[bool, bool]:
    """(relax from the prediction, relax from the unrelaxed cell): exactly one of them."""
    if start not in DATASET_STARTS:
        raise ValueError(f"start {start!r}: expected one of {', '.join(DATASET_STARTS)}")
    use_prediction = starts_from_prediction(start, predicted)
    return use_prediction, not use_prediction


@job
def relax_and_record_dataset(recipe: Recipe, cases: CaseSet, prediction: PredictionOutput,
                             relax_maker: Maker, relaxer: str, start: str = "prediction",
                             select: int | None = None) -> Response:
    """Register the generated ids, then relax every structure without a stored relaxation and record them.

    Structures that already have a document for this recipe, relaxer and start that is not ``failed``
    are skipped, so running the flow again, or with more structures, relaxes only what is missing.
    With ``select``, the generated structures are a pool: only ``select`` of them are relaxed, those
    already documented first, then the ones whose ensemble spread is largest (``most_uncertain``).
    """
    from workflows.store import DatasetStore, RecipeRegistry, documented_ids

    location = database_of(CURRENT_JOB.store, "relax and record dataset")
    ids = read_case_ids(location, cases)
    with RecipeRegistry(*location) as registry:
        registry.register(recipe.name, recipe.content_hash, recipe.model_dump(mode="json"), ids)
    done = documented_ids(CURRENT_JOB.store, DatasetStore, "structure_id", ids,
                          {"recipe": recipe.name, "relaxer": relaxer, "start": start, "status": {"$ne": "failed"}})
    todo = [case_id for case_id in ids if case_id not in done]
    if select is not None:
        todo = most_uncertain(read_spreads(location, prediction.prediction_id), todo, select - len(done))
    settings = relaxer_settings(relaxer, relax_maker)
    selection = "first" if select is None else "spread"
    return fan_out(location, cases, todo, prediction, relax_maker, lambda p: dataset_starts(start, p),
                   lambda from_p, from_u: record_dataset(recipe, cases, todo, prediction, from_p, from_u, relaxer,
                                                         settings, start, selection), "relax and record dataset")


def most_uncertain(spreads: dict[str, float | None], candidates: list[str], count: int) -> list[str]:
    """The ``count`` candidates with the largest ensemble spread, in the candidates' order (ties: the earlier).

    The spread estimates the prediction's error (``bench/ensemble_uncertainty.py``), so these are the
    structures the model knows least: the relaxations a DFT budget buys the most with.
    """
    missing = [case_id for case_id in candidates if spreads.get(case_id) is None]
    if missing:
        raise DefiNetInputError(f"selection by spread: no spread for {len(missing)} structure(s) (e.g. {missing[0]}); "
                                "the prediction job needs companion checkpoints")
    ranked = sorted(candidates, key=lambda case_id: -spreads[case_id])
    chosen = set(ranked[:max(count, 0)])
    return [case_id for case_id in candidates if case_id in chosen]


def dataset_document(recipe: Recipe, case: DefectCase, predicted: PredictedCase, checkpoint: str,
                     seconds_per_structure: float, relaxer: str, settings: dict[str, Any], start: str,
                     summary: RelaxationSummary | None, errors: list[str], selection: str = "first") -> DatasetDocument:
    """The document of one structure: what was generated, where its relaxation started, and what came out."""
    from_prediction = start == "prediction"
    doc = DatasetDocument(
        recipe=recipe.name, recipe_hash=recipe.content_hash, structure_id=case.case_id, host_id=case.host_id,
        supercell_matrix=case.supercell_matrix, defects=[d.model_dump() for d in case.defects],
        defect_name=case.name, formula=case.structure.composition.formula, num_atoms=len(case.structure),
        relaxer=relaxer, relaxer_settings=settings, start=start,
        checkpoint=checkpoint if from_prediction else None, in_domain=predicted.in_domain,
        status="failed" if errors or summary is None else "complete", errors=errors,
        unrelaxed_structure=case.structure.as_dict(),
        start_structure=predicted.structure.as_dict() if from_prediction else None,
        prediction_seconds_per_structure=seconds_per_structure if from_prediction else None,
        prediction_spread=predicted.spread, selection=selection, definet_version=definet_version())
    if summary is not None:
        doc.relaxed_structure = summary.structure.as_dict()
        doc.ionic_steps, doc.energy, doc.converged = summary.ionic_steps, summary.energy, summary.converged
        doc.relax_seconds, doc.forces = summary.seconds, summary.forces
        if summary.forces:
            doc.max_force = float(np.linalg.norm(np.asarray(summary.forces), axis=1).max())
        doc.prediction_mae = component_mae(predicted.structure, summary.structure)
        doc.unrelaxed_mae = component_mae(case.structure, summary.structure)
    return doc


@job(data=True)
def record_dataset(recipe: Recipe, cases: CaseSet, case_ids: list[str], prediction: PredictionOutput,
                   from_prediction: list[Any], from_unrelaxed: list[Any], relaxer: str, settings: dict[str, Any],
                   start: str = "prediction", selection: str = "first") -> list[dict[str, Any]]:
    """One dataset document per structure of ``case_ids`` (failed relaxations included, with their errors),
    upserted into the ``dataset`` collection beside the JobStore; then the flow's cases and predictions are
    deleted (``case_store.discard``)."""
    from workflows.store import DatasetStore, upsert_documents

    location = database_of(CURRENT_JOB.store, "record dataset")
    pairs = read_cases_with_predictions(location, cases, prediction.prediction_id, case_ids)
    per_structure = prediction.seconds / max(prediction.count, 1)
    docs = []
    for (case, predicted), p, u in zip(pairs, from_prediction, from_unrelaxed, strict=True):
        (from_p, from_u), errors = relaxation_summaries((p, u), dataset_starts(start, predicted))
        docs.append(dataset_document(recipe, case, predicted, prediction.predictor_id, per_structure, relaxer,
                                     settings, start, from_p or from_u, errors, selection).model_dump())
    upsert_documents(CURRENT_JOB.store, docs, DatasetStore)
    discard(location, cases, prediction.prediction_id)
    return docs
