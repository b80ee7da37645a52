"""The validation flow's own jobs: relax each case from the starts its policy asks for (by default from the
prediction and, for comparison, from the unrelaxed cell), then record one validation document per case."""

from __future__ import annotations

from typing import Any

from jobflow import CURRENT_JOB, Maker, Response, job

from workflows.jobs.fan_out import fan_out, relaxation_summaries
from workflows.relaxers.makers import relaxer_settings
from workflows.schemas.prediction import PredictionJobOutput
from workflows.schemas.validation import ValidationDocument
from workflows.starts import relaxation_starts
from workflows.storage.cases import CaseSet, database_of, discard, read_case_ids, read_cases_with_predictions


@job
def relax_and_record(cases: CaseSet, prediction_job: PredictionJobOutput, relax_maker: Maker, relaxer: str,
                     comparison: bool = True, start: str = "auto") -> Response:
    """Dynamic fan-out, then record: per case, the relaxations the ``start`` policy and ``comparison`` ask for.

    Under ``start`` (``workflows.starts.START_CHOICES``) a case whose prediction is not used (out of domain
    under ``auto``, or every case under ``unrelaxed``) is relaxed once, from the unrelaxed cell.
    ``comparison=False`` drops the unrelaxed-cell relaxations of the cases that start from the prediction.
    Cases that already have a complete document of this relaxer, checkpoint, policy and comparison (the
    document's key) are skipped, so a rerun relaxes only what is missing or failed. Replaced by the flow it
    builds (the record job's output).
    """
    from workflows.storage.stores import complete_case_ids

    location = database_of(CURRENT_JOB.store, "relax and record")
    ids = read_case_ids(location, cases)
    done = complete_case_ids(CURRENT_JOB.store, ids, relaxer, prediction_job.predictor_id, start, comparison)
    todo = [case_id for case_id in ids if case_id not in done]
    settings = relaxer_settings(relaxer, relax_maker)
    return fan_out(location, cases, todo, prediction_job, relax_maker,
                   lambda predicted: relaxation_starts(start, comparison, predicted),
                   lambda from_p, from_u: record_validation(cases, todo, prediction_job, from_p, from_u, relaxer,
                                                            settings, start, comparison), "relax and record")


@job(data=True)
def record_validation(cases: CaseSet, case_ids: list[str], prediction_job: PredictionJobOutput,
                      from_prediction: list[Any], from_unrelaxed: list[Any], relaxer: str, settings: dict[str, Any],
                      start: str = "auto", comparison: bool = True) -> list[dict[str, Any]]:
    """One validation document per case of ``case_ids`` (failed relaxations included, with their errors),
    upserted into the ``validation`` collection beside the JobStore; then the flow's cases and predictions,
    which the documents now hold, are deleted (``workflows.storage.cases.discard``)."""
    from workflows.storage.stores import upsert_validation_documents

    location = database_of(CURRENT_JOB.store, "record validation")
    pairs = read_cases_with_predictions(location, cases, prediction_job.prediction_id, case_ids)
    docs = []
    for (case, predicted), p, u in zip(pairs, from_prediction, from_unrelaxed, strict=True):
        (from_p, from_u), errors = relaxation_summaries((p, u), relaxation_starts(start, comparison, predicted))
        docs.append(ValidationDocument.from_relaxations(case, predicted, prediction_job, relaxer, settings, start,
                                                        comparison, from_p, from_u, errors).model_dump())
    upsert_validation_documents(CURRENT_JOB.store, docs)
    discard(location, cases, prediction_job.prediction_id)
    return docs
