"""Weight averaging of checkpoints of one network (a "model soup"): one model's cost at prediction time.

Runs fine-tuned from the same start with different recipes (or seeds) lie in one basin of the loss, so the mean
of their weights predicts about as their ensemble would (Wortsman et al. 2022, "Model soups"); runs trained
from different starts do not, and their average is no model at all. Nothing here can tell the two apart:
``definet average --data`` validates the average against its members.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from definet_core.checkpoint import float32_state, read_checkpoint
from definet_core.config import ModelConfig
from definet_core.dataset import load_dataset
from definet_core.errors import DefiNetInputError
from definet_core.train import unrelaxed_mae, val_ratios, validation_mae

MEMBER_METADATA = ("epoch", "step", "val_mae", "val_ratio", "init", "train_structures")
"""What the averaged checkpoint keeps of each member's metadata (under ``metadata["average_of"]``)."""


def average_payload(specs: Sequence[str | Path], ids: Sequence[str]) -> dict[str, Any]:
    """A checkpoint payload whose weights are the mean of the checkpoints ``specs`` (files or packaged names;
    ``ids`` name them in the metadata). They must share the configuration, the trained elements and the
    applicability domain; a one-line error names the first that does not. Integer buffers must be equal."""
    if len(specs) < 2:
        raise DefiNetInputError(f"{', '.join(map(str, specs)) or 'no checkpoint'}: averaging needs two or more")
    payloads = [read_checkpoint(spec) for spec in specs]
    first = payloads[0]
    for spec, payload in zip(specs[1:], payloads[1:], strict=True):
        for key in ("config", "trained_elements", "domain"):
            if _as_read(payload, key) != _as_read(first, key):
                raise DefiNetInputError(f"{spec}: its {key.replace('_', ' ')} differs from {specs[0]}'s; only "
                                        "checkpoints of one network and one training set can be averaged")
    states = [float32_state(payload) for payload in payloads]
    averaged = {}
    for name, tensor in states[0].items():
        if tensor.is_floating_point():
            averaged[name] = torch.stack([state[name] for state in states]).mean(dim=0)
        elif all(torch.equal(state[name], tensor) for state in states):
            averaged[name] = tensor
        else:
            raise DefiNetInputError(f"{specs[0]}: its buffer {name} differs between the checkpoints")
    members = [{"checkpoint": id_, **{k: payload["metadata"].get(k) for k in MEMBER_METADATA}}
               for id_, payload in zip(ids, payloads, strict=True)]
    return {**first, "state_dict": averaged, "weights_dtype": "float32",
            "metadata": {"average_of": members}}


def _as_read(payload: dict[str, Any], key: str) -> Any:
    """A payload entry as this version reads it: a configuration with the defaults of fields added since filled."""
    return ModelConfig.from_dict(payload[key]) if key == "config" else payload[key]


def val_scores(model: torch.nn.Module, data_roots: Sequence[str | Path], batch_size: int = 16
               ) -> tuple[dict[str, float], dict[str, float]]:
    """Val MAE and val ratio (val MAE / unrelaxed MAE) per val set below ``data_roots``, as training logs them."""
    config = model.config
    sets = load_dataset(data_roots, "val", config.radius, config.max_neighbors)
    device = next(model.parameters()).device
    val = {key: validation_mae(model, graphs, device, batch_size) for key, graphs in sets.items()}
    unrelaxed = {key: unrelaxed_mae(graphs, device, batch_size) for key, graphs in sets.items()}
    return val, val_ratios(val, unrelaxed)
