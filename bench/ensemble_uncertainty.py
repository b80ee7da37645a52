"""Does the disagreement of two DefiNet checkpoints tell which predictions are wrong?

    python bench/ensemble_uncertainty.py --data ../shared/data/definet_2d [--split val] \\
        [--checkpoints definet_2d definet_2d_large] [--plot docs/figures/spread_vs_error.png]

For every structure of the split: the spread (mean |dx|,|dy|,|dz| between the two checkpoints'
predictions, over real atoms) and the error of the first checkpoint (the same against DFT). Prints the
Spearman rank correlation per material and overall, and writes a log-log scatter plot.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import spearmanr

from definet_core.dataset import load_dataset
from definet_core.markers import Marker
from definet_core.predict import Predictor


def spread_and_error(data: str, split: str, checkpoints: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per material: (spread between the checkpoints, error of the first) for each structure."""
    first, second = (Predictor(c, device="cpu") for c in checkpoints)
    sets = [load_dataset([data], split, p.config.radius, p.config.max_neighbors, progress=False)
            for p in (first, second)]
    result = {}
    for key in sets[0]:
        spreads, errors = [], []
        for graph, a, b in zip(sets[0][key], first.predict_graphs(sets[0][key]),
                               second.predict_graphs(sets[1][key]), strict=True):
            atoms = (graph.marker != Marker.VACANCY).numpy()
            spreads.append(np.abs(a.numpy()[atoms] - b.numpy()[atoms]).mean())
            errors.append(np.abs(a.numpy()[atoms] - graph.y.double().numpy()[atoms]).mean())
        result[key] = (np.array(spreads), np.array(errors))
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
    result = spread_and_error(args.data, args.split, args.checkpoints)
    rows = {key: float(spearmanr(s, e).correlation) for key, (s, e) in result.items()}
    spreads = np.concatenate([s for s, _ in result.values()])
    errors = np.concatenate([e for _, e in result.values()])
    rows["all"] = float(spearmanr(spreads, errors).correlation)
    for key, rho in rows.items():
        print(f"{key:<24} Spearman {rho:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoints": args.checkpoints, "split": args.split, "spearman": rows}, handle, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for key, (s, e) in result.items():
            ax.scatter(s, e, s=8, alpha=0.6, label=f"{key} ({rows[key]:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("spread between the two checkpoints (A)")
        ax.set_ylabel(f"error of {args.checkpoints[0]} vs DFT (A)")
        ax.set_title(f"{args.split}: Spearman {rows['all']:.2f} over all structures", fontsize=10)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=130)
        plt.close(fig)


if __name__ == "__main__":
    main()
