"""Summaries of stored validation documents: the table per host, relaxer, checkpoint and start, JSON and a step
histogram."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

PLOT_COLUMNS = 4
"""Panels per row of the step histogram: many hosts or checkpoints wrap onto further rows."""


def _stat(values: list[int | float], fn: Any) -> float | None:
    return float(fn(values)) if values else None


def start_label(doc: dict[str, Any]) -> str:
    """The run a document belongs to: its start policy, with ``+cmp`` when the comparison relaxations ran."""
    return doc.get("start_policy", "auto") + ("+cmp" if doc.get("comparison", True) else "")


def checkpoint_names(checkpoint_id: str) -> str:
    """A stored checkpoint id without its content hashes: ``definet_v11`` for ``definet_v11@0123456789ab``,
    ``a+b`` for an ensemble ``a@...+b@...``."""
    return "+".join(part.partition("@")[0] for part in checkpoint_id.split("+"))


def grouped(docs: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str, str], list[dict[str, Any]]]]:
    """Documents by (host, relaxer, checkpoint, start label), sorted (checkpoints by version: ``definet_v9``
    before ``definet_v10``): runs of different checkpoints or start policies stay apart."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        groups[(doc["host_id"], doc["relaxer"], doc["checkpoint"], start_label(doc))].append(doc)
    return sorted(groups.items(), key=_group_order)


def _group_order(group: tuple[tuple[str, str, str, str], list[dict[str, Any]]]) -> tuple[Any, ...]:
    """Sort key of one ``grouped`` item: host, relaxer, the checkpoint's version (``version_order``), start label."""
    from definet_core.checkpoint import version_order

    (host, relaxer, checkpoint, start), _ = group
    return host, relaxer, version_order(checkpoint), start


def summarize(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (host, relaxer, checkpoint, start label): step statistics from both starts, saving, same
    minima, prediction MAE."""
    rows = []
    for (host, relaxer, checkpoint, start), group in grouped(docs):
        predicted = [d["steps_from_prediction"] for d in group if d.get("steps_from_prediction") is not None]
        unrelaxed = [d["steps_from_unrelaxed"] for d in group if d.get("steps_from_unrelaxed") is not None]
        maes = [d["prediction_mae"] for d in group if d.get("prediction_mae") is not None]
        mean_p, mean_u = _stat(predicted, np.mean), _stat(unrelaxed, np.mean)
        rows.append({
            "host": host, "relaxer": relaxer, "checkpoint": checkpoint, "start": start, "n": len(group),
            "median_steps_from_prediction": _stat(predicted, np.median),
            "median_steps_from_unrelaxed": _stat(unrelaxed, np.median),
            "mean_steps_from_prediction": mean_p, "mean_steps_from_unrelaxed": mean_u,
            "saving_percent": 100.0 * (1 - mean_p / mean_u) if mean_p is not None and mean_u else None,
            "n_same_minimum": sum(1 for d in group if d.get("same_minimum")),
            "n_out_of_domain": sum(1 for d in group if d.get("in_domain") is False),
            "mean_prediction_mae": _stat(maes, np.mean),
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of ``summarize`` rows; the checkpoint column last, as ids run long (ensembles)."""
    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = (f"{'host':<14}{'relaxer':<9}{'start':<16}{'n':>4}{'med pred':>10}{'med unrel':>10}{'mean pred':>10}"
              f"{'mean unrel':>11}{'saving %':>10}{'same min':>9}{'MAE (A)':>9}{'out dom':>8}  checkpoint")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['host']:<14}{r['relaxer']:<9}{r['start']:<16}{r['n']:>4}"
            f"{cell(r['median_steps_from_prediction'], '.1f'):>10}"
            f"{cell(r['median_steps_from_unrelaxed'], '.1f'):>10}{cell(r['mean_steps_from_prediction'], '.1f'):>10}"
            f"{cell(r['mean_steps_from_unrelaxed'], '.1f'):>11}{cell(r['saving_percent'], '.1f'):>10}"
            f"{r['n_same_minimum']:>9}{cell(r['mean_prediction_mae'], '.4f'):>9}{r['n_out_of_domain']:>8}"
            f"  {r['checkpoint']}")
    return "\n".join(lines)


def steps_plot(docs: list[dict[str, Any]], path: str | Path) -> None:
    """Histograms of ionic steps from the prediction and from the unrelaxed start, one panel per ``grouped``
    group, ``PLOT_COLUMNS`` panels a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    groups = grouped(docs)
    columns = min(max(len(groups), 1), PLOT_COLUMNS)
    rows = max(1, -(-len(groups) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    for ax, ((host, relaxer, checkpoint, start), group) in zip(axes.ravel(), groups, strict=False):
        predicted = [d["steps_from_prediction"] for d in group if d.get("steps_from_prediction") is not None]
        unrelaxed = [d["steps_from_unrelaxed"] for d in group if d.get("steps_from_unrelaxed") is not None]
        top = max([*predicted, *unrelaxed, 1])
        bins = np.linspace(0, top + 1, min(30, top + 2))
        ax.hist(unrelaxed, bins=bins, alpha=0.6, label="from unrelaxed", color="tab:gray")
        ax.hist(predicted, bins=bins, alpha=0.7, label="from DefiNet", color="tab:blue")
        ax.set_title(f"{host} / {relaxer} / {start} (n={len(group)})\n{checkpoint_names(checkpoint)}", fontsize=10)
        ax.set_xlabel("ionic steps")
        ax.set_ylabel("defect cases")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
