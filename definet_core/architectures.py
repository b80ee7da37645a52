"""The one place a model is built from its configuration: ``ModelConfig.arch`` picks the architecture."""

from __future__ import annotations

from definet_core.config import ARCHS, ModelConfig
from definet_core.model import DefiNet
from definet_core.reference_model import ReferenceDefiNet

Model = DefiNet | ReferenceDefiNet
"""Either architecture: ``forward(batch) -> positions (N, 3)``, ``num_parameters()``, ``config``."""

_CLASSES = {"definet": DefiNet, "reference": ReferenceDefiNet}
assert set(_CLASSES) == set(ARCHS)


def build_model(config: ModelConfig) -> Model:
    """A freshly initialised model of ``config.arch`` (``definet``: ours, ``reference``: the paper's; ``ModelConfig``
    refuses any other)."""
    return _CLASSES[config.arch](config)
