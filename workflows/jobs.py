"""jobflow jobs of the defect validation flow: enumerate, predict (one batched job), fan out, record."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from jobflow import CURRENT_JOB, Flow, Job, JobConfig, Maker, OnMissing, Response, job
from pymatgen.core import Structure
from tqdm import tqdm

from definet_core.errors import DefiNetInputError
from workflows.case_store import (
    CaseSet,
    chunks,
    database_of,
    discard,
    read_case_ids,
    read_cases,
    read_cases_with_predictions,
    write_cases,
    write_predictions,
)
from workflows.documents import (
    SAME_MINIMUM_DISPLACEMENT_A,
    SAME_MINIMUM_ENERGY_EV,
    PredictedCase,
    PredictionOutput,
    RelaxationSummary,
    ValidationDocument,
)
from workflows.enumeration import DefectCase
from workflows.enumeration_settings import EnumerationSettings
from workflows.relaxers import (
    converged,
    final_energy,
    final_forces,
    final_structure,
    ionic_steps,
    package_version,
    relaxer_settings,
)

if TYPE_CHECKING:
    from definet_core.predict import Prediction


def with_store(job_: Job, name: str) -> Job:
    """``job_`` named ``name`` and given jobflow's store at run time (it reads or writes the case collections)."""
    job_.name = name
    job_.config.expose_store = True
    return job_


@job
def enumerate_defects(hosts: list[tuple[str, Structure]], settings: EnumerationSettings) -> CaseSet:
    """All defect cases of all hosts, as ``settings`` asks, streamed into ``defect_cases`` (see ``case_store``).

    Needs jobflow's store exposed: build it with :func:`enumeration_job`.
    """
    location = database_of(CURRENT_JOB.store, "enumerate defects")
    case_set = write_cases(location, CURRENT_JOB.job.uuid,
                           (case for host_id, host in hosts for case in settings.iter_cases(host_id, host)))
    if case_set.count == 0:
        raise DefiNetInputError("enumerate defects: no hosts given, so no defect cases")
    return case_set


def enumeration_job(hosts: list[tuple[str, Structure]], settings: EnumerationSettings) -> Job:
    """The enumeration job of a flow ("enumerate defects", with the store it writes the cases to)."""
    return with_store(enumerate_defects(hosts, settings), "enumerate defects")


@dataclass
class DefiNetPredictMaker(Maker):
    """One job that predicts the relaxed structures of a set of cases in batches (CUDA when available).

    It reads the cases from ``defect_cases`` and writes the predictions to ``defect_predictions``
    ``CHUNK_SIZE`` cases at a time (``workflows.case_store``), so its memory does not grow with the number of cases;
    its output (``PredictionOutput``) is a few hundred bytes whatever that number.
    """

    name: str = "definet predict"
    checkpoint: str | None = None
    device: str = "auto"
    batch_size: int = 32
    companions: list[str] = field(default_factory=list)
    """Further checkpoints: the prediction is the mean of all the models (an ensemble), and each case's
    ``spread`` between them estimates its error."""
    compile: str = "auto"
    """``torch.compile`` the model(s): ``auto`` (for ``COMPILE_AUTO_MIN`` cases or more), ``always``, ``never``."""
    graph_workers: str | int = "auto"
    """Processes that build the defect graphs while the model predicts: a number, or ``auto`` (on CUDA, all allotted
    cores but one, for ``GRAPH_WORKERS_AUTO_MIN`` cases or more; ``definet_core.predict.graph_workers_policy``)."""

    def make(self, cases: CaseSet) -> Job:
        """The prediction job of ``cases``, with the store it reads them from and writes the predictions to."""
        return with_store(self.predict(cases), self.name)

    @job(output_schema=PredictionOutput)
    def predict(self, cases: CaseSet) -> PredictionOutput:
        """Predict every case of the set, a chunk of cases at a time; markers come from each case's pristine cell."""
        from definet_core.checkpoint import resolve_device
        from definet_core.model import compile_policy
        from definet_core.predict import Predictor, graph_workers_policy

        location = database_of(CURRENT_JOB.store, self.name)
        prediction_id = CURRENT_JOB.job.uuid
        graph_workers = graph_workers_policy(self.graph_workers, cases.count, resolve_device(self.device))
        predictor = Predictor(self.checkpoint, self.device, self.batch_size, self.companions,
                              compile_policy(self.compile, cases.count), graph_workers)
        seconds, in_domain = 0.0, 0
        with predictor, tqdm(total=cases.count, desc=self.name, unit="case") as progress:
            for chunk in chunks(read_cases(location, cases)):
                started = time.perf_counter()
                results = predictor.predictions([c.structure for c in chunk], [c.pristine for c in chunk],
                                                np.eye(3, dtype=int), [c.case_id for c in chunk])
                seconds += time.perf_counter() - started
                predicted = [predicted_case(case, result) for case, result in zip(chunk, results, strict=True)]
                write_predictions(location, prediction_id, predicted)
                in_domain += sum(p.in_domain for p in predicted)
                progress.update(len(chunk))
        return PredictionOutput(checkpoint=predictor.checkpoint, companions=predictor.companion_ids,
                                device=str(predictor.device),
                                seconds=seconds, prediction_id=prediction_id, count=cases.count, in_domain=in_domain)


