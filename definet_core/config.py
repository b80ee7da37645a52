"""Model and graph configuration, stored inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a DefiNet model and of the graph it reads.

    ``radius`` and ``max_neighbors`` define the periodic radius graph; ``radius`` is also the
    cutoff of the radial basis. The reference DefiNet uses hidden=512, layers=4, radius=6, 50
    neighbours (about 29 M parameters); the shipped checkpoint is sized for a 2-core CPU.
    """

    hidden: int = 64
    layers: int = 4
    num_rbf: int = 32
    radius: float = 6.0
    max_neighbors: int = 50
    num_elements: int = 100
    num_markers: int = 4
    aggregation_norm: float = 16.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and logs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, ignoring unknown keys so old checkpoints keep loading."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
