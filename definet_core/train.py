"""Training: AdamW, EMA weights, plateau or warm-up + cosine schedule, clipping, early stopping, resumable.

Runs on the CPU or a GPU. On a GPU the whole training set is moved to the device once, matrix work
can run under bf16 autocast, and a wall-clock budget (``time_budget_min``) stops the run cleanly
after a final validation. The best EMA weights are written whenever validation improves, and the
resumable state at every epoch end and every ``checkpoint_every_min`` minutes inside an epoch, so a
killed run keeps its best model and resumes close to where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from definet_core.applicability import domain_of
from definet_core.architectures import build_model, prune_gaussians
from definet_core.checkpoint import float32_state, read_checkpoint, resolve_device, save_checkpoint, stored_domain
from definet_core.config import ModelConfig
from definet_core.elements import add_element_features
from definet_core.errors import DefiNetInputError, TrainingDivergedError
from definet_core.io import save_atomically
from definet_core.markers import atom_mask
from definet_core.model import CompiledForward, add_edge_displacement

SCHEDULES = ("plateau", "cosine")
LOSS_READ_EVERY = 25
"""Training steps between reads of the loss for the progress bar (each read waits for the GPU)."""
PRECISIONS = ("auto", "fp32", "bf16")
LOSS_BALANCES = ("none", "material")
LOSSES = ("distance", "component-l1")
SELECTIONS = ("mae", "ratio")


@dataclass
class TrainConfig:
    """Optimiser and schedule settings of a training run (saved in its state and log)."""

    epochs: int = 100
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-6
    amsgrad: bool = False
    ema_decay: float = 0.999
    grad_clip: float = 10.0
    schedule: str = "plateau"
    """``plateau``: halve on a val plateau; ``cosine``: linear warm-up, then cosine decay to ``min_lr``."""
    warmup_steps: int = 0
    lr_patience: int = 2
    lr_factor: float = 0.5
    lr_threshold: float = 0.01
    """An epoch improves on the best val MAE only by more than this fraction of it (plateau detection)."""
    min_lr: float = 1e-5
    early_stop_patience: int = 8
    loss: str = "distance"
    """Per-atom error that the loss averages (``position_loss``): ``distance``, the Euclidean distance to the DFT
    position (the paper's); ``component-l1``, the mean of |dx|, |dy|, |dz| (what the MAE metrics score)."""
    loss_balance: str = "none"
    """``material``: weight each structure by 1 / its material's mean DFT displacement (see ``material_weights``)."""
    select_on: str = "mae"
    """What picks the best epoch and drives the plateau schedule and early stopping: ``mae``, the mean val MAE
    over the val sets; ``ratio``, the mean over the val sets of val MAE / unrelaxed MAE (``val_ratios``), which
    counts each set relative to how far its atoms move, as the val ratio scores (the mean MAE is dominated by
    the sets that move most)."""
    precision: str = "auto"
    """``bf16`` autocast on CUDA; ``auto`` = bf16 where CUDA supports it, else fp32. The CPU always runs fp32."""
    time_budget_min: float | None = None
    """Stop cleanly (final validation, checkpoints) once this many minutes of training have passed."""
    checkpoint_every_min: float = 5.0
    position_noise: float = 0.0
    """Standard deviation (A) of Gaussian noise added to the input positions of each training batch (targets kept)."""
    partway_starts: float = 0.0
    """Share of training structures whose input starts a uniform random fraction of the way to their DFT-relaxed
    positions (``partway_start_positions``; targets kept): more starts with the same answers (0: none)."""
    half_checkpoint: bool = False
    """Write the best EMA weights in float16 (half the file; predictions within 1e-3 A, tested)."""
    compile: bool = False
    """Run the training forward pass through ``torch.compile`` (``model.CompiledForward``); a resumed run
    takes this from the command, not from the saved state."""
    seed: int = 0
    device: str = "auto"
    min_atoms: int = 0
    """Train and validate only on structures of at least this many atoms (0: all): a cell of a few atoms with one
    defect is a concentrated defect, not the dilute one a supercell study asks about."""
    freeze: tuple[str, ...] = ()
    """Parameter-name prefixes (``element_embedding``, ``layers.0``, ...) whose weights the run leaves as they
    start: with ``init``, the parts of the checkpoint a fine-tune keeps (``frozen_parameters``)."""
    domain_from: str | None = None
    """A checkpoint whose stored applicability domain the written one's extends (``Domain.union``): for a run
    that trains on part of that checkpoint's data, typically its ``init`` (a fine-tune on the high-density sets
    keeps accepting the dilute cells its start learnt), without building the graphs of the rest."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.freeze = tuple(self.freeze)  # a saved state holds a list
        for name, value, allowed in (("schedule", self.schedule, SCHEDULES), ("precision", self.precision, PRECISIONS),
                                     ("loss", self.loss, LOSSES), ("loss_balance", self.loss_balance, LOSS_BALANCES),
                                     ("select_on", self.select_on, SELECTIONS)):
            if value not in allowed:
                raise DefiNetInputError(f"--{name.replace('_', '-')} {value}: expected one of {', '.join(allowed)}")
        if not 0.0 <= self.partway_starts <= 1.0:
            raise DefiNetInputError(f"--partway-starts {self.partway_starts}: a share, expected 0 to 1")


def frozen_parameters(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Names of ``model``'s parameters that start with one of ``prefixes`` (a prefix matches whole dotted parts:
    ``layers.1`` is not ``layers.10``); a one-line error names a prefix that matches none."""
    names = [name for name, _ in model.named_parameters()]
    matched = {prefix: [n for n in names if n == prefix or n.startswith(prefix + ".")] for prefix in prefixes}
    for prefix, found in matched.items():
        if not found:
            modules = sorted({name.split(".")[0] for name in names})
            raise DefiNetInputError(f"--freeze {prefix}: no parameter of the model is called so "
                                    f"(its parts: {', '.join(modules)}; layers as layers.0, layers.1, ...)")
    frozen = {n for found in matched.values() for n in found}
    return [name for name in names if name in frozen]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: bf16 only on a CUDA device that supports it (the CPU falls back to fp32)."""
    if device.type != "cuda":
        if precision == "bf16":
            warnings.warn("bf16 autocast is used on CUDA only; training on the CPU in fp32", stacklevel=2)
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast context for one forward pass (disabled for fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def position_loss(predicted: torch.Tensor, batch: Data, kind: str = "distance") -> torch.Tensor:
    """Mean per-atom error against the DFT positions over non-vacancy nodes: the distance, or with ``kind``
    ``component-l1`` the mean absolute error of the three components (``LOSSES``).

    With a per-graph ``loss_weight`` on the batch, each atom's error is weighted by its graph's weight
    (a weighted mean, equal to the plain mean when every weight is 1). Vacancy nodes get weight 0 rather
    than being indexed out, so the loss never waits for the GPU (boolean indexing would).
    """
    atom_weight = atom_mask(batch.marker).float()
    weight = getattr(batch, "loss_weight", None)
    if weight is not None:
        atom_weight = atom_weight * weight[batch.batch]
    difference = predicted.float() - batch.y
    if kind == "component-l1":
        error = difference.abs().mean(dim=-1)
    else:
        error = torch.sqrt((difference ** 2).sum(dim=-1) + 1e-12)
    return (atom_weight * error).sum() / atom_weight.sum()


def budget_spent(elapsed_s: float, config: TrainConfig) -> bool:
    """Whether ``elapsed_s`` seconds trained (across resumes) reach ``config.time_budget_min`` (never without one)."""
    return bool(config.time_budget_min) and elapsed_s >= 60.0 * config.time_budget_min


def partway_start_positions(batch: Data, share: float) -> torch.Tensor:
    """Input positions with each structure, with probability ``share``, moved a uniform random fraction in [0, 1)
    of the way from its unrelaxed (``pos``) to its DFT-relaxed positions (``y``); the others stay unrelaxed.

    A point on the straight path to the minimum relaxes to (near) the same minimum, so it is a further start
    with the same answer; one fraction per structure keeps each start a coherent geometry.
    """
    graphs = batch.num_graphs
    chosen = torch.rand(graphs, device=batch.pos.device) < share
    fraction = torch.rand(graphs, device=batch.pos.device) * chosen
    return batch.pos + fraction[batch.batch].unsqueeze(-1) * (batch.y - batch.pos)


def material_weights(sets: dict[str, list[Data]]) -> dict[str, float]:
    """Loss weight per material: 1 / (mean DFT displacement of its atoms), normalised to mean 1 over structures.

    A plain mean is dominated by the materials that move most (BP moves ~15x more than low-density
    MoS2); with these weights every material's loss is measured relative to its own dummy error,
    which is what the val ratio (MAE / dummy MAE) scores.
    """
    scales = {}
    for key, graphs in sets.items():
        per_structure = [float(torch.linalg.norm(g.y - g.pos, dim=-1)[atom_mask(g.marker)].mean())
                         for g in graphs]
        scales[key] = max(float(np.mean(per_structure)), 1e-4)
    counts = {key: len(graphs) for key, graphs in sets.items()}
    inverse_mean = sum(counts[k] / scales[k] for k in sets) / sum(counts.values())
    return {key: 1.0 / (scales[key] * inverse_mean) for key in sets}


@torch.no_grad()
def validation_mae(model: torch.nn.Module, graphs: list[Data], device: torch.device, batch_size: int) -> float:
    """Paper MAE (mean |dx|,|dy|,|dz| over real atoms, averaged over structures), always in fp32."""
    model.eval()
    return structure_mean_mae(model, graphs, device, batch_size)


def unrelaxed_mae(graphs: list[Data], device: torch.device, batch_size: int) -> float:
    """The paper MAE of the unrelaxed positions themselves (no prediction): the denominator of the val ratio."""
    return structure_mean_mae(lambda batch: batch.pos, graphs, device, batch_size)


@torch.no_grad()
def structure_mean_mae(predict: Callable[[Data], torch.Tensor], graphs: list[Data], device: torch.device,
                       batch_size: int) -> float:
    """Mean over ``graphs`` of each structure's mean |dx|,|dy|,|dz| between ``predict(batch)`` and the DFT
    positions over its real atoms (vacancy nodes left out)."""
    per_structure = []
    for batch in DataLoader(graphs, batch_size=batch_size):
        batch = batch.to(device)
        error = (predict(batch) - batch.y).abs().mean(dim=-1)
        atoms = atom_mask(batch.marker).to(error.dtype)
        sums = torch.zeros(batch.num_graphs, device=device).index_add_(0, batch.batch, error * atoms)
        counts = torch.zeros(batch.num_graphs, device=device).index_add_(0, batch.batch, atoms)
        per_structure.append((sums / counts).cpu())
    return float(torch.cat(per_structure).mean())


def val_ratios(val: dict[str, float], unrelaxed: dict[str, float]) -> dict[str, float]:
    """Val MAE / unrelaxed MAE per val set (sets whose atoms do not move at all are left out)."""
    return {key: mae / unrelaxed[key] for key, mae in val.items() if unrelaxed[key] > 0}


class WarmupEma:
    """EMA update for ``AveragedModel(multi_avg_fn=...)`` whose decay ramps up as (1 + n) / (10 + n) up to
    ``decay``, so early averages do not cling to the init.

    ``n`` (the updates averaged so far) is counted here, on the host, instead of read from the averaged
    model's device counter: reading it cost two GPU synchronisations per parameter tensor per step. All
    tensors are updated by one multi-tensor ``lerp``.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.num_averaged = 1  # AveragedModel copies the first update without averaging; a resume sets the count

    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _: torch.Tensor) -> None:
        """Move ``averaged`` towards ``current`` in place."""
        n = self.num_averaged
        step_decay = min(self.decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - step_decay)
        self.num_averaged += 1


