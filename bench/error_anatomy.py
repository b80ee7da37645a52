"""Where a checkpoint's error lies, per material: in-plane vs out-of-plane, near vs far from the defects,
and how it spreads over the structures.

    python bench/error_anatomy.py --data ../shared/data/definet_2d [--split val] [--checkpoint NAME|FILE] \\
        [--json docs/figures/error_anatomy_val.json]

Per material (mean |dx|,|dy|,|dz| over real atoms, as ``definet evaluate``):
- ``drift``: the mean DFT displacement vector of a cell, |.| averaged over components and structures (a
  rigid shift no model could predict);
- ``err_xy`` / ``err_z``: the model's error in-plane and out-of-plane (``dummy_z``: the DFT out-of-plane motion);
- ``near`` / ``far``: error and DFT displacement of atoms within / beyond ``LOCAL_RADIUS`` of a defect,
  and ``near_share``, the near atoms' share of the summed error;
- ``shells``: per shell of distance from the nearest defect (``SHELLS``, A; the last open-ended), its share
  of the atoms, the model's error over the DFT displacement there, and its share of the summed error;
- ``ratio_q``: quantiles (0, 25, 50, 75, 100 %) of the per-structure ratio to the unrelaxed error, and
  ``ratio_vs_defects``: its correlation with the number of defects.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from definet_core.markers import Marker, atom_mask
from definet_core.metrics import LOCAL_RADIUS, defect_distances
from definet_core.predict import Predictor

SHELLS = (3.0, 5.0, 7.0, 9.0)
"""Outer radii (A) of the distance shells around the defects; atoms beyond the last form a shell of their own."""


def shell_index(distance: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    """For each distance from the nearest defect, the first shell (``radii``, ascending) that holds it, else
    ``len(radii)``."""
    return np.searchsorted(np.asarray(radii), distance, side="left")


def anatomy(graphs: list, predicted: list, radii: tuple[float, ...] = SHELLS) -> dict[str, float | list]:
    """The figures of one material (see the module docstring)."""
    rows, near_err, far_err, near_dft, far_dft, defects, shells = [], [], [], [], [], [], []
    for graph, positions in zip(graphs, predicted, strict=True):
        atoms = atom_mask(graph.marker).numpy()
        distance = defect_distances(graph, max(radii[-1], LOCAL_RADIUS))[atoms]
        near = distance <= LOCAL_RADIUS
        start = graph.pos.double().numpy()[atoms]
        target = graph.y.double().numpy()[atoms]
        error = positions.double().numpy()[atoms] - target
        dft = target - start
        rows.append([np.abs(dft.mean(0)).mean(), np.abs(error[:, :2]).mean(), np.abs(error[:, 2]).mean(),
                     np.abs(dft[:, 2]).mean(), np.abs(error).mean() / np.abs(dft).mean()])
        per_atom_error, per_atom_dft = np.abs(error).mean(1), np.abs(dft).mean(1)
        near_err.append(per_atom_error[near])
        far_err.append(per_atom_error[~near])
        near_dft.append(per_atom_dft[near])
        far_dft.append(per_atom_dft[~near])
        defects.append(int((graph.marker != Marker.PRISTINE).sum()))
        shells.append(np.stack([shell_index(distance, radii), per_atom_error, per_atom_dft]))
    columns = np.array(rows).T
    near_err, far_err = np.concatenate(near_err), np.concatenate(far_err)
    shell, shell_err, shell_dft = np.concatenate(shells, axis=1)
    return {"drift": float(columns[0].mean()), "err_xy": float(columns[1].mean()), "err_z": float(columns[2].mean()),
            "dummy_z": float(columns[3].mean()),
            "near_err": float(near_err.mean()), "near_dft": float(np.concatenate(near_dft).mean()),
            "far_err": float(far_err.mean()) if far_err.size else 0.0,
            "far_dft": float(np.concatenate(far_dft).mean()) if far_err.size else 0.0,
            "near_share": float(near_err.sum() / (near_err.sum() + far_err.sum())),
            "shells": [{"from": lo, "to": hi, "atoms": float((shell == k).mean()),
                        "ratio": float(shell_err[shell == k].sum() / shell_dft[shell == k].sum()),
                        "error_share": float(shell_err[shell == k].sum() / shell_err.sum())}
                       for k, (lo, hi) in enumerate(zip((0.0, *radii), (*radii, None), strict=True))
                       if (shell == k).any()],
            "ratio_q": np.quantile(columns[4], [0, 0.25, 0.5, 0.75, 1]).round(3).tolist(),
            "ratio_vs_defects": float(np.corrcoef(defects, columns[4])[0, 1]) if len(set(defects)) > 1 else 0.0}


def main() -> None:
    """Print the table (and write it as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    predictor = Predictor(args.checkpoint, device="cpu")
    sets = predictor.dataset([args.data], args.split, progress=False)
    report = {key: anatomy(graphs, predictor.predict_graphs(graphs)) for key, graphs in sets.items()}
    print(f"{predictor.checkpoint}, {args.split}")
    print(f"{'set':<22}{'drift':>7}{'err_xy':>8}{'err_z':>7}{'dummy_z':>8}{'near err/dft':>16}{'far err/dft':>16}"
          f"{'near share':>11}  {'per-structure ratio quantiles':<32}{'r(defects)':>10}")
    for key, r in report.items():
        print(f"{key:<22}{r['drift']:>7.4f}{r['err_xy']:>8.4f}{r['err_z']:>7.4f}{r['dummy_z']:>8.4f}"
              f"{r['near_err']:>9.4f}/{r['near_dft']:<6.4f}{r['far_err']:>9.4f}/{r['far_dft']:<6.4f}"
              f"{r['near_share']:>11.2f}  {r['ratio_q']!s:<32}{r['ratio_vs_defects']:>10.2f}")
    print("\nby distance from the nearest defect: share of the atoms / error over DFT motion / share of the error")
    for key, r in report.items():
        cells = [f"{s['from']:g}-{'' if s['to'] is None else format(s['to'], 'g'):<2} A "
                 f"{s['atoms']:.2f}/{s['ratio']:.3f}/{s['error_share']:.2f}" for s in r["shells"]]
        print(f"{key:<22}" + "  ".join(cells))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": predictor.checkpoint, "split": args.split, "sets": report}, handle, indent=2)


if __name__ == "__main__":
    main()
