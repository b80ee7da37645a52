"""Several DefiNet checkpoints together: is their mean more accurate, and does their disagreement tell which
predictions are wrong?

    python bench/ensemble_uncertainty.py --data ../shared/data/definet_2d [--split val] \\
        [--checkpoints definet_2d_v2 definet_2d_seed1 [...]] [--plot docs/figures/spread_vs_error.png] [--json F]

For every structure of the split: the spread (mean |dx|,|dy|,|dz| between two checkpoints' predictions over
real atoms, averaged over the pairs) and the errors (the same against DFT) of each checkpoint, of their mean
(what ``Predictor(companion=[...])`` predicts, ``ensemble_mean_and_spread``) and of the unrelaxed input.
Prints per material the MAE of each and the mean's ratio to the unrelaxed MAE, and the Spearman rank
correlation between spread and the mean's error; writes a log-log scatter plot of the two.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import spearmanr

from definet_core.markers import atom_mask
from definet_core.predict import Predictor, ensemble_mean_and_spread

MEAN, UNRELAXED = "mean", "unrelaxed"
"""The error columns besides one per checkpoint: the checkpoints' mean and the unrelaxed input."""


def spread_and_errors(data: str, split: str, checkpoints: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per material: the spread between the checkpoints and the errors of each structure, keyed by checkpoint,
    ``MEAN`` and ``UNRELAXED``."""
    predictors = [Predictor(c, device="cpu") for c in checkpoints]
    loaded: dict[tuple, dict] = {}  # read once per graph plan
    for p in predictors:
        if p.graph_plan not in loaded:
            loaded[p.graph_plan] = p.dataset([data], split, progress=False)
    sets = [loaded[p.graph_plan] for p in predictors]
    result = {}
    for key, graphs in sets[0].items():
        members = [p.predict_graphs(s[key]) for p, s in zip(predictors, sets, strict=True)]
        rows = []
        for graph, *positions in zip(graphs, *members, strict=True):
            atoms = atom_mask(graph.marker)
            mean, spread = ensemble_mean_and_spread(positions, atoms)
            target = graph.y.double()[atoms]
            rows.append([spread] + [float((x[atoms] - target).abs().mean())
                                    for x in (*positions, mean, graph.pos.double())])
        columns = np.array(rows).T
        result[key] = {"spread": columns[0], **dict(zip([*checkpoints, MEAN, UNRELAXED], columns[1:], strict=True))}
    return result


def main() -> None:
    """Print the correlations and write the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoints", nargs="+", default=["definet_2d_v2", "definet_2d_large"])
    parser.add_argument("--plot", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        parser.error("--checkpoints: give at least two checkpoints")
    result = spread_and_errors(args.data, args.split, args.checkpoints)
    rho = {key: float(spearmanr(r["spread"], r[MEAN]).correlation) for key, r in result.items()}
    rho["all"] = float(spearmanr(*(np.concatenate([r[name] for r in result.values()])
                                   for name in ("spread", MEAN))).correlation)
    columns = [*args.checkpoints, MEAN, UNRELAXED]
    mae = {key: {name: float(r[name].mean()) for name in columns} for key, r in result.items()}
    print(f"{'set':<24}{UNRELAXED:>10}" + "".join(f"{c[:16]:>17}" for c in args.checkpoints)
          + f"{MEAN:>9}{'mean ratio':>11}{'Spearman':>9}")
    for key, row in mae.items():
        print(f"{key:<24}{row[UNRELAXED]:>10.4f}" + "".join(f"{row[c]:>17.4f}" for c in args.checkpoints)
              + f"{row[MEAN]:>9.4f}{row[MEAN] / row[UNRELAXED]:>11.3f}{rho[key]:>9.2f}")
    for name in columns[:-1]:
        label = f"mean of all {len(args.checkpoints)}" if name == MEAN else name
        print(f"{label}: mean MAE {np.mean([row[name] for row in mae.values()]):.4f}, mean ratio "
              f"{np.mean([row[name] / row[UNRELAXED] for row in mae.values()]):.3f}")
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
            ax.scatter(r["spread"], r[MEAN], s=8, alpha=0.6, label=f"{key} ({rho[key]:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("spread between the checkpoints (A)")
        ax.set_ylabel("error of their mean vs DFT (A)")
        ax.set_title(f"{args.split}: Spearman {rho['all']:.2f} over all structures", fontsize=10)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=130)
        plt.close(fig)


if __name__ == "__main__":
    main()
