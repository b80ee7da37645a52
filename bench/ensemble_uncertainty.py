"""Two DefiNet checkpoints together: is their mean more accurate, and does their disagreement tell which
predictions are wrong?

    python bench/ensemble_uncertainty.py --data ../shared/data/definet_2d [--split val] \\
        [--checkpoints definet_2d definet_2d_large] [--plot docs/figures/spread_vs_error.png]

For every structure of the split: the spread (mean |dx|,|dy|,|dz| between the two checkpoints'
predictions, over real atoms) and the errors (the same against DFT) of each checkpoint, of their mean
(what ``Predictor(companion=...)`` predicts) and of the unrelaxed input. Prints per material the MAE of
each and the mean's ratio to the unrelaxed MAE, and the Spearman rank correlation between spread and the
mean's error; writes a log-log scatter plot of the two.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import spearmanr

from definet_core.dataset import load_dataset
from definet_core.markers import Marker
from definet_core.predict import Predictor

ERRORS = ("first", "second", "mean", "unrelaxed")
"""Whose error against DFT each structure gets: each checkpoint, their mean, the unrelaxed input."""


def spread_and_errors(data: str, split: str, checkpoints: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per material: the spread between the checkpoints and the ``ERRORS`` of each structure."""
    first, second = (Predictor(c, device="cpu") for c in checkpoints)
    sets = [load_dataset([data], split, p.config.radius, p.config.max_neighbors, progress=False)
            for p in (first, second)]
    result = {}
    for key in sets[0]:
        rows = []
        for graph, a, b in zip(sets[0][key], first.predict_graphs(sets[0][key]),
                               second.predict_graphs(sets[1][key]), strict=True):
            atoms = (graph.marker != Marker.VACANCY).numpy()
            a, b = a.numpy()[atoms], b.numpy()[atoms]
            target = graph.y.double().numpy()[atoms]
            rows.append([np.abs(a - b).mean()] + [np.abs(x - target).mean()
                                                  for x in (a, b, 0.5 * (a + b), graph.pos.double().numpy()[atoms])])
        columns = np.array(rows).T
        result[key] = {"spread": columns[0], **dict(zip(ERRORS, columns[1:], strict=True))}
    return result


def main() -> None:
    """Print the correlations and write the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoints", nargs=2, default=["definet_2d", "definet_2d_large"])
    parser.add_argument("--plot", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = spread_and_errors(args.data, args.split, args.checkpoints)
    rho = {key: float(spearmanr(r["spread"], r["mean"]).correlation) for key, r in result.items()}
    rho["all"] = float(spearmanr(*(np.concatenate([r[name] for r in result.values()])
                                   for name in ("spread", "mean"))).correlation)
    mae = {key: {name: float(r[name].mean()) for name in ERRORS} for key, r in result.items()}
    print(f"{'set':<24}{'unrelaxed':>10}{args.checkpoints[0][:16]:>17}{args.checkpoints[1][:16]:>17}{'mean':>9}"
          f"{'mean ratio':>11}{'Spearman':>9}")
    for key, row in mae.items():
        print(f"{key:<24}{row['unrelaxed']:>10.4f}{row['first']:>17.4f}{row['second']:>17.4f}{row['mean']:>9.4f}"
              f"{row['mean'] / row['unrelaxed']:>11.3f}{rho[key]:>9.2f}")
    for name, label in zip(ERRORS[:3], [*args.checkpoints, "mean of both"], strict=True):
        print(f"{name} ({label}): mean MAE "
              f"{np.mean([row[name] for row in mae.values()]):.4f}, mean ratio "
              f"{np.mean([row[name] / row['unrelaxed'] for row in mae.values()]):.3f}")
    print(f"spread vs error of the mean, all structures: Spearman {rho['all']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoints": args.checkpoints, "split": args.split, "spearman": rho, "mae": mae}, handle,
                      indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for key, r in result.items():
            ax.scatter(r["spread"], r["mean"], s=8, alpha=0.6, label=f"{key} ({rho[key]:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("spread between the two checkpoints (A)")
        ax.set_ylabel("error of their mean vs DFT (A)")
        ax.set_title(f"{args.split}: Spearman {rho['all']:.2f} over all structures", fontsize=10)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=130)
        plt.close(fig)


if __name__ == "__main__":
    main()
