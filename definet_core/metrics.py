"""Displacement metrics of the DefiNet paper, per structure and averaged over structures."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres
from torch_geometric.data import Data

from definet_core.markers import Marker, atom_mask

LOCAL_RADIUS = 3.0
"""Atoms within this distance (A) of a defect node count as local to the defect."""


def defect_distances(data: Data, cutoff: float) -> np.ndarray:
    """For each node, the periodic distance (A) to the nearest defect node (substitution, vacancy, interstitial;
    0 for a defect node itself), ``inf`` beyond ``cutoff`` or where the cell holds no defect. One neighbour search."""
    marker = data.marker.numpy()
    pos = data.pos.double().numpy()
    defects = np.flatnonzero(marker != Marker.PRISTINE)
    distance = np.full(len(marker), np.inf)
    if len(defects):
        lattice = Lattice(data.cell[0].double().numpy())
        _, points, _, distances = find_points_in_spheres(
            pos, np.ascontiguousarray(pos[defects]), float(cutoff), np.array([1, 1, 1], dtype=np.int64),
            np.ascontiguousarray(lattice.matrix), tol=1e-8,
        )
        np.minimum.at(distance, points, distances)
    return distance


def near_defect_mask(data: Data, radius: float = LOCAL_RADIUS) -> np.ndarray:
    """True for real atoms within ``radius`` of any defect node (substitution, vacancy, interstitial)."""
    return (defect_distances(data, radius) <= radius) & atom_mask(data.marker.numpy())


def structure_errors(data: Data, predicted: torch.Tensor) -> dict[str, float]:
    """mae / dummy_mae (mean |dx|,|dy|,|dz| over real atoms) and their 3 A local variants (NaN if no defect)."""
    atoms = atom_mask(data.marker).numpy()
    local = near_defect_mask(data)
    target = data.y.double().numpy()
    model_error = np.abs(predicted.double().numpy() - target)
    dummy_error = np.abs(data.pos.double().numpy() - target)
    result = {"mae": float(model_error[atoms].mean()), "dummy_mae": float(dummy_error[atoms].mean())}
    has_local = bool(local.any())
    result["local_mae_3A"] = float(model_error[local].mean()) if has_local else float("nan")
    result["dummy_local_mae_3A"] = float(dummy_error[local].mean()) if has_local else float("nan")
    return result


def average_errors(rows: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean of each metric over structures (local metrics over structures that have defects); adds ``n`` and
    ``ratio`` (``mae_ratio`` of the means). A structure whose prediction is not finite makes ``mae`` NaN rather
    than dropping out of the mean: a split with a diverged prediction is not reported as a good one."""
    summary: dict[str, float | None] = {"n": len(rows)}
    for key in ("mae", "dummy_mae"):
        values = np.array([row[key] for row in rows], dtype=float)
        summary[key] = float(values.mean()) if len(values) else float("nan")
    for key in ("local_mae_3A", "dummy_local_mae_3A"):  # NaN for a structure without defects: left out
        values = np.array([row[key] for row in rows], dtype=float)
        summary[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    summary["ratio"] = mae_ratio(summary["mae"], summary["dummy_mae"])
    return summary


def mae_ratio(mae: float, dummy_mae: float) -> float | None:
    """``mae / dummy_mae``, or None (null in JSON, n/a in tables) where the dummy MAE is zero or not finite: a split
    whose atoms do not move at all has no ratio."""
    return float(mae / dummy_mae) if np.isfinite(dummy_mae) and dummy_mae > 0 else None


def verdict_scores(closer: list[bool], in_domain: list[bool]) -> dict[str, float | int | None]:
    """How well "in domain" calls "the prediction is closer to DFT than the unrelaxed cell" (``closer``), one entry
    per structure: how many are called and closer, and the precision and recall of the call (None when undefined)."""
    hits = sum(c and d for c, d in zip(closer, in_domain, strict=True))
    return {"in_domain": sum(in_domain), "helps": sum(closer),
            "precision": hits / sum(in_domain) if any(in_domain) else None,
            "recall": hits / sum(closer) if any(closer) else None}


def site_displacements(start: Structure, end: Structure) -> np.ndarray:
    """Cartesian vectors from each site of ``start`` to the nearest periodic image of the same site of ``end``
    (same sites, same lattice): the one minimum-image displacement of the project."""
    delta = end.frac_coords - start.frac_coords
    return (delta - np.rint(delta)) @ start.lattice.matrix


def component_mae(a: Structure, b: Structure) -> float:
    """Mean |dx|,|dy|,|dz| between two structures with the same sites, minimum image."""
    return float(np.abs(site_displacements(a, b)).mean())


def max_site_distance(a: Structure, b: Structure) -> float:
    """Largest minimum-image distance between corresponding sites (A)."""
    return float(np.linalg.norm(site_displacements(a, b), axis=1).max())
