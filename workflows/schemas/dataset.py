"""The dataset document: one generated structure of a recipe, relaxed once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from definet_core.metrics import component_mae
from workflows.defects.enumeration import DefectCase
from workflows.defects.recipes import Recipe
from workflows.schemas.prediction import PredictedCase, PredictionJobOutput
from workflows.schemas.relaxation import RelaxationSummary
from workflows.starts import main_start, starts_from_prediction
from workflows.versions import definet_version


class DatasetDocument(BaseModel):
    """One generated structure of a dataset recipe, relaxed once (from DefiNet's prediction or the unrelaxed cell).

    Unique on (recipe, structure_id, relaxer, start), where ``start`` is where the relaxation really started
    (``start_policy`` chose it; ``domain_reasons`` say why a prediction was not used). A failed relaxation is
    stored with ``status`` failed and its ``errors``; unconverged relaxations with ``converged`` False.
    """

    recipe: str
    recipe_hash: str = Field(description="content hash of the recipe's generation fields")
    structure_id: str
    host_id: str
    supercell_matrix: list[list[int]]
    defects: list[dict[str, Any]]
    defect_name: str
    formula: str
    num_atoms: int
    relaxer: str
    relaxer_settings: dict[str, Any]
    start: str = Field(description="prediction or unrelaxed: where the relaxation started")
    start_policy: str = Field("prediction", description="the flow's --start: auto, prediction or unrelaxed")
    checkpoint: str | None = Field(None, description="the checkpoint that predicted the start (start prediction)")
    in_domain: bool | None = None
    domain_reasons: list[str] = Field(default_factory=list, description="why the prediction is out of domain")
    status: str = Field("complete", description="complete, or failed (see errors)")
    errors: list[str] = Field(default_factory=list)
    unrelaxed_structure: dict[str, Any]
    start_structure: dict[str, Any] | None = Field(None, description="the prediction, when it was the start")
    relaxed_structure: dict[str, Any] | None = None
    ionic_steps: int | None = None
    energy: float | None = Field(None, description="final total energy (eV)")
    forces: list[list[float]] | None = Field(None, description="final forces (eV/A)")
    max_force: float | None = Field(None, description="largest final force norm (eV/A)")
    converged: bool | None = None
    relax_seconds: float | None = None
    prediction_seconds_per_structure: float | None = None
    prediction_mae: float | None = Field(None, description="mean |dx|,|dy|,|dz| of the prediction vs relaxed (A)")
    unrelaxed_mae: float | None = Field(None, description="the same for the unrelaxed structure (A)")
    prediction_spread: float | None = Field(
        None, description="spread between the ensemble members' predictions (A), when companions were given")
    selection: str = Field("first", description="first: among the recipe's first structures; spread: chosen "
                                                 "from the generated pool for the largest prediction_spread")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    definet_version: str = Field(default_factory=definet_version)

    @classmethod
    def from_relaxation(cls, recipe: Recipe, case: DefectCase, predicted: PredictedCase,
                        prediction_job: PredictionJobOutput, relaxer: str, settings: dict[str, Any], start_policy: str,
                        relaxation: RelaxationSummary | None, errors: list[str],
                        selection: str = "first") -> DatasetDocument:
        """The document of one structure: what was generated, where its relaxation started (as ``start_policy``
        decides from the verdict), and what came out (``relaxation``; None when it failed, with ``errors``)."""
        from_prediction = starts_from_prediction(start_policy, predicted.in_domain)
        doc = cls(
            recipe=recipe.name, recipe_hash=recipe.content_hash, structure_id=case.case_id, host_id=case.host_id,
            supercell_matrix=case.supercell_matrix, defects=[d.model_dump() for d in case.defects],
            defect_name=case.name, formula=case.structure.composition.formula, num_atoms=len(case.structure),
            relaxer=relaxer, relaxer_settings=settings, start=main_start(start_policy, predicted.in_domain),
            start_policy=start_policy, checkpoint=prediction_job.predictor_id if from_prediction else None,
            in_domain=predicted.in_domain, domain_reasons=predicted.domain_reasons,
            status="failed" if errors or relaxation is None else "complete", errors=errors,
            unrelaxed_structure=case.structure.as_dict(),
            start_structure=predicted.structure.as_dict() if from_prediction else None,
            prediction_seconds_per_structure=prediction_job.seconds_per_case if from_prediction else None,
            prediction_spread=predicted.spread, selection=selection)
        if relaxation is not None:
            doc.relaxed_structure = relaxation.structure.as_dict()
            doc.ionic_steps, doc.energy, doc.converged = relaxation.ionic_steps, relaxation.energy, relaxation.converged
            doc.relax_seconds, doc.forces, doc.max_force = relaxation.seconds, relaxation.forces, relaxation.max_force
            doc.prediction_mae = component_mae(predicted.structure, relaxation.structure)
            doc.unrelaxed_mae = component_mae(case.structure, relaxation.structure)
        return doc
