"""Training: AdamW, EMA weights, plateau schedule, gradient clipping, early stopping, resumable."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from definet_core.checkpoint import resolve_device, save_checkpoint
from definet_core.config import ModelConfig
from definet_core.dataset import load_dataset
from definet_core.errors import DefiNetInputError
from definet_core.markers import Marker
from definet_core.model import DefiNet


@dataclass
class TrainConfig:
    """Optimiser and schedule settings of a training run (saved in its state and log)."""

    epochs: int = 100
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-6
    ema_decay: float = 0.999
    grad_clip: float = 10.0
    lr_patience: int = 2
    lr_factor: float = 0.5
    lr_threshold: float = 0.01
    """An epoch improves on the best val MAE only by more than this fraction of it (plateau detection)."""
    min_lr: float = 1e-5
    early_stop_patience: int = 8
    seed: int = 0
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)


def position_loss(predicted: torch.Tensor, batch: Data) -> torch.Tensor:
    """Mean per-atom distance to the DFT positions over non-vacancy nodes."""
    atoms = batch.marker != Marker.VACANCY
    return torch.sqrt(((predicted[atoms] - batch.y[atoms]) ** 2).sum(dim=-1) + 1e-12).mean()


@torch.no_grad()
def validation_mae(model: torch.nn.Module, graphs: list[Data], device: torch.device, batch_size: int) -> float:
    """Paper MAE (mean |dx|,|dy|,|dz| over real atoms, averaged over structures)."""
    model.eval()
    per_structure = []
    for batch in DataLoader(graphs, batch_size=batch_size):
        batch = batch.to(device)
        error = (model(batch) - batch.y).abs().mean(dim=-1)
        atoms = (batch.marker != Marker.VACANCY).to(error.dtype)
        sums = torch.zeros(batch.num_graphs, device=device).index_add_(0, batch.batch, error * atoms)
        counts = torch.zeros(batch.num_graphs, device=device).index_add_(0, batch.batch, atoms)
        per_structure.append((sums / counts).cpu())
    return float(torch.cat(per_structure).mean())


def ema_with_warmup(decay: float):
    """EMA update whose decay ramps up as (1 + n) / (10 + n), so early averages do not cling to the init."""
    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        step_decay = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return step_decay * averaged + (1.0 - step_decay) * current
    return average


def state_path(out: Path) -> Path:
    """Where the resumable training state of checkpoint ``out`` lives."""
    return out.with_name(out.stem + ".last.pt")


def log_path(out: Path) -> Path:
    """Per-epoch JSON-lines log of checkpoint ``out``."""
    return out.with_name(out.stem + ".log.jsonl")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(data_roots: list[str | Path], out: str | Path, model_config: ModelConfig, train_config: TrainConfig,
          resume: bool = False, cache_dir: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train DefiNet on the train splits below ``data_roots``, early-stopping on their val splits.

    ``out`` receives the best EMA weights; ``<out>.last.pt`` the full state for ``resume`` (which keeps
    the saved model and optimiser settings and takes only ``epochs`` from ``train_config``);
    ``<out>.log.jsonl`` one line per epoch. Returns the final summary (best epoch and val MAE).
    """
    out = Path(out)
    state_file = state_path(out)
    if state_file.exists() and not resume:
        raise DefiNetInputError(
            f"{state_file}: a training run already exists here; pass --resume or choose another --out")
    saved = torch.load(state_file, map_location="cpu", weights_only=False) if resume and state_file.exists() else None
    if saved is not None:
        model_config = ModelConfig.from_dict(saved["model_config"])
        train_config = TrainConfig(**{**saved["train_config"], "epochs": train_config.epochs})
    device = resolve_device(train_config.device)
    _seed_everything(train_config.seed)

    train_sets = load_dataset(data_roots, "train", model_config.radius, model_config.max_neighbors, cache_dir, progress)
    val_sets = load_dataset(data_roots, "val", model_config.radius, model_config.max_neighbors, cache_dir, progress)
    train_graphs = [g for graphs in train_sets.values() for g in graphs]
    elements = sorted({int(z) for g in train_graphs for z in g.z.unique()})

    model = DefiNet(model_config).to(device)
    ema = AveragedModel(model, avg_fn=ema_with_warmup(train_config.ema_decay))
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=train_config.lr_factor, patience=train_config.lr_patience,
        threshold=train_config.lr_threshold, min_lr=train_config.min_lr)
    start_epoch, best, stale, best_epoch = 1, math.inf, 0, 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scheduler.threshold = train_config.lr_threshold  # settings come from the config, state from the file
        start_epoch, best, stale, best_epoch = saved["epoch"] + 1, saved["best"], saved["stale"], saved["best_epoch"]
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])
    elif log_path(out).exists():
        log_path(out).unlink()

    for epoch in range(start_epoch, train_config.epochs + 1):
        if stale >= train_config.early_stop_patience:
            break
        started = time.time()
        model.train()
        generator = torch.Generator().manual_seed(train_config.seed * 100003 + epoch)
        loader = DataLoader(train_graphs, batch_size=train_config.batch_size, shuffle=True, generator=generator)
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False)
        for batch in bar:
            batch = batch.to(device)
            loss = position_loss(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            optimizer.step()
            ema.update_parameters(model)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        val = {key: validation_mae(ema.module, graphs, device, 2 * train_config.batch_size)
               for key, graphs in val_sets.items()}
        val_mean = float(np.mean(list(val.values())))
        scheduler.step(val_mean)
        if val_mean < best:
            best, stale, best_epoch = val_mean, 0, epoch
            save_checkpoint(out, ema.module, elements, {
                "epoch": epoch, "val_mae": val, "data": [str(Path(r)) for r in data_roots],
                "train_config": asdict(train_config), "train_structures": len(train_graphs)})
        else:
            stale += 1
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_mae": val, "val_mae_mean": val_mean,
                  "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - started, 1),
                  "best_epoch": best_epoch}
        with log_path(out).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {record['train_loss']:.4f}  val MAE {val_mean:.4f}  "
                       f"lr {record['lr']:.2e}  ({record['seconds']:.0f} s)")
        tmp = state_file.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best, "stale": stale,
                    "best_epoch": best_epoch, "model_config": model_config.to_dict(),
                    "train_config": asdict(train_config), "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate()}, tmp)
        tmp.replace(state_file)
    return {"best_epoch": best_epoch, "best_val_mae": best, "checkpoint": str(out)}
