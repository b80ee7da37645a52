"""What routing costs: whole ``Predictor.predictions`` calls through the default router against its route alone.

    python bench/bench_router.py [--n 32] [--repeats 3] [--threads 2] [--previous definet_v3] [--checkpoint R]
                                 [--previous-code REVISION]

Two workloads, each timed through the routing default and through the first model of the route that serves
it, in this one process: dense-defect 8x8 MoS2 monolayer supercells (2D route, one model: the cost of
routing) and Si vacancies and substitutions in the default bulk supercell of ``mp-149`` (bulk route, a
two-model ensemble, against its first member alone: the ensemble's cost), plus a mixed list of all through
the router. Each 2D specialist (``definet router --specialist``) adds cells it serves, timed against its first
member alone: dense-defect 8x8 hBN cells for one whose domain holds the B-N host system, single-defect 8x8
MoS2 cells for another (the dilute specialist). Graph building, the model and the
verdicts are all inside the timed call (batch 16, eager, CPU). Prints structures/s (best of ``--repeats``) and
the ratio of the router to the route alone; with ``--previous``, also the ratio of the default to that earlier
default on the same workloads (what a change of the default costs). ``--checkpoint``: time another router (a
candidate default, ``definet router``) in the default's place. ``--previous-code``: also time the earlier default
as the code of an earlier git revision ran it (``git archive`` into a temporary folder, ``time_predictions.py``
in a subprocess, same workloads and run): speed-ups of the shared code since then speed up both defaults in
the same-code ratio, which then no longer says what users of the earlier default saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from time_predictions import best_rate  # bench/, this script's folder

from definet_core.checkpoint import read_checkpoint, read_router
from definet_core.predict import Predictor


def mos2_cases(n: int) -> list[tuple[Structure, Structure]]:
    """``n`` dense-defect MoS2 8x8 cases (structure, pristine supercell)."""
    from workflows.defects.enumeration import dense_defects
    from workflows.hosts import resolve_host

    host_id, host = resolve_host("MoS2-1L")
    found = dense_defects(host_id, host, np.diag([8, 8, 1]), n, vacancies={"S": 5, "Mo": 2},
                          substitutions={"Mo": {"W": 4}, "S": {"Se": 2}}, seed=1)
    return [(c.structure, c.pristine) for c in found]


def dilute_mos2_cases(n: int) -> list[tuple[Structure, Structure]]:
    """``n`` single-defect MoS2 8x8 cases (S and Mo vacancies, W on Mo, Se on S), repeated to ``n``."""
    from workflows.defects.enumeration import single_defects
    from workflows.hosts import resolve_host

    host_id, host = resolve_host("MoS2-1L")
    found = single_defects(host_id, host, np.diag([8, 8, 1]), substitutions={"Mo": ["W"], "S": ["Se"]})
    return [(found[i % len(found)].structure, found[i % len(found)].pristine) for i in range(n)]


def dense_hbn_cases(n: int) -> list[tuple[Structure, Structure]]:
    """``n`` dense-defect hBN 8x8 cases (B and N vacancies, C on either; 10 of 128 sites)."""
    from workflows.defects.enumeration import dense_defects
    from workflows.hosts import resolve_host

    host_id, host = resolve_host("hBN-1L")
    found = dense_defects(host_id, host, np.diag([8, 8, 1]), n, vacancies={"B": 2, "N": 2},
                          substitutions={"B": {"C": 3}, "N": {"C": 3}}, seed=1)
    return [(c.structure, c.pristine) for c in found]


def silicon_cases(n: int) -> list[tuple[Structure, Structure]]:
    """``n`` Si cases of the default bulk supercell: the vacancy and substitutions, repeated to ``n``."""
    from workflows.defects.enumeration import choose_supercell, single_defects
    from workflows.hosts import resolve_host

    host_id, host = resolve_host("mp-149")
    matrix = choose_supercell(host)
    found = single_defects(host_id, host, matrix, substitutions={"Si": ["Ge", "C", "Sn"]})
    pristine = host.copy()
    pristine.make_supercell(matrix)
    return [(found[i % len(found)].structure, pristine) for i in range(n)]


def rate(predictor: Predictor, cases: list[tuple[Structure, Structure]], repeats: int) -> float:
    """Structures/s of ``predictor.predictions`` on ``cases``, best of ``repeats`` after one warm-up call."""
    return best_rate(predictor, [c[0] for c in cases], [c[1] for c in cases], repeats)


def rate_at_revision(tree: Path, checkpoint: str, cases: list[tuple[Structure, Structure]], repeats: int,
                     threads: int) -> float:
    """Structures/s of ``checkpoint`` on ``cases`` as the code in ``tree`` (an earlier revision's files) runs it:
    ``time_predictions.py`` in a subprocess with ``definet_core`` imported from ``tree``."""
    with tempfile.TemporaryDirectory() as folder:
        cases_file = Path(folder) / "cases.json"
        cases_file.write_text(json.dumps([{"structure": s.as_dict(), "host": h.as_dict()} for s, h in cases]))
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("time_predictions.py")), checkpoint,
                               str(cases_file), str(repeats), str(threads)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    imported, value = done.stdout.split()[-2:]
    if Path(imported).resolve() != (tree / "definet_core").resolve():
        raise RuntimeError(f"time_predictions.py imported definet_core from {imported}, not from {tree}")
    return float(value)


def revision_tree(revision: str, folder: Path) -> Path:
    """The files of git ``revision`` of this repository, unpacked below ``folder``."""
    repository = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repository), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    """Print the rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="structures per workload")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--previous", default=None, help="an earlier default to compare the default with")
    parser.add_argument("--checkpoint", default=None, help="the router to time (default: the shipped one)")
    parser.add_argument("--previous-code", default=None, metavar="REVISION",
                        help="also time --previous as the code of this git revision ran it")
    args = parser.parse_args()
    if args.previous_code and not args.previous:
        parser.error("--previous-code needs --previous")
    torch.set_num_threads(args.threads)
    old_code = tempfile.TemporaryDirectory() if args.previous_code else None
    tree = revision_tree(args.previous_code, Path(old_code.name)) if old_code else None
    router = Predictor(args.checkpoint, device="cpu")
    routing = read_router(args.checkpoint)  # each route's first model, pinned as the router names it
    workloads = {"MoS2 8x8 (2D route)": (routing.routes["2D"][0], mos2_cases(args.n)),
                 "Si mp-149 (bulk route)": (routing.routes["bulk"][0], silicon_cases(args.n))}
    for members in routing.specialists.get("2D", []):  # each 2D specialist on cells it serves
        if "B-N" in read_checkpoint(members[0])["domain"].get("host_systems", []):
            workloads["hBN 8x8 (hBN specialist)"] = (members[0], dense_hbn_cases(args.n))
        else:
            workloads["MoS2 8x8 single defects"] = (members[0], dilute_mos2_cases(args.n))
    print(f"{router.checkpoint}, CPU, {args.threads} threads, {args.n} structures per workload, batch 16")
    for name, (route, cases) in workloads.items():
        alone, routed = rate(Predictor(route, device="cpu"), cases, args.repeats), rate(router, cases, args.repeats)
        print(f"{name:24s} {route}: {alone:6.1f} structures/s   router: {routed:6.1f}   ratio {routed / alone:.2f}")
        if args.previous:
            before = rate(Predictor(args.previous, device="cpu"), cases, args.repeats)
            print(f"{'':24s} {args.previous}: {before:6.1f} structures/s   default / previous {routed / before:.2f}")
        if tree is not None:
            then = rate_at_revision(tree, args.previous, cases, args.repeats, args.threads)
            print(f"{'':24s} {args.previous} with the code of {args.previous_code}: {then:6.1f} structures/s   "
                  f"default / that {routed / then:.2f}")
    mixed = [case for pair in zip(*(cases for _, cases in workloads.values()), strict=True) for case in pair]
    print(f"{'mixed, alternating':24s} router: {rate(router, mixed, args.repeats):6.1f} structures/s")


if __name__ == "__main__":
    main()
