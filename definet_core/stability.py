"""Bounds that keep a model finite far outside its training data (``ModelConfig.vector_clip`` and
``displacement_clip``): why they are needed is told in ``definet_core.model``. Both architectures use them; they
act through norms (equivariance kept) and change nothing where the model stays within them.
"""

from __future__ import annotations

import math

import torch
from torch_geometric.utils import scatter


def _active(limit: float) -> bool:
    """Whether a clip ``limit`` bounds anything (0 and inf mean no bound)."""
    return 0.0 < limit < math.inf


def clip_vectors(v: torch.Tensor, limit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vector features ``v`` (N, 3, F) with each channel's norm bounded by ``limit`` (exactly ``v`` where within it),
    and each node's excess (N, 1): its largest channel norm over ``limit``, at least 1."""
    if not _active(limit):
        return v, v.new_ones(v.shape[0], 1)
    norm = torch.sqrt((v * v).sum(dim=1, keepdim=True) + 1e-12)  # the epsilon keeps the gradient at 0 finite
    return v * (limit / norm.clamp_min(limit)), norm.amax(dim=-1).clamp_min(limit) / limit


def shrink_runaways(pos: torch.Tensor, start: torch.Tensor, excess: torch.Tensor, batch: torch.Tensor,
                    num_graphs: int) -> torch.Tensor:
    """Positions of each graph whose vector features exceeded the clip moved back towards ``start``: its
    displacements divided by its largest ``excess``; exactly ``pos`` in graphs that stayed within the clip."""
    factor = scatter(excess, batch, dim=0, dim_size=num_graphs, reduce="max")[batch]
    return torch.where(factor > 1.0, start + (pos - start) / factor, pos)


def clip_displacement(pos: torch.Tensor, start: torch.Tensor, limit: float) -> torch.Tensor:
    """``pos`` with every row within ``limit`` of ``start``: exactly ``pos`` where it already is."""
    if not _active(limit):
        return pos
    delta = pos - start
    squared = (delta * delta).sum(dim=-1, keepdim=True)
    return torch.where(squared > limit * limit, start + delta * (limit / torch.sqrt(squared + 1e-12)), pos)
