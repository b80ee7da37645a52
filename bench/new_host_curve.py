"""Learning curve of a host the model never saw: fine-tuned from a left-out model against trained from scratch.

    python bench/new_host_curve.py --data ../shared/data/definet_2d --material high_density/WSe2 \\
        --base experiments/loo_WSe2.pt [--second experiments/loo_WSe2_seed1.pt] [--reference definet_2d_v2] \\
        [--ns 10 25 50 100 400] [--settings-ns 25 100] [--epochs 40] [--lr 1e-3] [--compile] \\
        --out docs/figures/new_host_WSe2.json --plot docs/figures/new_host_WSe2.png

``--base`` is a model trained on everything except ``--material`` (both densities; ``training/loo_run.sh``
trains them). On the material's val split the script measures the base model zero-shot (its ratio, and how well
its verdict's "in domain" calls "closer to DFT than the unrelaxed cell") and the ``--reference``
model that saw all of its train pairs, then for each N of ``--ns`` (nested, seeded subsets of its train pairs)
a model fine-tuned from the base and one trained from scratch with the base's settings, on the same N pairs.
Of each subset a fifth (at least 2) is the early-stopping split, so N counts every DFT pair used and the val
split is only measured. With ``--second`` (a left-out model of another seed), N = 25 and 50 (``--spread-ns``)
are also chosen by the two models' spread (the pairs they disagree on most) and compared with three random
draws of N. With ``--settings-ns``, the fine-tune settings of ``VARIANTS`` (learning rate, frozen parts, published
pairs mixed in) are compared at those N.
The JSON holds every ratio (model MAE / unrelaxed MAE on val) and the N at which the fine-tuned curve reaches
ratio 0.6 and 0.5, and 1.1x the ratio of the model that saw all of the material's pairs (interpolated in log N).
Checkpoints go to ``--workdir`` (experiments, not shipped).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch_geometric.data import Data

from definet_core.applicability import Domain, judge
from definet_core.checkpoint import read_checkpoint
from definet_core.config import ModelConfig
from definet_core.dataset import load_dataset
from definet_core.graph import regraph
from definet_core.markers import atom_mask
from definet_core.metrics import average_errors, structure_errors, verdict_scores
from definet_core.predict import Predictor, ensemble_mean_and_spread
from definet_core.train import TrainConfig, train

RANDOM_DRAWS = 3
VARIANTS: dict[str, dict[str, Any]] = {
    "lr 3e-4": {"lr": 3e-4},
    "lr 3e-3": {"lr": 3e-3},
    "frozen embeddings": {"freeze": ("element_embedding", "marker_embedding")},
    "frozen embeddings and layers 0-1": {"freeze": ("element_embedding", "marker_embedding", "layers.0", "layers.1")},
    "mixed 1:1 with published pairs": {"mix": 1},
}
"""Fine-tune settings that ``--settings-ns`` compares with the default (``--lr``, nothing frozen, new pairs only)."""


def ratio(checkpoint: str | Path, graphs: list[Data], settings: tuple[float, int]) -> float:
    """Mean MAE over mean unrelaxed MAE of ``checkpoint`` on ``graphs`` (built with ``settings``: radius, neighbours;
    rebuilt for a checkpoint whose graph settings differ)."""
    predictor = Predictor(checkpoint, device="auto")
    own = (predictor.config.radius, predictor.config.max_neighbors)
    if own != settings:
        graphs = [regraph(g, *own) for g in graphs]
    errors = average_errors([structure_errors(g, p) for g, p in zip(graphs, predictor.predict_graphs(graphs),
                                                                   strict=True)])
    return errors["ratio"]


def reason_kind(reason: str) -> str:
    """A verdict's reason without its particulars (numbers become N, the text after a colon goes), so that a
    list of reasons says which rules refused."""
    return re.sub(r"\d+(\.\d+)?", "N", reason.split(":")[0]).split(" (")[0]


def zero_shot(checkpoint: str | Path, graphs: list[Data]) -> tuple[float, dict[str, Any]]:
    """The left-out model on the new host's val structures (built with its own graph settings), from one
    prediction: its ratio, and how well its verdict's "in domain" calls "closer to DFT than the unrelaxed cell",
    with the reasons it gives against; ``without_host_rule``: the same verdict with the domain's host systems
    ignored (what the verdict would say from elements, defect kinds and geometry alone)."""
    predictor = Predictor(checkpoint, device="auto")
    predictions = predictor.predict_graphs(graphs)
    errors = [structure_errors(g, p) for g, p in zip(graphs, predictions, strict=True)]
    helps = [e["mae"] < e["dummy_mae"] for e in errors]

    def scored(domain: Domain) -> dict[str, Any]:
        verdicts = [judge(g, p, domain) for g, p in zip(graphs, predictions, strict=True)]
        reasons = sorted({reason_kind(reason) for v in verdicts for reason in v.reasons})
        return {**verdict_scores(helps, [v.in_domain for v in verdicts]), "reasons": reasons}

    report = {"n": len(graphs), **scored(predictor.domain),
              "without_host_rule": scored(replace(predictor.domain, host_systems=()))}
    return average_errors(errors)["ratio"], report


def split_subset(graphs: list[Data]) -> tuple[list[Data], list[Data]]:
    """(train, early-stopping) parts of an N-pair subset: the last fifth, at least 2, stops the training."""
    stop = max(2, len(graphs) // 5)
    return graphs[:-stop], graphs[-stop:]


def trained(graphs: list[Data], key: str, out: Path, config: ModelConfig, options: argparse.Namespace,
            init: Path | None, variant: dict[str, Any] | None = None,
            published: list[Data] | None = None) -> Path:
    """A model trained on ``graphs`` (fine-tuned from ``init`` when given), its best-epoch checkpoint. A finished
    run is reused and a stopped one resumed, so a killed curve picks up where it stopped. ``variant`` overrides
    the fine-tune's settings (``lr``, ``freeze``; ``mix``: that many published pairs per new pair, drawn from
    ``published``, join the training part; early stopping stays on the new host's pairs)."""
    finished = out.with_suffix(".summary.json")
    if finished.exists():
        return out
    variant = dict(variant or {})
    mix = variant.pop("mix", 0)
    fit, stop = split_subset(graphs)
    if mix:
        picked = np.random.default_rng(options.seed).choice(len(published), mix * len(fit), replace=False)
        fit = fit + [published[i] for i in picked]
    schedule = TrainConfig(**{"epochs": options.epochs, "batch_size": min(8, len(fit)), "lr": options.lr,
                              "early_stop_patience": options.patience, "compile": options.compile,
                              "seed": options.seed, **variant})
    summary = train([], out, config, schedule, resume=True, sets=({key: fit}, {key: stop}),
                    init=init, progress=False)
    finished.write_text(json.dumps(summary))
    return out


