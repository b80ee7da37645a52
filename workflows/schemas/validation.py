"""The validation document: one defect case relaxed by one relaxer from DefiNet's prediction and, for
comparison, from the unrelaxed cell."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from definet_core.metrics import component_mae, max_site_distance
from workflows.defects.enumeration import DefectCase
from workflows.schemas.prediction import PredictedCase, PredictionJobOutput
from workflows.schemas.relaxation import RelaxationSummary
from workflows.starts import main_start
from workflows.versions import definet_version

SAME_MINIMUM_ENERGY_EV = 0.01
"""Two relaxations reached the same minimum when their final energies differ by less than this..."""
SAME_MINIMUM_DISPLACEMENT_A = 0.1
"""...and no atom of one final structure is further than this from its partner in the other."""


class ValidationDocument(BaseModel):
    """One defect case relaxed by one relaxer, from DefiNet's prediction and from the unrelaxed cell.

    Unique on (case_id, relaxer, checkpoint, start_policy, comparison): runs under other start policies keep
    their own documents.
    """

    case_id: str
    host_id: str
    checkpoint: str = Field(description="id of the predicting checkpoint, ``first+second+...`` for an ensemble "
                                        "(``PredictionJobOutput.predictor_id``)")
    relaxer: str
    relaxer_settings: dict[str, Any]
    start: str = Field(description="where the main relaxation started: prediction or unrelaxed")
    start_policy: str = Field("auto", description="the flow's --start: auto, prediction or unrelaxed")
    comparison: bool = Field(True, description="whether in-domain cases were also relaxed from the unrelaxed cell")
    status: str = Field("complete", description="complete, or failed when a relaxation failed (see errors)")
    errors: list[str] = Field(default_factory=list, description="one line per failed relaxation")
    in_domain: bool = Field(description="the checkpoint's verdict on its prediction of this case")
    domain_reasons: list[str] = Field(default_factory=list, description="why the prediction is out of domain")
    formula: str
    num_atoms: int
    supercell_matrix: list[list[int]]
    defects: list[dict[str, Any]]
    defect_name: str
    steps_from_prediction: int | None = None
    steps_from_unrelaxed: int | None = None
    energy_from_prediction: float | None = None
    energy_from_unrelaxed: float | None = None
    converged_from_prediction: bool | None = None
    converged_from_unrelaxed: bool | None = None
    energy_difference: float | None = Field(None, description="E(from prediction) - E(from unrelaxed), eV")
    max_final_displacement: float | None = Field(None, description="largest distance between the two finals (A)")
    same_minimum: bool | None = None
    prediction_mae: float | None = Field(
        None, description="mean |dx|,|dy|,|dz| of the prediction against the reference relaxed structure (A)")
    unrelaxed_mae: float | None = Field(None, description="the same for the unrelaxed input (the dummy model)")
    prediction_spread: float | None = Field(
        None, description="spread between the ensemble members' predictions (A), an estimate of prediction_mae")
    mae_reference: str | None = Field(None, description="which relaxation is the reference: unrelaxed or prediction")
    prediction_seconds_per_case: float | None = None
    relax_seconds_from_prediction: float | None = None
    relax_seconds_from_unrelaxed: float | None = None
    final_structure_from_prediction: dict[str, Any] | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    definet_version: str = Field(default_factory=definet_version)

    @classmethod
    def from_relaxations(cls, case: DefectCase, predicted: PredictedCase, prediction_job: PredictionJobOutput,
                         relaxer: str, settings: dict[str, Any], start_policy: str, comparison: bool,
                         from_prediction: RelaxationSummary | None, from_unrelaxed: RelaxationSummary | None,
                         errors: list[str]) -> ValidationDocument:
        """Compare the two relaxations of one case (None where not run or failed) and score the prediction against
        the reference relaxation: the one from the unrelaxed cell, else the one from the prediction.

        ``errors`` lists the relaxations that failed; a document with errors has status ``failed``.
        """
        reference = from_unrelaxed or from_prediction
        doc = cls(
            case_id=case.case_id, host_id=case.host_id, checkpoint=prediction_job.predictor_id, relaxer=relaxer,
            start=main_start(start_policy, predicted.in_domain),
            start_policy=start_policy, comparison=comparison, status="failed" if errors else "complete",
            errors=errors, prediction_spread=predicted.spread, in_domain=predicted.in_domain,
            domain_reasons=predicted.domain_reasons, relaxer_settings=settings,
            formula=case.structure.composition.formula, num_atoms=len(case.structure),
            supercell_matrix=case.supercell_matrix, defects=[d.model_dump() for d in case.defects],
            defect_name=case.name, prediction_seconds_per_case=prediction_job.seconds_per_case)
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
