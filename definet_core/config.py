"""Model and graph configuration, stored inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from definet_core.errors import DefiNetInputError

ARCHS = ("definet", "reference")
"""``ModelConfig.arch``: ``definet`` is ours (``model.DefiNet``), ``reference`` the paper's network
(``reference_model.ReferenceDefiNet``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a DefiNet model and of the graph it reads.

    ``radius`` and ``max_neighbors`` define the periodic radius graph; ``radius`` is also the
    cutoff of the radial basis (of ours; the reference's Gaussians span 30 A). The reference DefiNet
    (``arch="reference"``) uses hidden=512, layers=4, num_rbf=128, radius=6, 50 neighbours; the shipped
    checkpoint is sized for a 2-core CPU. A str field's ``metadata["choices"]`` lists its values
    (the train CLI offers them).
    """

    hidden: int = 64
    layers: int = 4
    num_rbf: int = 32
    radius: float = 6.0
    max_neighbors: int = 50
    num_elements: int = 100
    num_markers: int = 4
    aggregation_norm: float = 16.0
    vector_clip: float = 100.0
    """Ours: the largest norm a node's vector feature channel keeps at the end of a layer (0 or inf: none); a graph
    whose channels exceeded it has its displacements divided by the largest excess. On the 2D training and val
    data the shipped models reach at most 35; ``model.py`` says why a bound is needed."""
    displacement_clip: float = 6.0
    """Ours: the farthest (A) a node may move from its input position (0 or inf: none); the shipped models move
    atoms at most 3.7 A on the 2D data, whose largest DFT displacement is 4.1 A."""
    element_features: bool = False
    """Ours: add a projection of fixed periodic-table features to the node scalars (``definet_core.elements``)
    and start the learned element embedding at zero. Checkpoints without the field load with False."""
    arch: str = field(default="definet", metadata={"choices": ARCHS})
    edge_displacement: bool = False
    """Ours only: add the reference's per-edge radial displacement B, the coordinate step becoming (A + B) / 2."""
    vector_activation: bool = False
    """Ours only: pass each layer's summed vector messages and its vector update through the reference's vector
    leaky-ReLU (``reference_model.VectorActivation``). Checkpoints without the field load with False."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise DefiNetInputError(f"model arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        if self.element_features and self.arch != "definet":
            raise DefiNetInputError(f"--element-features: not available for the {self.arch} architecture")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and logs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, ignoring unknown keys so old checkpoints keep loading."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
