"""Pydantic output documents of the defect validation flow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

SAME_MINIMUM_ENERGY_EV = 0.01
"""Two relaxations reached the same minimum when their final energies differ by less than this..."""
SAME_MINIMUM_DISPLACEMENT_A = 0.1
"""...and no atom of one final structure is further than this from its partner in the other."""


class PredictedCase(BaseModel):
    """DefiNet's prediction for one defect case."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    case_id: str
    structure: Structure = Field(description="predicted relaxed structure, input site order")
    mean_displacement: float = Field(description="mean |predicted - unrelaxed| per atom (A)")
    in_domain: bool = Field(description="the checkpoint vouches for this prediction (definet_core.applicability)")
    domain_reasons: list[str] = Field(default_factory=list, description="why it is out of domain")
    spread: float | None = Field(None, description="mean |dx|,|dy|,|dz| between the ensemble members' "
                                                   "predictions (A, averaged over pairs): an error estimate")


class PredictionOutput(BaseModel):
    """Output of the batched prediction job; the predictions themselves are in ``defect_predictions``
    under ``prediction_id`` (``workflows.case_store.read_predictions``)."""

    checkpoint: str
    companions: list[str] = Field(default_factory=list,
                                  description="the further checkpoints averaged with ``checkpoint`` (an ensemble)")
    device: str
    seconds: float = Field(description="wall time of graph construction and inference for all cases")
    prediction_id: str = Field(description="uuid of the prediction job, the key of its stored predictions")
    count: int = Field(description="number of cases predicted")
    in_domain: int = Field(description="number of predictions whose verdict is in-domain")

    @property
    def predictor_id(self) -> str:
        """What the documents record as their checkpoint: its id, or ``first+second+...`` for an ensemble, so
        an ensemble's documents never overwrite or stand in for a single model's."""
        return "+".join([self.checkpoint, *self.companions])


class RelaxationSummary(BaseModel):
    """What the validation document keeps of one atomate2 relaxation."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ionic_steps: int = Field(description="force evaluations, the start included (see workflows.relaxers)")
    energy: float = Field(description="final total energy (eV)")
    converged: bool | None = None
    seconds: float | None = None
    structure: Structure
    forces: list[list[float]] | None = Field(None, description="final forces (eV/A), when the relaxer reports them")


class ValidationDocument(BaseModel):
    """One defect case relaxed by one relaxer, from DefiNet's prediction and from the unrelaxed cell.

    Unique on (case_id, relaxer, checkpoint, start_policy, comparison): runs under other start policies keep
    their own documents.
    """

    case_id: str
    host_id: str
    checkpoint: str = Field(description="id of the predicting checkpoint, ``first+second+...`` for an ensemble "
                                        "(``PredictionOutput.predictor_id``)")
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
    definet_version: str = ""


class DatasetDocument(BaseModel):
    """One generated structure of a dataset recipe, relaxed once (from DefiNet's prediction or the unrelaxed cell).

    Unique on (recipe, structure_id, relaxer, start). A failed relaxation is stored with ``status`` failed
    and its ``errors``; unconverged relaxations are stored with ``converged`` False.
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
    checkpoint: str | None = Field(None, description="the checkpoint that predicted the start (start prediction)")
    in_domain: bool | None = None
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
    definet_version: str = ""
