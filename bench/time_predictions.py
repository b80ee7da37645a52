"""Structures/s of one checkpoint's ``Predictor.predictions`` on cases stored by ``bench_router.py``, run by that
bench under an earlier revision's code (``--previous-code``): ``PYTHONPATH`` names the revision's tree, so
``definet_core`` is imported from there. Kept to the API every revision has (``Predictor(checkpoint, device)``,
``predictions(structures, hosts)``).

    PYTHONPATH=<tree> python bench/time_predictions.py CHECKPOINT CASES.json REPEATS THREADS

Prints the imported ``definet_core`` folder, then the rate.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from pymatgen.core import Structure

import definet_core
from definet_core.predict import Predictor


def best_rate(predictor: Predictor, structures: list[Structure], hosts: list[Structure], repeats: int) -> float:
    """Structures/s of ``predictor.predictions`` on the structures, best of ``repeats`` after one warm-up call
    (also ``bench_router.py``'s measure)."""
    predictor.predictions(structures[:2], hosts[:2])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predictions(structures, hosts)
        best = min(best, time.perf_counter() - start)
    return len(structures) / best


def main() -> None:
    """Time the cases and print the rate."""
    checkpoint, cases_file, repeats, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    cases = json.loads(cases_file.read_text())
    structures = [Structure.from_dict(case["structure"]) for case in cases]
    hosts = [Structure.from_dict(case["host"]) for case in cases]
    rate = best_rate(Predictor(checkpoint, device="cpu"), structures, hosts, repeats)
    print(Path(definet_core.__file__).parent)
    print(rate)


if __name__ == "__main__":
    main()