def predicted_case(case: DefectCase, result: Prediction) -> PredictedCase:
    """What the flows keep of one prediction: the structure, how far it moved the atoms, the verdict, the spread."""
    shift = np.linalg.norm(result.structure.cart_coords - case.structure.cart_coords, axis=1)
    return PredictedCase(case_id=case.case_id, structure=result.structure, mean_displacement=float(shift.mean()),
                         in_domain=result.verdict.in_domain, domain_reasons=list(result.verdict.reasons),
                         spread=result.spread)


START_CHOICES = ("auto", "prediction", "unrelaxed")
"""Where relaxations start: ``auto`` = from the prediction where its verdict is in-domain, else unrelaxed."""


def starts_from_prediction(start: str, predicted: PredictedCase) -> bool:
    """Whether the case's main relaxation starts from DefiNet's prediction under the ``start`` policy."""
    if start not in START_CHOICES:
        raise ValueError(f"start {start!r}: expected one of {', '.join(START_CHOICES)}")
    return start == "prediction" or (start == "auto" and predicted.in_domain)


@job
def relax_and_record(cases: CaseSet, prediction: PredictionOutput, relax_maker: Maker, relaxer: str,
                     unrelaxed_start: bool = True, start: str = "auto") -> Response:
    """Dynamic fan-out, then record: per case, one relaxation from the prediction and one from the unrelaxed cell.

    Under ``start`` (``START_CHOICES``) a case whose prediction is not used (out of domain under ``auto``,
    or every case under ``unrelaxed``) is relaxed once, from the unrelaxed cell. ``unrelaxed_start=False``
    drops the comparison relaxations of the cases that start from the prediction. Cases that already
    have a complete document for this relaxer, checkpoint and settings are skipped, so a rerun relaxes
    only what is missing or failed. Replaced by the flow it builds (the record job's output).
    """
    from workflows.store import complete_case_ids

    location = database_of(CURRENT_JOB.store, "relax and record")
    ids = read_case_ids(location, cases)
    done = complete_case_ids(CURRENT_JOB.store, ids, relaxer, prediction.predictor_id, start, unrelaxed_start)
    todo = [case_id for case_id in ids if case_id not in done]
    settings = relaxer_settings(relaxer, relax_maker)
    return fan_out(location, cases, todo, prediction, relax_maker,
                   lambda p: scheduled_starts(start, unrelaxed_start, p),
                   lambda from_p, from_u: record_validation(cases, todo, prediction, from_p, from_u, relaxer, settings,
                                                            start, unrelaxed_start), "relax and record")


