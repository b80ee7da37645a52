"""Where relaxations start: the one ``--start`` policy that the validation and dataset flows share.

``auto`` relaxes a case from DefiNet's prediction where its verdict is in-domain and from the unrelaxed
cell otherwise; ``prediction`` always uses the prediction; ``unrelaxed`` never does. With ``comparison``
(the validation flow's default) a case that starts from the prediction is also relaxed from the unrelaxed
cell, so the two can be compared; the dataset flow relaxes every structure once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from definet_core.errors import DefiNetInputError

if TYPE_CHECKING:
    from workflows.schemas.prediction import PredictedCase

START_CHOICES = ("auto", "prediction", "unrelaxed")
"""The start policies; ``auto`` is the default of every flow and command."""


def check_start(start: str) -> str:
    """``start`` when it is one of ``START_CHOICES``; a one-line error otherwise."""
    if start not in START_CHOICES:
        raise DefiNetInputError(f"--start {start}: expected one of {', '.join(START_CHOICES)}")
    return start


def starts_from_prediction(start: str, in_domain: bool) -> bool:
    """Whether a case's main relaxation starts from DefiNet's prediction under the ``start`` policy, given the
    verdict on that prediction."""
    return check_start(start) == "prediction" or (start == "auto" and in_domain)


def main_start(start: str, in_domain: bool) -> str:
    """Where a case's main relaxation starts under the policy: ``prediction`` or ``unrelaxed`` (what documents
    record as ``start``)."""
    return "prediction" if starts_from_prediction(start, in_domain) else "unrelaxed"


def relaxation_starts(start: str, comparison: bool, predicted: PredictedCase) -> tuple[bool, bool]:
    """(relax from the prediction, relax from the unrelaxed cell) for one case under the policy."""
    use_prediction = starts_from_prediction(start, predicted.in_domain)
    return use_prediction, comparison or not use_prediction
