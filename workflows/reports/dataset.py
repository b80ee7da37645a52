"""What a dataset recipe's documents say: status rows per recipe, relaxer and start, and the export of the
relaxed pairs in the layout ``definet train`` reads."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:

    from workflows.defects.recipes import Recipe


def status_rows(uri: str, database: str, recipes: list[str] | None = None) -> list[dict[str, Any]]:
    """Per (recipe, relaxer, start): structures generated, relaxed, converged, failed, and mean ionic steps."""
    from workflows.storage.stores import DatasetStore, RecipeRegistry

    with RecipeRegistry(uri, database) as registry:
        generated: dict[str, set[str]] = defaultdict(set)
        for entry in registry.find({"recipe": {"$in": recipes}} if recipes else {}):
            generated[entry["recipe"]].update(entry["structure_ids"])
    with DatasetStore(uri, database) as store:
        docs = store.find({"recipe": {"$in": recipes}} if recipes else {},
                          ["recipe", "relaxer", "start", "status", "converged", "ionic_steps", "structure_id"])
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        groups[(doc["recipe"], doc["relaxer"], doc["start"])].append(doc)
    rows = []
    for name in sorted(set(generated) | {key[0] for key in groups}):
        keys = sorted(key for key in groups if key[0] == name) or [(name, None, None)]
        for key in keys:
            group = groups.get(key, [])
            steps = [d["ionic_steps"] for d in group if d.get("ionic_steps") is not None]
            rows.append({"recipe": name, "relaxer": key[1], "start": key[2], "generated": len(generated[name]),
                         "relaxed": sum(d["status"] == "complete" for d in group),
                         "converged": sum(d["status"] == "complete" and d.get("converged") is True for d in group),
                         "failed": sum(d["status"] == "failed" for d in group),
                         "mean_ionic_steps": float(np.mean(steps)) if steps else None})
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`status_rows`."""
    header = (f"{'recipe':<16}{'relaxer':<9}{'start':<12}{'generated':>10}{'relaxed':>9}{'converged':>10}"
              f"{'failed':>8}{'mean steps':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        steps = "-" if r["mean_ionic_steps"] is None else f"{r['mean_ionic_steps']:.1f}"
        lines.append(f"{r['recipe']:<16}{r['relaxer'] or '-':<9}{r['start'] or '-':<12}{r['generated']:>10}"
                     f"{r['relaxed']:>9}{r['converged']:>10}{r['failed']:>8}{steps:>12}")
    return "\n".join(lines)


def export_dataset(recipe: Recipe, docs: list[dict[str, Any]], out: Path) -> dict[str, int]:
    """Write ``out/<recipe>/``: CIF pairs of the converged structures, the host unit cell, split csv files.

    ``docs`` are the recipe's documents of one relaxer (either start; a structure relaxed from both starts
    is exported once, from the prediction). Returns counts: exported, unconverged and failed (left out).
    """
    from pymatgen.core import Structure

    from workflows.defects.recipes import split_of

    best: dict[str, dict[str, Any]] = {}
    left_out = {"unconverged": set(), "failed": set()}
    for doc in sorted(docs, key=lambda d: (d["structure_id"], d["start"] != "prediction")):
        if doc["status"] == "failed":
            left_out["failed"].add(doc["structure_id"])
        elif not doc.get("converged"):
            left_out["unconverged"].add(doc["structure_id"])
        else:
            best.setdefault(doc["structure_id"], doc)
    folder = out / recipe.name
    (folder / "CIF").mkdir(parents=True, exist_ok=True)
    from workflows.flows.dataset import recipe_host

    host_id, host = recipe_host(recipe)
    host.to(filename=str(folder / f"{host_id}.cif"))
    for structure_id, doc in best.items():
        for kind in ("unrelaxed", "relaxed"):
            path = folder / "CIF" / f"{structure_id}_{kind}.cif"
            Structure.from_dict(doc[f"{kind}_structure"]).to(filename=str(path))
    for split, ids in split_of(recipe, sorted(best)).items():
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["atoms_id"])
            writer.writerows([i] for i in ids)
    return {"exported": len(best), "unconverged": len(left_out["unconverged"] - set(best)),
            "failed": len(left_out["failed"] - set(best))}
