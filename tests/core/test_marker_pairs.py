"""The per-node-then-gather marker-pair products equal the edge-by-edge ones."""

import torch

from definet_core.marker_pairs import gather_with_pair, pair_sum


def test_gather_with_pair_is_the_edgewise_product_and_pair_sum_adds_both_ends():
    torch.manual_seed(0)
    nodes, markers, features, edges = 30, 4, 8, 200
    values, table = torch.randn(nodes, features), torch.randn(markers, features)
    factor = torch.randn(markers, markers, features)
    marker = torch.randint(0, markers, (nodes,))
    src, dst = torch.randint(0, nodes, (2, edges))
    expected = values[src] * factor[marker[src], marker[dst]]
    assert torch.equal(gather_with_pair(values, factor, marker, src, dst), expected)
    assert torch.equal(pair_sum(table)[marker[src], marker[dst]], table[marker[src]] + table[marker[dst]])
    # an asymmetric factor is read [source marker, target marker], not the other way round
    assert not torch.equal(gather_with_pair(values, factor.transpose(0, 1), marker, src, dst), expected)
