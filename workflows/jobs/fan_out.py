"""The fan-out both flows share: per case, one relaxation job from each start the ``--start`` policy asks for
(``workflows.starts``), then one record job that runs even when relaxations fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobflow import Flow, Job, JobConfig, Maker, OnMissing, Response

from workflows.schemas.prediction import PredictedCase, PredictionJobOutput
from workflows.schemas.relaxation import RelaxationError, RelaxationSummary
from workflows.storage.cases import CaseSet, discard, read_cases_with_predictions


def fan_out(location: tuple[str, str], cases: CaseSet, case_ids: list[str], prediction_job: PredictionJobOutput,
            relax_maker: Maker, starts: Callable[[PredictedCase], tuple[bool, bool]],
            record: Callable[[list[Any], list[Any]], Job], name: str) -> Response:
    """Relaxation jobs per case, then a record job, replacing the calling job.

    For each of ``case_ids`` (read from the set ``cases`` with their predictions), ``starts(predicted case)``
    says whether to relax from the prediction and from the unrelaxed cell; ``record(outputs from the
    prediction, outputs from the unrelaxed cell)`` (one per case, None where not run) makes the record job,
    which runs even when relaxations fail (their outputs become None) and writes through the exposed store.
    Every job created here inherits the calling job's worker category. With no ``case_ids`` (all done) there
    is nothing to record: the flow's cases and predictions are discarded here and the output is empty.
    """
    if not case_ids:
        discard(location, cases, prediction_job.prediction_id)
        return Response(output=[])
    jobs: list[Job] = []
    from_prediction, from_unrelaxed = [], []
    for case, predicted in read_cases_with_predictions(location, cases, prediction_job.prediction_id, case_ids):
        use_prediction, use_unrelaxed = starts(predicted)
        for wanted, structure, label, outputs in ((use_prediction, predicted.structure, "prediction", from_prediction),
                                                  (use_unrelaxed, case.structure, "unrelaxed", from_unrelaxed)):
            if wanted:
                relax = relax_maker.make(structure)
                relax.name = f"{relax.name} {case.case_id} from {label}"
                jobs.append(relax)
                outputs.append(relax.output)
            else:
                outputs.append(None)
    record_job = record(from_prediction, from_unrelaxed)
    record_job.config = JobConfig(on_missing_references=OnMissing.NONE, expose_store=True)  # category: inherited
    return Response(replace=Flow([*jobs, record_job], output=record_job.output, name=name))


def relaxation_summaries(outputs: tuple[Any, Any],
                         wanted: tuple[bool, bool]) -> tuple[list[RelaxationSummary | None], list[str]]:
    """Summaries of a case's two relaxations (None where not run or failed) and an error line for each one that
    was run but failed."""
    summaries, errors = [], []
    for label, output, was_run in zip(("prediction", "unrelaxed cell"), outputs, wanted, strict=True):
        summary = None
        if was_run and output is None:
            errors.append(f"relaxation from the {label} failed: its job gave no output (the job log or the "
                          "FireWorks launch holds the traceback)")
        elif output is not None:
            try:
                summary = RelaxationSummary.from_task_doc(output)
            except RelaxationError as exc:
                errors.append(f"relaxation from the {label} failed: {exc}")
        summaries.append(summary)
    return summaries, errors
