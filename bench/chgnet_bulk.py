"""CHGNet zero-shot on the bulk val pairs: how close does its minimum come to the DFT-relaxed structure?

    python bench/chgnet_bulk.py --data ../shared/data/bulk_public --out docs/figures/chgnet_bulk_val.jsonl

For every val pair of ``manifest.csv`` (or ``--split``): CHGNet relaxes the unrelaxed cell with the cell fixed
(FIRE, fmax 0.05 eV/A, at most 500 steps), and one JSON line records the MAE (mean |dx|,|dy|,|dz|, minimum
image) against DFT of the unrelaxed input (``dummy_mae``) and of CHGNet's minimum (``chgnet_mae``), with the
steps taken. This is what a user would try on a bulk host instead of DefiNet. Lines already in ``--out`` are
kept and skipped, so a stopped run resumes; ``bench/bulk_report.py`` reads the file beside DefiNet's figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from definet_core.io import read_structure
from definet_core.metrics import component_mae


def val_pairs(data: Path, split: str) -> list[dict[str, str]]:
    """Manifest rows of ``split`` (group, host, atoms_id, natoms, ...)."""
    with (data / "manifest.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def main() -> None:
    """Relax every pair not yet in ``--out`` and append its line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="the bulk_public directory")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", required=True, type=Path, help="JSON lines, one per pair (appended; resumable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from chgnet.model import StructOptimizer

    done = set()
    if args.out.exists():
        done = {(r["group"], r["host"], r["atoms_id"]) for r in map(json.loads, args.out.read_text().splitlines())}
    todo = [row for row in val_pairs(args.data, args.split) if (row["group"], row["host"], row["atoms_id"]) not in done]
    optimizer = StructOptimizer()
    with args.out.open("a") as out:
        for row in tqdm(sorted(todo, key=lambda r: int(r["natoms"])), desc="CHGNet relaxations", unit="pair"):
            folder = args.data / row["group"] / row["host"] / "CIF"
            unrelaxed = read_structure(folder / f"{row['atoms_id']}_unrelaxed.cif")
            relaxed = read_structure(folder / f"{row['atoms_id']}_relaxed.cif")
            started = time.perf_counter()
            run = optimizer.relax(unrelaxed, fmax=0.05, relax_cell=False, steps=500, verbose=False)
            out.write(json.dumps({
                "group": row["group"], "host": row["host"], "atoms_id": row["atoms_id"], "natoms": int(row["natoms"]),
                "dummy_mae": component_mae(unrelaxed, relaxed),
                "chgnet_mae": component_mae(run["final_structure"], relaxed),
                "chgnet_steps": len(run["trajectory"].energies), "seconds": round(time.perf_counter() - started, 2),
            }) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
