"""How close does a universal force field's minimum come to the DFT-relaxed structure, against DefiNet's one pass?

    python bench/chgnet_vs_dft.py --data ../shared/data/definet_2d --n 6 \\
        [--materials MoS2 hBN BP GaSe] [--checkpoint NAME|FILE] [--json docs/figures/chgnet_vs_dft.json]

For the first ``n`` val structures of each high-density material: the MAE (mean |dx|,|dy|,|dz|, minimum image)
against DFT of the unrelaxed input, of DefiNet's prediction, and of CHGNet relaxations (fixed cell, FIRE,
fmax 0.05 eV/A, at most 500 steps) started from the prediction and from the unrelaxed cell, with their
ionic steps. It answers whether a force-field pre-relaxation would give DFT a better start than DefiNet's
prediction alone. CHGNet takes 0.5-4 min per structure on one core.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from definet_core.dataset import MaterialSet
from definet_core.io import read_structure
from definet_core.metrics import component_mae
from definet_core.predict import Predictor

STARTS = ("unrelaxed", "definet", "chgnet_from_definet", "chgnet_from_unrelaxed")
"""The structures compared with DFT, in the printed order."""


def compare(material: MaterialSet, n: int, predictor: Predictor, optimizer) -> dict[str, float]:
    """Mean MAE of each of ``STARTS`` and the mean CHGNet steps from each start, over ``n`` val structures."""
    host = read_structure(material.unit_cell_path)
    rows = []
    for atoms_id in tqdm(material.split_ids("val")[:n], desc=material.name, leave=False):
        unrelaxed, relaxed = (read_structure(p) for p in material.pair_paths(atoms_id))
        (predicted,) = predictor.predict([unrelaxed], host)
        runs = [optimizer.relax(start, fmax=0.05, relax_cell=False, steps=500, verbose=False)
                for start in (predicted, unrelaxed)]
        structures = [unrelaxed, predicted, *(run["final_structure"] for run in runs)]
        rows.append([component_mae(s, relaxed) for s in structures]
                    + [len(run["trajectory"].energies) for run in runs])
    means = np.array(rows).mean(axis=0)
    return {**dict(zip(STARTS, means[:4].tolist(), strict=True)),
            "steps_from_definet": float(means[4]), "steps_from_unrelaxed": float(means[5])}


def main() -> None:
    """Print one line per material (and write them as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=6, help="val structures per material")
    parser.add_argument("--materials", nargs="+", default=["MoS2", "hBN", "BP", "GaSe"])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from chgnet.model import StructOptimizer

    predictor, optimizer = Predictor(args.checkpoint, device="cpu"), StructOptimizer()
    report = {}
    for name in args.materials:
        r = report[name] = compare(MaterialSet(Path(args.data) / "high_density" / name), args.n, predictor, optimizer)
        ratios = " ".join(f"{start} {r[start]:.4f} ({r[start] / r['unrelaxed']:.2f})" for start in STARTS[1:])
        print(f"{name}: unrelaxed {r['unrelaxed']:.4f}; {ratios}; CHGNet steps {r['steps_from_definet']:.0f} from "
              f"DefiNet vs {r['steps_from_unrelaxed']:.0f} from unrelaxed", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": predictor.checkpoint, "n": args.n, "materials": report}, handle, indent=2)


if __name__ == "__main__":
    main()
