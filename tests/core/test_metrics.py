"""Scores of the evaluation metrics that the bench scripts report."""

import numpy as np
import torch
from torch_geometric.data import Data

from definet_core.markers import Marker
from definet_core.metrics import defect_distances, near_defect_mask, verdict_scores


def test_verdict_scores_count_calls_that_help_and_report_undefined_scores_as_none():
    scores = verdict_scores(closer=[True, False, True, False], in_domain=[True, True, False, False])
    assert scores == {"in_domain": 2, "helps": 2, "precision": 0.5, "recall": 0.5}
    nothing_called = verdict_scores(closer=[False, True], in_domain=[False, False])
    assert nothing_called["precision"] is None and nothing_called["recall"] == 0.0
    assert verdict_scores(closer=[False], in_domain=[True])["recall"] is None


def test_defect_distances_are_periodic_and_the_near_mask_keeps_only_real_atoms():
    graph = Data(pos=torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 0, 9], [5, 5, 5]]),
                 marker=torch.tensor([Marker.VACANCY, Marker.PRISTINE, Marker.PRISTINE, Marker.PRISTINE]),
                 cell=10 * torch.eye(3).unsqueeze(0))
    assert np.allclose(defect_distances(graph, 9.0), [0, 2, 1, np.sqrt(75)])
    assert np.isinf(defect_distances(graph, 5.0)[3])
    assert near_defect_mask(graph, 3.0).tolist() == [False, True, True, False]  # the vacancy node is not an atom
    graph.marker = torch.zeros(4, dtype=torch.long)
    assert np.isinf(defect_distances(graph, 9.0)).all() and not near_defect_mask(graph).any()
