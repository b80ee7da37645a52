"""Saving and loading DefiNet checkpoints (weights plus the configuration that built them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from definet_core.config import ModelConfig
from definet_core.errors import DefiNetInputError
from definet_core.model import DefiNet

FORMAT = "definet-checkpoint"
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "definet_2d.pt"
"""The pretrained checkpoint shipped in the package and loaded by default."""


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DefiNetInputError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def save_checkpoint(path: str | Path, model: DefiNet, trained_elements: list[int],
                    metadata: dict[str, Any] | None = None, half: bool = False) -> None:
    """Write weights, configuration, the elements seen in training and free-form metadata.

    ``half`` stores the trainable parameters in float16 (buffers stay float32); loading upcasts them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parameters = {name for name, _ in model.named_parameters()}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if k in parameters and v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "version": 1,
        "config": model.config.to_dict(),
        "state_dict": state,
        "weights_dtype": "float16" if half else "float32",
        "trained_elements": sorted(int(z) for z in trained_elements),
        "metadata": metadata or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path | None = None) -> dict[str, Any]:
    """The raw checkpoint payload; ``None`` means the shipped checkpoint."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    if not path.is_file():
        raise DefiNetInputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DefiNetInputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DefiNetInputError(f"{path}: not a DefiNet checkpoint")
    return payload


def float32_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's weights in float32 (half-precision checkpoints are upcast)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[DefiNet, dict[str, Any]]:
    """Model in eval mode on ``device`` and its checkpoint payload (config, elements, metadata)."""
    payload = read_checkpoint(path)
    model = DefiNet(ModelConfig.from_dict(payload["config"]))
    model.load_state_dict(float32_state(payload))
    model.eval()
    return model.to(device), payload
