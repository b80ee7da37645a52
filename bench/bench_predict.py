"""Prediction throughput of DefiNet against CHGNet relaxation of the same defect supercells.

    python bench/bench_predict.py [--n 64] [--batch-sizes 1 8 32] [--chgnet 3] [--checkpoint CKPT]
                                  [--data DIR --material high_density/MoS2] [--devices cuda] [--compile]
                                  [--graph-workers 0 1 4]

Structures: dense-defect 8x8 MoS2 monolayer supercells (the shipped model's domain, 180-190 atoms),
generated with the project's enumeration, or read from a dataset (``--data``). Prints graph
construction time (timed apart from the network), structures/s and atoms/s per batch size and
device, peak memory, and the wall time of CHGNet (atomate2 ForceFieldRelaxMaker, fixed cell, FIRE,
fmax 0.05) on the first structures, with the ratio per structure. ``--compile`` also times the model
through ``torch.compile`` (its one-off compile time apart) and prints the ratio to eager at each batch
size. ``--graph-workers`` times whole ``Predictor.predictions`` calls (graphs, model, verdicts; batch 32, the
flows' prediction job) with the graphs built in that many worker processes, and prints the ratio to 0 (graphs
built in this process). All figures come from this one process.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from definet_core.predict import Predictor


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def structures(n: int) -> list[tuple[str, Structure, Structure, np.ndarray | None]]:
    """``n`` dense-defect MoS2 8x8 cases, as in the DefiNet high-density data: (name, cell, host, matrix)."""
    from workflows.defects.enumeration import dense_defects
    from workflows.hosts import resolve_host

    host_id, host = resolve_host("MoS2-1L")
    cases = dense_defects(host_id, host, np.diag([8, 8, 1]), n, vacancies={"S": 5, "Mo": 2},
                          substitutions={"Mo": {"W": 4}, "S": {"Se": 2}}, seed=1)
    return [(c.case_id, c.structure, c.pristine, np.eye(3, dtype=int)) for c in cases]


def dataset_structures(root: str, material: str, n: int) -> list[tuple[str, Structure, Structure, np.ndarray | None]]:
    """The first ``n`` unrelaxed train structures of ``material`` (e.g. ``high_density/MoS2``) below ``root``.

    Needs only definet_core (no workflow stack), for GPU nodes that carry just the model's dependencies.
    """
    from definet_core.dataset import MaterialSet
    from definet_core.io import read_structure

    material_set = MaterialSet(Path(root) / material)
    host = read_structure(material_set.unit_cell_path)
    ids = material_set.split_ids("train")[:n]
    return [(i, read_structure(material_set.pair_paths(i)[0]), host, None) for i in ids]


def time_inference(predictor: Predictor, graphs: list, batch_size: int, repeats: int = 2) -> dict:
    """Best-of-``repeats`` inference time over all graphs at ``batch_size`` (``compiled`` marks a compiled model)."""
    predictor.batch_size = batch_size
    predictor.predict_graphs(graphs)  # warm-up (and compilation), over every shape timed
    cuda = predictor.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        predictor.predict_graphs(graphs)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    atoms = sum(int(g.num_nodes) for g in graphs)
    return {"device": str(predictor.device), "compiled": predictor.forward is not predictor.model,
            "batch_size": batch_size, "seconds": best,
            "structures_per_s": len(graphs) / best, "atoms_per_s": atoms / best,
            "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()}


def time_end_to_end(checkpoint: str | None, device: str, compiled: bool, cases: list, workers: int) -> dict:
    """Structures/s of ``Predictor.predictions`` over ``cases`` (graphs built in ``workers`` processes, batch 32),
    best of two calls after a warm-up call (worker start and compilation)."""
    structures = [cell for _, cell, _, _ in cases]
    hosts = [host for _, _, host, _ in cases]
    matrix, names = cases[0][3], [name for name, _, _, _ in cases]
    with Predictor(checkpoint, device, 32, compile=compiled, graph_workers=workers) as predictor:
        predictor.predictions(structures, hosts, matrix, names)
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            predictor.predictions(structures, hosts, matrix, names)
            best = min(best, time.perf_counter() - started)
    return {"device": device, "compiled": compiled, "graph_workers": workers, "seconds": best,
            "structures_per_s": len(cases) / best}


def time_chgnet(cells: list[Structure]) -> list[float]:
    """Seconds per CHGNet relaxation (fixed cell, fmax 0.05) of each unrelaxed structure."""
    from jobflow import run_locally

    from workflows.relaxers.makers import relax_maker

    maker = relax_maker("chgnet")
    seconds = []
    with tempfile.TemporaryDirectory() as work_dir:
        for cell in cells:
            job = maker.make(cell)
            started = time.perf_counter()
            run_locally(job, log=False, ensure_success=True, root_dir=work_dir, create_folders=True)
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="structures to predict")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--chgnet", type=int, default=3, help="structures to relax with CHGNet (0: skip)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--data", default=None,
                        help="take the structures from this dataset root (--material) instead of enumerating them")
    parser.add_argument("--material", default="high_density/MoS2")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--compile", action="store_true", help="also time the model through torch.compile")
    parser.add_argument("--graph-workers", type=int, nargs="+", default=[],
                        help="also time whole predictions with graphs built in this many worker processes (0 too)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    cases = dataset_structures(args.data, args.material, args.n) if args.data else structures(args.n)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    predictor = Predictor(args.checkpoint, "cpu")
    started = time.perf_counter()
    graphs = [predictor.graph(cell, host, matrix, name) for name, cell, host, matrix in cases]
    graph_seconds = (time.perf_counter() - started) / len(cases)
    n_atoms = np.mean([g.num_nodes for g in graphs])
    source = f"{args.material} from {args.data}" if args.data else "MoS2 8x8 dense-defect"
    print(f"{len(cases)} {source} supercells, {n_atoms:.0f} nodes on average; "
          f"model {predictor.checkpoint} ({predictor.model.num_parameters():,} parameters, "
          f"radius {predictor.config.radius} A, <= {predictor.config.max_neighbors} neighbours)")
    print(f"graph construction (markers + neighbour list): {1000 * graph_seconds:.1f} ms per structure")
    rows, compile_seconds = [], {}
    for device in devices:
        for compiled in [False, True] if args.compile else [False]:
            predictor = Predictor(args.checkpoint, device, compile=compiled)
            if compiled:
                started = time.perf_counter()
                predictor.predict_graphs(graphs[:1])
                compile_seconds[device] = time.perf_counter() - started
                print(f"{device}: torch.compile took {compile_seconds[device]:.1f} s (first call)")
            for batch_size in args.batch_sizes:
                rows.append(time_inference(predictor, graphs, batch_size))
    eager = {(r["device"], r["batch_size"]): r["structures_per_s"] for r in rows if not r["compiled"]}
    print(f"{'device':<8}{'model':>9}{'batch':>6}{'struct/s':>10}{'atoms/s':>10}{'ms/struct':>11}{'peak MB':>9}"
          f"{'x eager':>8}")
    for r in rows:
        ratio = r["structures_per_s"] / eager[(r["device"], r["batch_size"])]
        print(f"{r['device']:<8}{'compiled' if r['compiled'] else 'eager':>9}{r['batch_size']:>6}"
              f"{r['structures_per_s']:>10.1f}{r['atoms_per_s']:>10.0f}{1000 / r['structures_per_s']:>11.1f}"
              f"{r['peak_memory_mb']:>9.0f}{ratio:>8.2f}")
    result = {"n": len(cases), "checkpoint": predictor.checkpoint, "graph_ms_per_structure": 1000 * graph_seconds,
              "inference": rows, "compile_seconds": compile_seconds}
    if args.graph_workers:
        ends = [time_end_to_end(args.checkpoint, device, compiled, cases, workers)
                for device in devices for compiled in ([False, True] if args.compile else [False])
                for workers in sorted({0, *args.graph_workers})]
        serial = {(r["device"], r["compiled"]): r["structures_per_s"] for r in ends if r["graph_workers"] == 0}
        print(f"whole predictions (graphs + model + verdicts, batch 32):\n"
              f"{'device':<8}{'model':>9}{'workers':>8}{'struct/s':>10}{'x 0':>7}")
        for r in ends:
            print(f"{r['device']:<8}{'compiled' if r['compiled'] else 'eager':>9}{r['graph_workers']:>8}"
                  f"{r['structures_per_s']:>10.1f}{r['structures_per_s'] / serial[(r['device'], r['compiled'])]:>7.2f}")
        result["end_to_end"] = ends
    if args.chgnet:
        chgnet = time_chgnet([cell for _, cell, _, _ in cases[: args.chgnet]])
        best_cpu = max(r["structures_per_s"] for r in rows if r["device"] == "cpu")
        definet_s = 1 / best_cpu + graph_seconds
        print(f"CHGNet relaxation (fixed cell, fmax 0.05): {np.mean(chgnet):.1f} s per structure "
              f"(n={len(chgnet)}, {min(chgnet):.1f}-{max(chgnet):.1f} s)")
        print(f"DefiNet on CPU incl. graph: {1000 * definet_s:.1f} ms per structure -> "
              f"{np.mean(chgnet) / definet_s:.0f}x faster than CHGNet")
        result["chgnet_seconds"] = chgnet
        result["speedup_vs_chgnet_cpu"] = float(np.mean(chgnet) / definet_s)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