def cosine_lr(config: TrainConfig, step: int, progress: float) -> float:
    """Learning rate after ``step`` optimiser steps at training ``progress`` in [0, 1]: warm-up, then cosine."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def state_path(out: Path) -> Path:
    """Where the resumable training state of checkpoint ``out`` lives."""
    return out.with_name(out.stem + ".last.pt")


def log_path(out: Path) -> Path:
    """Per-epoch JSON-lines log of checkpoint ``out``."""
    return out.with_name(out.stem + ".log.jsonl")


def read_log(out: Path) -> list[dict[str, Any]]:
    """The per-epoch records of checkpoint ``out``'s training log (empty if it has none)."""
    path = log_path(out)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_training_sets(data_roots: list[str | Path], model_config: ModelConfig, cache_dir: Path | None,
                       progress: bool, min_atoms: int = 0) -> tuple[dict[str, list[Data]], dict[str, list[Data]]]:
    """(train sets, val sets) keyed by material, graphs built with the model's graph settings; with
    ``min_atoms``, only the structures of at least that many atoms (``dataset.with_min_atoms``)."""
    from definet_core.dataset import load_dataset, with_min_atoms

    train_sets = load_dataset(data_roots, "train", model_config.radius, model_config.max_neighbors, cache_dir, progress)
    val_sets = load_dataset(data_roots, "val", model_config.radius, model_config.max_neighbors, cache_dir, progress)
    return with_min_atoms(train_sets, min_atoms, "train"), with_min_atoms(val_sets, min_atoms, "val")


