"""Model and graph configuration, stored inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from definet_core.errors import DefiNetInputError

ARCHS = ("definet", "reference")
"""``ModelConfig.arch``: ``definet`` is ours (``model.DefiNet``), ``reference`` the paper's network
(``reference_model.ReferenceDefiNet``)."""
RADIAL_BASES = ("bessel", "gaussian")
"""``ModelConfig.radial_basis`` of ours (the reference always has its Gaussians)."""
SCALAR_UPDATES = ("painn", "reference")
"""``ModelConfig.scalar_update`` of ours (the reference always has its own)."""


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
    radial_basis: str = field(default="bessel", metadata={"choices": RADIAL_BASES})
    """Ours only: ``bessel``, sin(n pi d / radius) / d with a cosine envelope, or ``gaussian``, the reference's
    Gaussians on d / 30 A with a polynomial envelope (``reference_model.GaussianBasis``). Checkpoints without
    the field load with bessel."""
    scalar_update: str = field(default="painn", metadata={"choices": SCALAR_UPDATES})
    """Ours only: ``painn`` adds the dot product of the two vector maps to the scalars and ends in a LayerNorm;
    ``reference`` has neither: s = (s + c2 / sqrt 2 + s tanh c3) / sqrt 2, as the reference's update.
    Checkpoints without the field load with painn."""
    gaussian_reach: float = 0.0
    """Gaussian bases only (ours with ``radial_basis="gaussian"``, and the reference): 0 evaluates all ``num_rbf``
    Gaussians; a distance (A) evaluates only those centred within it plus six widths (0.24 A each at 128), the
    others being below exp(-18) on every edge up to it (``reference_model.radial_features``). Prediction sets
    it on a model stored with 0 (``checkpoint.model_of``); a model trained with it (``definet train
    --gaussian-reach``) keeps its own. Checkpoints without the field load with 0."""

    @property
    def gaussian_basis(self) -> bool:
        """Whether the radial basis is the reference's Gaussians (always for the reference architecture)."""
        return self.arch == "reference" or self.radial_basis == "gaussian"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise DefiNetInputError(f"model arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        ours_only = {"element_features": False, "radial_basis": "bessel", "scalar_update": "painn"}
        for name, default in ours_only.items():
            if self.arch != "definet" and getattr(self, name) != default:
                raise DefiNetInputError(f"--{name.replace('_', '-')}: not available for the {self.arch} architecture")
        for name, allowed in (("radial_basis", RADIAL_BASES), ("scalar_update", SCALAR_UPDATES)):
            if getattr(self, name) not in allowed:
                raise DefiNetInputError(f"model {name} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.gaussian_reach and not self.gaussian_basis:
            raise DefiNetInputError(f"gaussian_reach {self.gaussian_reach}: the model has no Gaussian radial basis")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and logs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, ignoring unknown keys so old checkpoints keep loading."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
