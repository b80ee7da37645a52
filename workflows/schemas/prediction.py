"""What the batched prediction job produces: one stored prediction per case, and the job's output."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure


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


class PredictionJobOutput(BaseModel):
    """Output of the batched prediction job; the predictions themselves are in ``defect_predictions``
    under ``prediction_id`` (``workflows.storage.cases.read_predictions``)."""

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

    @property
    def seconds_per_case(self) -> float:
        """Prediction wall time per case (s)."""
        return self.seconds / max(self.count, 1)
