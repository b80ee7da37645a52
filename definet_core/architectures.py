"""The one place a model is built from its configuration (``ModelConfig.arch`` picks the architecture), and
its weights re-cut for a smaller radial basis."""

from __future__ import annotations

from dataclasses import replace

import torch

from definet_core.config import ARCHS, ModelConfig
from definet_core.model import DefiNet
from definet_core.reference_model import ReferenceDefiNet, radial_features

Model = DefiNet | ReferenceDefiNet
"""Either architecture: ``forward(batch) -> positions (N, 3)``, ``num_parameters()``, ``config``."""

_CLASSES = {"definet": DefiNet, "reference": ReferenceDefiNet}
assert set(_CLASSES) == set(ARCHS)


def build_model(config: ModelConfig) -> Model:
    """A freshly initialised model of ``config.arch`` (``definet``: ours, ``reference``: the paper's; ``ModelConfig``
    refuses any other)."""
    return _CLASSES[config.arch](config)


def prune_gaussians(config: ModelConfig, state: dict[str, torch.Tensor],
                    reach: float) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The config and weights of a model that evaluates only the Gaussians that matter up to ``reach`` (A): the
    same function on edges up to ``reach`` (``reference_model.radial_features``) at a fraction of the cost, since
    every layer's filter and edge term multiply the basis by a (features x ``num_rbf``) matrix. Each tensor whose
    last axis runs over the Gaussians keeps its first entries: those matrices' columns and the basis's centres.
    A model without Gaussians, or already pruned, comes back as it is."""
    if not config.gaussian_basis or config.gaussian_reach:
        return config, state
    pruned = replace(config, gaussian_reach=reach)
    kept = radial_features(pruned)
    target = build_model(pruned).state_dict()
    state = dict(state)
    for name, tensor in target.items():
        if tensor.shape != state[name].shape:
            if tensor.shape[:-1] != state[name].shape[:-1] or state[name].shape[-1] != config.num_rbf:
                raise ValueError(f"prune_gaussians: {name} is {tuple(state[name].shape)}, not over the "
                                 f"{config.num_rbf} Gaussians")
            state[name] = state[name][..., :kept]
    return pruned, state
