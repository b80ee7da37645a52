"""Evaluation of a checkpoint on dataset splits: the paper's MAE metrics and a parity plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from definet_core.markers import atom_mask
from definet_core.metrics import average_errors, structure_errors
from definet_core.predict import Predictor


def evaluate(data_roots: list[str | Path], split: str = "test", checkpoint: str | Path | None = None,
             device: str = "auto", plot: str | Path | None = None, cache_dir: Path | None = None,
             progress: bool = True) -> dict[str, dict[str, float]]:
    """Metrics per material directory (key: path relative to its data root), optionally a parity plot."""
    predictor = Predictor(checkpoint, device)
    sets = predictor.dataset(data_roots, split, cache_dir, progress)
    report: dict[str, dict[str, float]] = {}
    parity: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, graphs in sets.items():
        predicted = predictor.predict_graphs(graphs, progress=f"evaluate {key}" if progress else None)
        report[key] = average_errors([structure_errors(g, p) for g, p in zip(graphs, predicted, strict=True)])
        parity[key] = _displacements(graphs, predicted)
    if plot is not None:
        parity_plot(parity, Path(plot))
    return report


def _displacements(graphs: list[Data], predicted: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Flattened DFT and predicted displacement components of all real atoms."""
    dft, model = [], []
    for graph, positions in zip(graphs, predicted, strict=True):
        atoms = atom_mask(graph.marker).numpy()
        start = graph.pos.double().numpy()[atoms]
        dft.append((graph.y.double().numpy()[atoms] - start).ravel())
        model.append((positions.numpy()[atoms] - start).ravel())
    return np.concatenate(dft), np.concatenate(model)


def parity_plot(parity: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Predicted vs DFT displacement components (A), one panel per material."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(parity)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax, (key, (dft, model)) in zip(axes.ravel(), parity.items(), strict=False):
        limit = float(np.quantile(np.abs(np.concatenate([dft, model])), 0.999)) or 1.0
        ax.hexbin(dft, model, gridsize=60, bins="log", extent=(-limit, limit, -limit, limit), cmap="viridis")
        ax.plot([-limit, limit], [-limit, limit], "r--", lw=0.8)
        ax.set_title(f"{key}  MAE {np.abs(dft - model).mean():.4f} A", fontsize=9)
        ax.set_xlabel("DFT displacement (A)")
        ax.set_ylabel("DefiNet displacement (A)")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