def spreads(first: str | Path, second: str | Path, graphs: list[Data]) -> np.ndarray:
    """Mean |dx|,|dy|,|dz| between two models' predictions over each graph's real atoms."""
    a, b = (Predictor(c, device="auto").predict_graphs(graphs) for c in (first, second))
    return np.array([ensemble_mean_and_spread([p, q], atom_mask(g.marker))[1] for g, p, q in zip(graphs, a, b,
                                                                                                 strict=True)])


def pairs_needed(ns: list[int], ratios: list[float], target: float) -> float | None:
    """The N (interpolated in log N) at which ``ratios`` first reach ``target``; None if they never do."""
    points = list(zip(ns, ratios, strict=True))
    for i, (n, value) in enumerate(points):
        if value <= target:
            if i == 0:
                return float(n)
            n0, value0 = points[i - 1]
            fraction = (value0 - target) / (value0 - value)
            return float(math.exp(math.log(n0) + fraction * (math.log(n) - math.log(n0))))
    return None


def curve(options: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-able dict."""
    config = ModelConfig.from_dict(read_checkpoint(options.base)["config"])
    root = options.data / options.material
    train_graphs = next(iter(load_dataset([root], "train", config.radius, config.max_neighbors).values()))
    val = next(iter(load_dataset([root], "val", config.radius, config.max_neighbors).values()))
    key = options.material
    settings = (config.radius, config.max_neighbors)
    order = np.random.default_rng(options.seed).permutation(len(train_graphs))
    workdir = options.workdir / options.material.replace("/", "_")
    workdir.mkdir(parents=True, exist_ok=True)
    options.ns = [n for n in options.ns if n <= len(train_graphs)]
    zero_shot_ratio, zero_shot_verdict = zero_shot(options.base, val)
    result: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "material": key,
                              "base": str(options.base), "ns": options.ns,
                              "zero_shot_ratio": zero_shot_ratio, "zero_shot_verdict": zero_shot_verdict,
                              "reference": options.reference,
                              "reference_ratio": ratio(options.reference, val, settings),
                              "fine_tuned": [], "scratch": []}
    for n in options.ns:
        subset = [train_graphs[i] for i in order[:n]]
        result["fine_tuned"].append(ratio(trained(subset, key, workdir / f"ft_{n}.pt", config, options,
                                                  options.base), val, settings))
        result["scratch"].append(ratio(trained(subset, key, workdir / f"scratch_{n}.pt", config, options, None), val,
                                       settings))
        print(f"{key} N={n}: fine-tuned {result['fine_tuned'][-1]:.3f}, scratch {result['scratch'][-1]:.3f}",
              flush=True)
    for target in (0.6, 0.5):
        result[f"pairs_for_ratio_{target}"] = pairs_needed(options.ns, result["fine_tuned"], target)
    # a target every host can reach: within 10 % of the model that saw all of its pairs
    result["pairs_for_1.1x_reference"] = pairs_needed(options.ns, result["fine_tuned"], 1.1 * result["reference_ratio"])
    if options.second:
        spread = spreads(options.base, options.second, train_graphs)
        ranked = np.argsort(-spread)
        result["selection"] = {}
        for n in [n for n in options.spread_ns if n <= len(train_graphs)]:  # a pool larger than N
            chosen = [train_graphs[i] for i in ranked[:n]]
            by_spread = ratio(trained(chosen, key, workdir / f"spread_{n}.pt", config, options, options.base), val,
                              settings)
            draws = []
            for draw in range(1, RANDOM_DRAWS + 1):
                picked = np.random.default_rng(100 + draw).choice(len(train_graphs), n, replace=False)
                draws.append(ratio(trained([train_graphs[i] for i in picked], key, workdir / f"random_{n}_{draw}.pt",
                                           config, options, options.base), val, settings))
            result["selection"][str(n)] = {"spread": by_spread, "random": draws}
    if options.settings_ns:
        result["settings"] = settings_table(options, config, train_graphs, val, order, workdir)
    return result


def settings_table(options: argparse.Namespace, config: ModelConfig, train_graphs: list[Data], val: list[Data],
                   order: np.ndarray, workdir: Path) -> dict[str, dict[str, float]]:
    """Val ratio of each ``VARIANTS`` fine-tune (and the default's, already trained) at each N of
    ``--settings-ns``, on the curve's nested subsets; "mixed" draws its published pairs from the base model's
    own training sets (its checkpoint names them)."""
    key, settings = options.material, (config.radius, config.max_neighbors)
    roots = read_checkpoint(options.base)["metadata"]["data"]
    published = [g for graphs in load_dataset(roots, "train", *settings).values() for g in graphs]
    table: dict[str, dict[str, float]] = {}
    for n in options.settings_ns:
        subset = [train_graphs[i] for i in order[:n]]
        row = {f"default (lr {options.lr:g})": ratio(trained(subset, key, workdir / f"ft_{n}.pt", config, options,
                                                             options.base), val, settings)}
        for name, variant in VARIANTS.items():
            out = workdir / f"ft_{n}_{name.replace(' ', '_').replace(':', '-')}.pt"
            row[name] = ratio(trained(subset, key, out, config, options, options.base, variant, published), val,
                              settings)
            print(f"{key} N={n} {name}: {row[name]:.3f}", flush=True)
        table[str(n)] = row
    return table


def plot(result: dict[str, Any], path: Path) -> None:
    """Ratio against N (log N): fine-tuned and from scratch, the zero-shot and all-data models as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(result["ns"], result["fine_tuned"], "o-", label="fine-tuned from the left-out model")
    ax.plot(result["ns"], result["scratch"], "s--", label="from scratch")
    ax.axhline(result["zero_shot_ratio"], color="tab:red", lw=1, label="left-out model, zero-shot")
    ax.axhline(result["reference_ratio"], color="tab:green", lw=1, label=f"{result['reference']} (saw all)")
    for target in (0.6, 0.5):
        ax.axhline(target, color="grey", lw=0.6, ls=":")
    for k, (n, values) in enumerate(result.get("selection", {}).items()):
        ax.plot([int(n)] * len(values["random"]), values["random"], "x", color="grey",
                label=None if k else "fine-tuned, N drawn at random")
        ax.plot(int(n), values["spread"], "*", color="k", ms=9, label=None if k else "fine-tuned, N chosen by spread")
    ax.set_xscale("log")
    ax.set_xlabel("DFT pairs of the new host (N)")
    ax.set_ylabel("val MAE / unrelaxed MAE")
    ax.set_title(result["material"], fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Run the curve; write the JSON and the PNG."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--material", required=True, help="e.g. high_density/WSe2")
    parser.add_argument("--base", required=True, type=Path, help="the model trained without the material")
    parser.add_argument("--second", type=Path, default=None, help="a second left-out model (another seed)")
    parser.add_argument("--reference", default="definet_2d_v2", help="a model that saw all the material's pairs")
    parser.add_argument("--ns", type=int, nargs="+", default=[10, 25, 50, 100, 400])
    parser.add_argument("--spread-ns", type=int, nargs="+", default=[25, 50], help="N chosen by spread (--second)")
    parser.add_argument("--settings-ns", type=int, nargs="*", default=[],
                        help="compare the fine-tune settings of VARIANTS at these N (e.g. 25 100)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("experiments/new_host"))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--plot", type=Path, default=None)
    options = parser.parse_args()
    result = curve(options)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2))
    if options.plot:
        plot(result, options.plot)


if __name__ == "__main__":
    main()
