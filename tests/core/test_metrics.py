"""Scores of the evaluation metrics that the bench scripts report."""

from definet_core.metrics import verdict_scores


def test_verdict_scores_count_calls_that_help_and_report_undefined_scores_as_none():
    scores = verdict_scores(closer=[True, False, True, False], in_domain=[True, True, False, False])
    assert scores == {"in_domain": 2, "helps": 2, "precision": 0.5, "recall": 0.5}
    nothing_called = verdict_scores(closer=[False, True], in_domain=[False, False])
    assert nothing_called["precision"] is None and nothing_called["recall"] == 0.0
    assert verdict_scores(closer=[False], in_domain=[True])["recall"] is None