def fan_out(location: tuple[str, str], cases: CaseSet, case_ids: list[str], prediction: PredictionOutput,
            relax_maker: Maker, starts: Callable[[PredictedCase], tuple[bool, bool]],
            record: Callable[[list[Any], list[Any]], Job], name: str) -> Response:
    """The fan-out both flows share: relaxation jobs per case, then a record job, replacing the calling job.

    For each of ``case_ids`` (read from the set ``cases`` with their predictions), ``starts(predicted case)``
    says whether to relax from the prediction and from the unrelaxed cell; ``record(outputs from the
    prediction, outputs from the unrelaxed cell)`` (one per case, None where not run) makes the record job,
    which runs even when relaxations fail (their outputs become None) and writes through the exposed store.
    Every job created here inherits the calling job's worker category. With no ``case_ids`` (all done) there
    is nothing to record: the flow's cases and predictions are discarded here and the output is empty.
    """
    if not case_ids:
        discard(location, cases, prediction.prediction_id)
        return Response(output=[])
    jobs: list[Job] = []
    from_prediction, from_unrelaxed = [], []
    for case, predicted in read_cases_with_predictions(location, cases, prediction.prediction_id, case_ids):
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


def scheduled_starts(start: str, unrelaxed_start: bool, predicted: PredictedCase) -> tuple[bool, bool]:
    """(relax from the prediction, relax from the unrelaxed cell) for one case."""
    use_prediction = starts_from_prediction(start, predicted)
    return use_prediction, unrelaxed_start or not use_prediction


class RelaxationError(Exception):
    """A relaxation finished without a usable result (e.g. NaN energies from a force field)."""


def summarize_relaxation(task_doc: Any) -> RelaxationSummary | None:
    """Ionic steps, energy, forces, convergence, wall time and final structure of a relaxation (None if it failed)."""
    if task_doc is None:
        return None
    energy = final_energy(task_doc)
    if not np.isfinite(energy):
        raise RelaxationError(f"non-finite final energy ({energy})")
    return RelaxationSummary(ionic_steps=ionic_steps(task_doc), energy=energy,
                             converged=converged(task_doc), seconds=getattr(task_doc.output, "elapsed_time", None),
                             structure=final_structure(task_doc), forces=final_forces(task_doc))


def site_displacements(a: Structure, b: Structure) -> np.ndarray:
    """Cartesian minimum-image vectors from each site of ``b`` to the same site of ``a`` (same lattice)."""
    delta = a.frac_coords - b.frac_coords
    return (delta - np.rint(delta)) @ a.lattice.matrix


def component_mae(a: Structure, b: Structure) -> float:
    """Mean |dx|,|dy|,|dz| between two structures with the same sites, minimum image."""
    return float(np.abs(site_displacements(a, b)).mean())


def max_site_distance(a: Structure, b: Structure) -> float:
    """Largest minimum-image distance between corresponding sites (A)."""
    return float(np.linalg.norm(site_displacements(a, b), axis=1).max())