def prepare_graphs(train_sets: dict[str, list[Data]], config: TrainConfig, device: torch.device) -> list[Data]:
    """Train graphs with their loss weights, moved to ``device`` once (the whole set stays there)."""
    weights = material_weights(train_sets) if config.loss_balance == "material" else None
    graphs = []
    for key, material_graphs in train_sets.items():
        for graph in material_graphs:
            if weights is not None:  # a copy: the caller's (cached) graphs stay as they are
                graph = graph.clone()
                graph.loss_weight = torch.tensor([weights[key]])
            graphs.append(graph.to(device))
    return graphs


class TrainingRun:
    """Mutable state of one training run: model, EMA, optimiser, schedule and counters."""

    def __init__(self, model_config: ModelConfig, config: TrainConfig, device: torch.device,
                 initial_state: dict[str, torch.Tensor] | None = None) -> None:
        self.config = config
        self.model = build_model(model_config)
        if initial_state is not None:  # fine-tuning: the EMA starts from these weights too
            self.model.load_state_dict(initial_state)
        self.model.to(device)
        frozen = set(frozen_parameters(self.model, config.freeze))
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name not in frozen)
        self.forward = CompiledForward(self.model) if config.compile else self.model
        self.ema_update = WarmupEma(config.ema_decay)
        self.ema = AveragedModel(self.model, multi_avg_fn=self.ema_update)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay,
                                           amsgrad=config.amsgrad, fused=True)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience,
            threshold=config.lr_threshold, min_lr=config.min_lr)
        self.epoch, self.batches_done, self.step, self.elapsed = 1, 0, 0, 0.0
        self.best, self.stale, self.best_epoch = math.inf, 0, 0

    def load(self, saved: dict[str, Any]) -> None:
        """Restore from a saved state (settings come from the config, counters and weights from the file)."""
        self.model.load_state_dict(saved["model"])
        self.ema.load_state_dict(saved["ema"])
        self.ema_update.num_averaged = max(int(self.ema.n_averaged), 1)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.plateau.load_state_dict(saved["scheduler"])
        self.plateau.threshold = self.config.lr_threshold
        self.best, self.stale, self.best_epoch = saved["best"], saved["stale"], saved["best_epoch"]
        self.batches_done = saved.get("batches_done", 0)
        self.epoch = saved["epoch"] + (0 if self.batches_done else 1)
        self.step, self.elapsed = saved.get("step", 0), saved.get("elapsed", 0.0)
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])

    def save(self, path: Path, model_config: ModelConfig) -> None:
        """Write the resumable state atomically (``epoch`` is the last started one if ``batches_done``)."""
        save_atomically({"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                         "optimizer": self.optimizer.state_dict(), "scheduler": self.plateau.state_dict(),
                         "epoch": self.epoch if self.batches_done else self.epoch - 1,
                         "batches_done": self.batches_done, "step": self.step, "elapsed": self.elapsed,
                         "best": self.best, "stale": self.stale, "best_epoch": self.best_epoch,
                         "model_config": model_config.to_dict(), "train_config": asdict(self.config),
                         "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, path)

    def step_on(self, batch: Data, precision: str) -> torch.Tensor:
        """One optimiser step on ``batch``: forward (autocast), loss, backward, clipping, AdamW, EMA.

        Returns the loss as a tensor; nothing here waits for the device.
        """
        device = batch.pos.device
        if self.config.position_noise > 0:
            batch.pos = batch.pos + self.config.position_noise * torch.randn_like(batch.pos)
        if self.config.partway_starts > 0:
            batch.pos = partway_start_positions(batch, self.config.partway_starts)
        with autocast(device, precision):
            predicted = self.forward(batch)
        loss = position_loss(predicted, batch, self.config.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.ema.update_parameters(self.model)
        return loss.detach()

    def progress(self, steps_per_epoch: int) -> float:
        """Fraction of the run done: by steps over all epochs, or by time when a budget is set (whichever is more)."""
        by_steps = self.step / max(1, self.config.epochs * steps_per_epoch)
        budget = self.config.time_budget_min
        return max(by_steps, self.elapsed / (60.0 * budget)) if budget else by_steps


def fine_tune_start(payload: dict[str, Any], requested: ModelConfig) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The model settings and float32 weights of a run that starts from checkpoint ``payload``: the checkpoint's
    own, with element features and the per-edge radial term added when ``requested`` asks for them and the
    checkpoint has none. The added projection is zero and the embedding rows of elements outside the
    checkpoint's ``trained_elements`` are zeroed (``elements.add_element_features``); the added radial term
    starts at zero with the coordinate heads doubled (``model.add_edge_displacement``). So the run starts from
    exactly the checkpoint's function on the elements it was trained on. A ``requested.gaussian_reach`` prunes a
    Gaussian checkpoint's basis (``architectures.prune_gaussians``): the same function on edges within it."""
    config = ModelConfig.from_dict(payload["config"])
    state = float32_state(payload)
    if requested.element_features and not config.element_features:
        config = replace(config, element_features=True)  # ModelConfig refuses it for the reference architecture
        state = add_element_features(state, config.num_elements, config.hidden, payload["trained_elements"])
    if requested.edge_displacement and not config.edge_displacement and config.arch == "definet":
        config = replace(config, edge_displacement=True)
        state = add_edge_displacement(state, config)
    if requested.gaussian_reach:
        config, state = prune_gaussians(config, state, requested.gaussian_reach)
    return config, state


def train(data_roots: list[str | Path], out: str | Path, model_config: ModelConfig, train_config: TrainConfig,
          resume: bool = False, cache_dir: Path | None = None, progress: bool = True,
          sets: tuple[dict[str, list[Data]], dict[str, list[Data]]] | None = None,
          init: str | Path | None = None) -> dict[str, Any]:
    """Train DefiNet on the train splits below ``data_roots``, early-stopping on their val splits.

    ``out`` receives the best EMA weights; ``<out>.last.pt`` the full state for ``resume`` (which keeps
    the saved model and optimiser settings and takes only ``epochs``, ``time_budget_min`` and ``compile`` from
    ``train_config``; the budget counts the minutes trained before too, so an interrupted run started again
    keeps its cosine schedule, and a larger budget trains on); ``<out>.log.jsonl`` one line per epoch.
    ``sets`` passes (train, val) graphs already loaded with the model's graph settings. ``init`` starts a new
    run from a checkpoint's weights (fine-tuning; its model and graph settings replace ``model_config``, except that
    ``model_config.element_features`` can turn element features on: ``fine_tune_start``). Returns the summary
    (best epoch, val MAE, why it stopped).
    """
    out = Path(out)
    state_file = state_path(out)
    if state_file.exists() and not resume:
        raise DefiNetInputError(
            f"{state_file}: a training run already exists here; pass --resume or choose another --out")
    saved = torch.load(state_file, map_location="cpu", weights_only=False) if resume and state_file.exists() else None
    if saved is not None:
        model_config = ModelConfig.from_dict(saved["model_config"])
        train_config = TrainConfig(**{**saved["train_config"], "epochs": train_config.epochs,
                                      "time_budget_min": train_config.time_budget_min,
                                      "compile": train_config.compile})
        if budget_spent(saved.get("elapsed", 0.0), train_config):  # before any data is read
            if progress:
                tqdm.write(f"{out}: its --time-budget of {train_config.time_budget_min:g} min is spent "
                           f"({saved['elapsed'] / 60:.1f} min trained); a larger one trains on")
            return run_summary(out, saved["best_epoch"], saved.get("step", 0), train_config.select_on, "time budget")
    inherited = stored_domain(train_config.domain_from) if train_config.domain_from else None
    initial_state = None
    if init is not None and saved is None:
        model_config, initial_state = fine_tune_start(read_checkpoint(init), model_config)
    device = resolve_device(train_config.device)
    precision = resolve_precision(train_config.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _seed_everything(train_config.seed)

    train_sets, val_sets = sets or load_training_sets(data_roots, model_config, cache_dir, progress,
                                                      train_config.min_atoms)
    domain = domain_of(g for graphs in train_sets.values() for g in graphs)  # on the CPU copies
    if inherited is not None:
        domain = domain.union(inherited)
    train_graphs = prepare_graphs(train_sets, train_config, device)
    val_graphs = {key: [g.to(device) for g in graphs] for key, graphs in val_sets.items()}
    unrelaxed = {key: unrelaxed_mae(graphs, device, 2 * train_config.batch_size) for key, graphs in val_graphs.items()}

    run = TrainingRun(model_config, train_config, device, initial_state)
    if saved is not None:
        run.load(saved)  # with the minutes trained so far: the schedule and the budget go on where they stopped
    elif log_path(out).exists():
        log_path(out).unlink()
    steps_per_epoch = math.ceil(len(train_graphs) / train_config.batch_size)
    stop_reason = "epochs"
    last_save = time.time()

    while run.epoch <= train_config.epochs:
        if run.stale >= train_config.early_stop_patience:
            stop_reason = "early stopping"
            break
        started, started_steps = time.time(), run.step
        run.model.train()
        generator = torch.Generator().manual_seed(train_config.seed * 100003 + run.epoch)
        loader = DataLoader(train_graphs, batch_size=train_config.batch_size, shuffle=True, generator=generator)
        losses: list[torch.Tensor] = []  # on the device; read every LOSS_READ_EVERY steps and at the epoch end
        bar = tqdm(loader, desc=f"epoch {run.epoch}", disable=not progress, leave=False, total=steps_per_epoch)
        tick = time.time()
        for index, batch in enumerate(bar):
            if index < run.batches_done:  # resuming inside an epoch: the shuffle is seeded, skip what was done
                continue
            if train_config.schedule == "cosine":
                for group in run.optimizer.param_groups:
                    group["lr"] = cosine_lr(train_config, run.step, run.progress(steps_per_epoch))
            losses.append(run.step_on(batch, precision))
            run.step, run.batches_done = run.step + 1, index + 1
            if len(losses) % LOSS_READ_EVERY == 0:  # the one read of the loss: checked and shown
                recent = raise_if_diverged(losses[-50:], run, out)
                bar.set_postfix(loss=f"{recent:.4f}")
            now = time.time()
            run.elapsed, tick = run.elapsed + now - tick, now
            if budget_spent(run.elapsed, train_config):
                stop_reason = "time budget"
                break
            if now - last_save >= 60.0 * train_config.checkpoint_every_min:
                raise_if_diverged(losses, run, out)
                run.save(state_file, model_config)
                last_save = now
        seconds = time.time() - started
        train_loss = raise_if_diverged(losses, run, out) if losses else None
        val = {key: validation_mae(run.ema.module, graphs, device, 2 * train_config.batch_size)
               for key, graphs in val_graphs.items()}
        val_mean = float(np.mean(list(val.values())))
        ratios = val_ratios(val, unrelaxed)
        ratio_mean = float(np.mean(list(ratios.values()))) if ratios else math.nan
        score = ratio_mean if train_config.select_on == "ratio" else val_mean
        if train_config.schedule == "plateau":
            run.plateau.step(score)
        if score < run.best:
            run.best, run.stale, run.best_epoch = score, 0, run.epoch
            save_checkpoint(out, run.ema.module, list(domain.elements), {
                "epoch": run.epoch, "step": run.step, "val_mae": val, "val_ratio": ratios,
                "data": [str(Path(r)) for r in data_roots],
                "train_config": asdict(train_config), "train_structures": len(train_graphs),
                "device": _device_name(device), "precision": precision,
                "init": str(init) if init is not None else None}, half=train_config.half_checkpoint,
                domain=domain.to_dict())
        else:
            run.stale += 1
        steps = run.step - started_steps
        record = {"epoch": run.epoch, "step": run.step,
                  "train_loss": train_loss,
                  "val_mae": val, "val_mae_mean": val_mean, "val_ratio": ratios, "val_ratio_mean": ratio_mean,
                  "lr": run.optimizer.param_groups[0]["lr"],
                  "seconds": round(seconds, 1), "elapsed_s": round(run.elapsed, 1), "best_epoch": run.best_epoch,
                  "device": _device_name(device), "precision": precision,
                  "steps_per_s": round(steps / max(seconds, 1e-9), 2),
                  "structures_per_s": round(steps * train_config.batch_size / max(seconds, 1e-9), 1)}
        with log_path(out).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if progress:
            tqdm.write(f"epoch {run.epoch}: train loss {record['train_loss'] or float('nan'):.4f}  "
                       f"val MAE {val_mean:.4f}  lr {record['lr']:.2e}  ({seconds:.0f} s, "
                       f"{record['structures_per_s']:.0f} structures/s)")
        run.epoch, run.batches_done = run.epoch + 1, 0
        run.save(state_file, model_config)
        last_save = time.time()
        if stop_reason == "time budget":
            break
    return run_summary(out, run.best_epoch, run.step, train_config.select_on, stop_reason)


def run_summary(out: Path, best_epoch: int, steps: int, selected_on: str, stop_reason: str) -> dict[str, Any]:
    """What ``train`` returns: the best epoch and its val scores (from the log), the steps and why it stopped."""
    best = next((record for record in read_log(out) if record["epoch"] == best_epoch), {})
    return {"best_epoch": best_epoch, "selected_on": selected_on,
            "best_val_mae": best.get("val_mae_mean"), "best_val_ratio": best.get("val_ratio_mean"),
            "checkpoint": str(out), "steps": steps, "stopped_by": stop_reason}


def raise_if_diverged(losses: list[torch.Tensor], run: TrainingRun, out: Path) -> float:
    """The mean of ``losses``, after stopping a run whose loss is no longer finite before anything is written
    from its weights (waits for the device: called where the loss is read anyway, and before each save)."""
    mean = float(torch.stack(losses).mean()) if losses else 0.0
    if not math.isfinite(mean):  # NaN or inf anywhere in the window makes the mean so
        kept = [f"{out} (best epoch {run.best_epoch})"] if run.best_epoch else []
        if state_path(out).exists():
            kept.append(str(state_path(out)))
        raise TrainingDivergedError(
            f"training diverged: the loss is not finite by step {run.step} (epoch {run.epoch}, lr "
            f"{run.optimizer.param_groups[0]['lr']:.2e}); kept as last written: {', '.join(kept) or 'nothing'}; "
            "train again with a lower --lr")
    return mean


def _device_name(device: torch.device) -> str:
    """``cpu`` or the CUDA device's product name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
