"""DefiNet on the bulk val hosts, per host and per group, beside the unrelaxed cell and CHGNet.

    python bench/bulk_report.py --data ../shared/data/bulk_public --checkpoint definet_2d_v2 \\
        [--companion C ...] [--chgnet docs/figures/chgnet_bulk_val.jsonl] \\
        [--json docs/figures/bulk_val.json] [--plot docs/figures/bulk_val_ratios.png] [--table docs/figures/bulk_val.md]

Per val pair: the dummy MAE (unrelaxed against DFT), DefiNet's MAE and its ratio to the dummy, the verdict, and
CHGNet's zero-shot MAE where ``bench/chgnet_bulk.py`` measured it. Per host: the means and the ratio of the means;
per group and over all hosts: the mean of the host ratios, each host weighted equally (the issue's measure),
and the verdict's precision and recall for "the prediction is closer to DFT than the unrelaxed cell"
(``dilute_licensed``: the licensed hosts of at least ``DILUTE_ATOMS`` atoms, the measure of the model card). Hosts are
the val hosts the split keeps unseen; ``gorai`` has no licence and is a measuring group only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from definet_core.host_report import host_table, pair_rows, summary
from definet_core.predict import Predictor


def spread_gate(rows: list[dict[str, Any]], target: float = 0.9, splits: int = 200) -> dict[str, Any]:
    """The ensemble spread as a further verdict rule, on the licensed pairs the other rules call in domain.

    ``sweep``: for bounds from 1 to 10 mA, the pairs kept (spread <= bound), the precision of "closer to DFT than
    the unrelaxed cell" among them and the worst ratio of a host with a pair kept. ``held_out``: the bound chosen on
    half of the hosts (the largest that keeps precision >= ``target`` there) applied to the other half, over
    ``splits`` random halvings (seeded): the precision a bound read off val would have on hosts it never saw.
    """
    pairs = [r for r in rows if r["in_domain_before_spread"] and r["group"] != "gorai" and r["spread"] is not None]
    if not pairs:
        return {}

    def kept(members: list[dict[str, Any]], bound: float) -> list[dict[str, Any]]:
        return [r for r in members if r["spread"] <= bound]

    def precision(members: list[dict[str, Any]]) -> float | None:
        return float(np.mean([r["ratio"] < 1.0 for r in members])) if members else None

    sweep = []
    for bound in np.arange(0.001, 0.0105, 0.001):
        inside = kept(pairs, bound)
        worst = max((h["ratio"] for h in host_table(inside) if h["ratio"] is not None), default=None)
        sweep.append({"bound_A": round(float(bound), 4), "kept": len(inside), "precision": precision(inside),
                      "worst_kept_host_ratio": worst})
    hosts = sorted({r["host"] for r in pairs})
    rng = np.random.default_rng(0)
    held_out: list[tuple[float, int]] = []
    for _ in range(splits):
        half = set(rng.permutation(hosts)[: len(hosts) // 2])
        for calibration, test in ((half, set(hosts) - half), (set(hosts) - half, half)):
            ranked = sorted((r for r in pairs if r["host"] in calibration), key=lambda r: r["spread"])
            bound = max((ranked[k]["spread"] for k in range(len(ranked))
                         if precision(ranked[: k + 1]) >= target), default=0.0)
            inside = kept([r for r in pairs if r["host"] in test], bound)
            if inside:
                held_out.append((precision(inside), len(inside)))
    return {"pairs": len(pairs), "target": target, "sweep": sweep,
            "held_out": {"mean_precision": float(np.mean([p for p, _ in held_out])) if held_out else None,
                         "p10_precision": float(np.percentile([p for p, _ in held_out], 10)) if held_out else None,
                         "mean_kept_of_half": float(np.mean([n for _, n in held_out])) if held_out else None}}


def markdown(table: list[dict[str, Any]], report: dict[str, Any], checkpoint: str) -> str:
    """The per-host table and the summary as Markdown."""
    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [f"Bulk val hosts, `{checkpoint}` (`bench/bulk_report.py`)", "",
             "| group | host | pairs | dummy MAE (A) | DefiNet MAE (A) | ratio | CHGNet ratio | in domain |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {h['group']} | {h['host']} | {h['n']} | {h['dummy_mae']:.4f} | {h['mae']:.4f} | "
              f"{cell(h['ratio'], '.3f')} | {cell(h['chgnet_ratio'], '.3f')} | {h['in_domain']}/{h['n']} |"
              for h in table]
    lines += ["", "| group | hosts | pairs | mean host ratio | mean host CHGNet ratio | verdict precision | recall |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['hosts']} | {r['pairs']} | {cell(r['mean_host_ratio'], '.3f')} | "
              f"{cell(r['mean_host_chgnet_ratio'], '.3f')} | {cell(r['verdict']['precision'], '.2f')} "
              f"({r['verdict']['in_domain']} in domain) | {cell(r['verdict']['recall'], '.2f')} |"
              for name, r in report.items() if name != "spread_gate"]
    if "spread_gate" in report:
        gate = report["spread_gate"]
        lines += ["", f"Ensemble spread as a further rule ({gate['pairs']} licensed pairs in domain): held-out "
                  f"precision {cell(gate['held_out']['mean_precision'], '.2f')} (10th percentile "
                  f"{cell(gate['held_out']['p10_precision'], '.2f')}) for a bound read off half the hosts at "
                  f"precision >= {gate['target']}", "", "| bound (A) | kept | precision | worst kept host ratio |",
                  "|---|---|---|---|"]
        lines += [f"| {b['bound_A']} | {b['kept']} | {cell(b['precision'], '.2f')} | "
                  f"{cell(b['worst_kept_host_ratio'], '.2f')} |" for b in gate["sweep"]]
    return "\n".join(lines) + "\n"


def ratio_plot(rows: list[dict[str, Any]], path: Path, checkpoint: str) -> None:
    """Per-structure ratio to the unrelaxed MAE, DefiNet against CHGNet, one colour per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for group in sorted({r["group"] for r in rows}):
        members = [r for r in rows if r["group"] == group and r["ratio"] is not None]
        left.scatter([r["dummy_mae"] for r in members], [r["ratio"] for r in members], s=12, label=group, alpha=0.7)
        both = [r for r in members if r["chgnet_ratio"] is not None]
        right.scatter([r["chgnet_ratio"] for r in both], [r["ratio"] for r in both], s=12, label=group, alpha=0.7)
    left.axhline(1.0, color="k", lw=0.8, ls="--")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("unrelaxed MAE against DFT (A)")
    left.set_ylabel("DefiNet MAE / unrelaxed MAE")
    left.set_title(f"{checkpoint} on the bulk val pairs", fontsize=9)
    top = max([1.5] + [max(r["ratio"] or 0, r["chgnet_ratio"] or 0) for r in rows if r["chgnet_ratio"]])
    right.plot([0.05, top], [0.05, top], "k--", lw=0.8)
    right.set_xscale("log")
    right.set_yscale("log")
    right.axhline(1.0, color="grey", lw=0.6)
    right.axvline(1.0, color="grey", lw=0.6)
    right.set_xlabel("CHGNet (fixed cell) MAE / unrelaxed MAE")
    right.set_ylabel("DefiNet MAE / unrelaxed MAE")
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Print the per-host table and the summary; write the JSON, Markdown and PNG when asked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="the bulk_public directory")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--companion", action="append", default=[], help="ensemble members (repeatable)")
    parser.add_argument("--chgnet", type=Path, default=None, help="bench/chgnet_bulk.py's JSON lines")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=None, help="Markdown table")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    chgnet = {}
    if args.chgnet and args.chgnet.exists():
        for line in args.chgnet.read_text().splitlines():
            row = json.loads(line)
            chgnet[(row["group"], row["host"], row["atoms_id"])] = row
    predictor = Predictor(args.checkpoint, device="cpu", companion=args.companion or None)
    rows = pair_rows(args.data, predictor, chgnet)
    table = host_table(rows)
    report = summary(table, rows)
    gate = spread_gate(rows)
    if gate:
        report["spread_gate"] = gate
    name = "+".join([predictor.checkpoint, *predictor.companion_ids])
    text = markdown(table, report, name)
    print(text)
    if args.table:
        args.table.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": name, "summary": report, "hosts": table, "pairs": rows},
                                        indent=1))
    if args.plot:
        ratio_plot(rows, args.plot, name)


if __name__ == "__main__":
    main()
