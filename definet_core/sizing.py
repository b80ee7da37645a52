"""Choosing a model size and precision for a time-budgeted training run by timing real training steps."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
from torch_geometric.data import Batch, Data

from definet_core.architectures import build_model
from definet_core.config import ModelConfig
from definet_core.train import TrainConfig, TrainingRun


@dataclass(frozen=True)
class SizeTiming:
    """Measured cost of one training step of one model size at one precision."""

    hidden: int
    precision: str
    parameters: int
    seconds_per_step: float
    epochs_in_budget: float

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain dict for logs."""
        return {"hidden": self.hidden, "precision": self.precision, "parameters": self.parameters,
                "seconds_per_step": round(self.seconds_per_step, 5),
                "epochs_in_budget": round(self.epochs_in_budget, 1)}


def time_training_step(model_config: ModelConfig, batch: Batch, device: torch.device, precision: str,
                       steps: int = 8, warmup: int = 3) -> float:
    """Mean wall time (s) of a whole training step on ``batch`` (on ``device``): forward, loss, backward,
    clipping, AdamW and EMA, as ``definet_core.train`` runs it."""
    run = TrainingRun(model_config, TrainConfig(), device)
    for _ in range(warmup):
        run.step_on(batch, precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        run.step_on(batch, precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps


def choose_model_size(base: ModelConfig, hidden_candidates: list[int], graphs: list[Data], batch_size: int,
                      device: torch.device, precisions: list[str], budget_minutes: float,
                      min_epochs: float) -> tuple[ModelConfig, str, list[SizeTiming]]:
    """The largest ``hidden`` (at its fastest precision) that trains ``min_epochs`` epochs of ``graphs`` in the budget.

    Falls back to the smallest candidate when none does. Returns (config, precision, all timings).
    """
    sample = graphs[:: max(1, len(graphs) // batch_size)][:batch_size]  # spread over materials
    batch = Batch.from_data_list(sample).to(device)
    steps_per_epoch = math.ceil(len(graphs) / batch_size)
    timings = []
    for hidden in sorted(hidden_candidates):
        config = replace(base, hidden=hidden)
        parameters = build_model(config).num_parameters()
        for precision in precisions:
            seconds = time_training_step(config, batch, device, precision)
            epochs = 60.0 * budget_minutes / (seconds * steps_per_epoch)
            timings.append(SizeTiming(hidden, precision, parameters, seconds, epochs))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    fastest = {}
    for timing in timings:
        if timing.hidden not in fastest or timing.seconds_per_step < fastest[timing.hidden].seconds_per_step:
            fastest[timing.hidden] = timing
    fitting = [t for t in fastest.values() if t.epochs_in_budget >= min_epochs]
    chosen = max(fitting, key=lambda t: t.hidden) if fitting else fastest[min(fastest)]
    return replace(base, hidden=chosen.hidden), chosen.precision, timings
