"""Per-host evaluation of a checkpoint on a dataset whose val hosts are unseen (the bulk set): one row per pair,
per-host means, and the mean host ratio (each host weighted equally) per group, with the verdict's precision and
recall. ``bench/bulk_report.py`` prints and plots it; the shipped-checkpoint test asserts on it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from definet_core.metrics import mae_ratio, structure_errors, verdict_scores
from definet_core.predict import Predictor

DILUTE_ATOMS = 16
"""``dilute_licensed``: the licensed hosts whose val cells all have at least this many atoms (the bulk
checkpoints train with ``--min-atoms 16``; smaller cells are out of their domain)."""


def pair_rows(data: Path, predictor: Predictor, chgnet: dict[tuple[str, str, str], dict]) -> list[dict[str, Any]]:
    """One row per val pair: group, host, atoms_id, natoms, dummy/DefiNet/CHGNet MAE, the verdict, the ensemble
    spread. The prediction is the one the flows use (a router's route, an ensemble's mean); ``in_domain`` is the
    whole verdict, ``in_domain_before_spread`` the verdict without its spread bound (where one applies)."""
    sets = predictor.dataset([data], "val", progress=False)
    rows = []
    for key, graphs in sets.items():
        group, host = key.split("/", 1)
        for graph, position, spread in zip(graphs, *predictor.predicted_graphs(graphs), strict=True):
            errors = structure_errors(graph, position)
            verdict = predictor.judge(graph, position, spread)
            measured = chgnet.get((group, host, graph.atoms_id), {})
            dummy = errors["dummy_mae"]
            rows.append({"group": group, "host": host, "atoms_id": graph.atoms_id,
                         "natoms": int((graph.site_index >= 0).sum()), "dummy_mae": dummy, "mae": errors["mae"],
                         "ratio": mae_ratio(errors["mae"], dummy),
                         "in_domain": verdict.in_domain, "reasons": list(verdict.reasons),
                         "in_domain_before_spread": verdict.in_domain_before_spread, "spread": spread,
                         "chgnet_mae": measured.get("chgnet_mae"),
                         "chgnet_ratio": mae_ratio(measured["chgnet_mae"], dummy) if measured else None})
    return rows


def host_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (group, host): pairs, mean dummy / DefiNet / CHGNet MAE, ratios of the means, pairs in domain."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["group"], row["host"])].append(row)
    table = []
    for (group, host), members in sorted(groups.items()):
        dummy = float(np.mean([r["dummy_mae"] for r in members]))
        mae = float(np.mean([r["mae"] for r in members]))
        chgnet = [r["chgnet_mae"] for r in members if r["chgnet_mae"] is not None]
        table.append({"group": group, "host": host, "n": len(members), "dummy_mae": dummy, "mae": mae,
                      "ratio": mae_ratio(mae, dummy),
                      "chgnet_ratio": mae_ratio(float(np.mean(chgnet)), dummy) if chgnet else None,
                      "chgnet_n": len(chgnet), "in_domain": sum(r["in_domain"] for r in members),
                      "min_natoms": min(r["natoms"] for r in members)})
    return table


def summary(table: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean host ratio (each host weighted equally) per group and over all, and the verdict's precision/recall."""
    def mean_ratio(hosts: list[dict[str, Any]], key: str) -> float | None:
        values = [h[key] for h in hosts if h[key] is not None]
        return float(np.mean(values)) if values else None

    def verdict(pairs: list[dict[str, Any]]) -> dict[str, Any]:
        return verdict_scores([r["ratio"] is not None and r["ratio"] < 1.0 for r in pairs],
                              [r["in_domain"] for r in pairs])

    dilute = {h["host"] for h in table if h["min_natoms"] >= DILUTE_ATOMS}
    selections = {**{group: lambda r, g=group: r["group"] == g for group in sorted({h["group"] for h in table})},
                  "all": lambda r: True, "all_licensed": lambda r: r["group"] != "gorai",
                  "dilute_licensed": lambda r: r["group"] != "gorai" and r["host"] in dilute}
    report: dict[str, Any] = {}
    for name, selected in selections.items():
        hosts = [h for h in table if selected(h)]
        pairs = [r for r in rows if selected(r)]
        in_domain_hosts = [h for h in hosts if h["in_domain"] == h["n"]]
        report[name] = {"hosts": len(hosts), "pairs": len(pairs), "mean_host_ratio": mean_ratio(hosts, "ratio"),
                        "mean_host_chgnet_ratio": mean_ratio([h for h in hosts if h["chgnet_n"] == h["n"]],
                                                             "chgnet_ratio"),
                        "worst_in_domain_host_ratio": max((h["ratio"] for h in in_domain_hosts
                                                           if h["ratio"] is not None), default=None),
                        "verdict": verdict(pairs)}
    return report
