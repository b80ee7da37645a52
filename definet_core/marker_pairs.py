"""Per-edge products of a node's values and a factor of the edge's (source marker, target marker) pair.

Both architectures modulate every message by the markers of its two ends (ours: a learned factor per pair;
the reference: the sum of the two ends' projected markers). Formed edge by edge, that is two gathers of an
(edges, features) tensor and a product, on the largest tensors of a forward pass (about 33 edges per node in
a 6 A / 50 graph). With a handful of markers the products can be formed per node and marker of the other end
instead, and each edge's row gathered once: the same numbers, fewer passes over the edges.
"""

from __future__ import annotations

import torch


def gather_with_pair(node_values: torch.Tensor, pair_factor: torch.Tensor, marker: torch.Tensor,
                     src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``node_values[src] * pair_factor[marker[src], marker[dst]]`` for every edge (E, F).

    ``node_values`` (N, F); ``pair_factor`` (M, M, F), indexed [source marker, target marker]; ``marker`` (N,)
    in [0, M). Forms the (N, M, F) products of each node with every target marker, then reads one row per edge.
    """
    markers = pair_factor.shape[1]
    products = node_values.unsqueeze(1) * pair_factor[marker]
    return products.reshape(-1, node_values.shape[-1])[src * markers + marker[dst]]


def pair_sum(table: torch.Tensor) -> torch.Tensor:
    """(M, M, F) factors ``table[a] + table[b]`` of a per-marker table (M, F): the sum of the two ends' rows."""
    return table.unsqueeze(1) + table.unsqueeze(0)
