"""The one batched DefiNet job of every flow: all cases predicted in chunks, each with a verdict and, for an
ensemble, a spread."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from jobflow import CURRENT_JOB, Job, Maker, job
from tqdm import tqdm

from workflows.defects.enumeration import DefectCase
from workflows.jobs.enumerate import with_store
from workflows.schemas.prediction import PredictedCase, PredictionJobOutput
from workflows.storage.cases import CaseSet, chunks, database_of, read_cases, write_predictions

if TYPE_CHECKING:
    from definet_core.predict import Prediction


@dataclass
class DefiNetPredictMaker(Maker):
    """One job that predicts the relaxed structures of a set of cases in batches (CUDA when available).

    It reads the cases from ``defect_cases`` and writes the predictions to ``defect_predictions``
    ``CHUNK_SIZE`` cases at a time (``workflows.storage.cases``), so its memory does not grow with the number of cases;
    its output (``PredictionJobOutput``) is a few hundred bytes whatever that number.
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

    @job(output_schema=PredictionJobOutput)
    def predict(self, cases: CaseSet) -> PredictionJobOutput:
        """Predict every case of the set, a chunk of cases at a time; markers come from each case's pristine cell."""
        from definet_core.predict import Predictor

        location = database_of(CURRENT_JOB.store, self.name)
        prediction_id = CURRENT_JOB.job.uuid
        predictor = Predictor.for_count(cases.count, self.checkpoint, self.device, self.batch_size, self.companions,
                                        self.compile, self.graph_workers)
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
        return PredictionJobOutput(checkpoint=predictor.checkpoint, companions=predictor.companion_ids,
                                device=str(predictor.device),
                                seconds=seconds, prediction_id=prediction_id, count=cases.count, in_domain=in_domain)


def predicted_case(case: DefectCase, result: Prediction) -> PredictedCase:
    """What the flows keep of one prediction: the structure, how far it moved the atoms, the verdict, the spread."""
    shift = np.linalg.norm(result.structure.cart_coords - case.structure.cart_coords, axis=1)
    return PredictedCase(case_id=case.case_id, structure=result.structure, mean_displacement=float(shift.mean()),
                         in_domain=result.verdict.in_domain, domain_reasons=list(result.verdict.reasons),
                         spread=result.spread)