def validation_document(case: DefectCase, predicted: PredictedCase, seconds_per_case: float, checkpoint: str,
                        relaxer: str, settings: dict[str, Any], from_prediction: RelaxationSummary | None,
                        from_unrelaxed: RelaxationSummary | None, start: str = "auto", unrelaxed_start: bool = True,
                        errors: list[str] | None = None) -> ValidationDocument:
    """Compare the two relaxations of one case and score the prediction against the reference relaxation.

    ``errors`` lists the relaxations that failed; a document with errors has status ``failed``.
    """
    reference = from_unrelaxed or from_prediction
    doc = ValidationDocument(
        case_id=case.case_id, host_id=case.host_id, checkpoint=checkpoint, relaxer=relaxer,
        start="prediction" if starts_from_prediction(start, predicted) else "unrelaxed", start_policy=start,
        comparison=unrelaxed_start, status="failed" if errors else "complete", errors=errors or [],
        prediction_spread=predicted.spread,
        in_domain=predicted.in_domain, domain_reasons=predicted.domain_reasons,
        relaxer_settings=settings, formula=case.structure.composition.formula, num_atoms=len(case.structure),
        supercell_matrix=case.supercell_matrix, defects=[d.model_dump() for d in case.defects],
        defect_name=case.name, prediction_seconds_per_case=seconds_per_case, definet_version=definet_version())
    if from_prediction is not None:
        doc.steps_from_prediction = from_prediction.ionic_steps
        doc.energy_from_prediction = from_prediction.energy
        doc.converged_from_prediction = from_prediction.converged
        doc.relax_seconds_from_prediction = from_prediction.seconds
        doc.final_structure_from_prediction = from_prediction.structure.as_dict()
    if from_unrelaxed is not None:
        doc.steps_from_unrelaxed = from_unrelaxed.ionic_steps
        doc.energy_from_unrelaxed = from_unrelaxed.energy
        doc.converged_from_unrelaxed = from_unrelaxed.converged
        doc.relax_seconds_from_unrelaxed = from_unrelaxed.seconds
    if from_prediction is not None and from_unrelaxed is not None:
        doc.energy_difference = from_prediction.energy - from_unrelaxed.energy
        doc.max_final_displacement = max_site_distance(from_prediction.structure, from_unrelaxed.structure)
        doc.same_minimum = bool(abs(doc.energy_difference) < SAME_MINIMUM_ENERGY_EV
                                and doc.max_final_displacement < SAME_MINIMUM_DISPLACEMENT_A)
    if reference is not None:
        doc.prediction_mae = component_mae(predicted.structure, reference.structure)
        doc.unrelaxed_mae = component_mae(case.structure, reference.structure)
        doc.mae_reference = "unrelaxed" if from_unrelaxed is not None else "prediction"
    return doc


def relaxation_summaries(outputs: tuple[Any, Any],
                         wanted: tuple[bool, bool]) -> tuple[list[RelaxationSummary | None], list[str]]:
    """Summaries of a case's two relaxations and an error line for each one that was run but failed."""
    summaries, errors = [], []
    for label, output, was_run in zip(("prediction", "unrelaxed cell"), outputs, wanted, strict=True):
        summary = None
        if was_run and output is None:
            errors.append(f"relaxation from the {label} failed: its job gave no output (the job log or the "
                          "FireWorks launch holds the traceback)")
        elif output is not None:
            try:
                summary = summarize_relaxation(output)
            except RelaxationError as exc:
                errors.append(f"relaxation from the {label} failed: {exc}")
        summaries.append(summary)
    return summaries, errors


@job(data=True)
def record_validation(cases: CaseSet, case_ids: list[str], prediction: PredictionOutput, from_prediction: list[Any],
                      from_unrelaxed: list[Any], relaxer: str, settings: dict[str, Any], start: str = "auto",
                      unrelaxed_start: bool = True) -> list[dict[str, Any]]:
    """One validation document per case of ``case_ids`` (failed relaxations included, with their errors),
    upserted into the ``validation`` collection beside the JobStore; then the flow's cases and predictions,
    which the documents now hold, are deleted (``case_store.discard``)."""
    from workflows.store import upsert_validation_documents

    location = database_of(CURRENT_JOB.store, "record validation")
    pairs = read_cases_with_predictions(location, cases, prediction.prediction_id, case_ids)
    per_case = prediction.seconds / max(prediction.count, 1)
    docs = []
    for (case, predicted), p, u in zip(pairs, from_prediction, from_unrelaxed, strict=True):
        (from_p, from_u), errors = relaxation_summaries((p, u), scheduled_starts(start, unrelaxed_start, predicted))
        docs.append(validation_document(case, predicted, per_case, prediction.predictor_id, relaxer,
                                        settings, from_p, from_u, start, unrelaxed_start, errors).model_dump())
    upsert_validation_documents(CURRENT_JOB.store, docs)
    discard(location, cases, prediction.prediction_id)
    return docs


def definet_version() -> str:
    """The installed definet package's version ("unknown" when it is not installed)."""
    return package_version("definet") or "unknown"
