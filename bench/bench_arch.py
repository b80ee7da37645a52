"""Eager forward + backward time of our DefiNet against the reference architecture, to size CPU ablations.

    python bench/bench_arch.py [--hidden 64] [--batch 8] [--repeats 5] [--threads 1] [--compile]

A batch is ``--batch`` dense-defect 8x8 MoS2 monolayer supercells (~190 atoms, the shipped model's domain),
graphed at 5 A / 24 neighbours and at 6 A / 50. Models: ours (``arch=definet``, 32 Bessel functions), ours with
``edge_displacement``, and the reference (``arch=reference``, 128 Gaussians on d / 30 A), all at ``--hidden``
and 4 layers. Prints ms per batch (median of ``--repeats`` after two warm-up steps; the loss is the mean
distance to the input positions) and the ratio to ours, all from this one process. With ``--compile``, each
model is also timed through ``model.CompiledForward`` as training runs it (compiling in the warm-up steps; a
model whose compiled function fails the eager check is timed eagerly, with its warning), with the speed-up
over its own eager step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from torch_geometric.data import Batch

from definet_core.architectures import build_model
from definet_core.config import ModelConfig
from definet_core.model import CompiledForward
from definet_core.predict import defect_graph


def cases(n: int) -> list:
    """``n`` dense-defect MoS2 8x8 cases (structure, pristine supercell), as in bench_predict."""
    from workflows.defects.enumeration import dense_defects
    from workflows.hosts import resolve_host

    host_id, host = resolve_host("MoS2-1L")
    found = dense_defects(host_id, host, np.diag([8, 8, 1]), n, vacancies={"S": 5, "Mo": 2},
                          substitutions={"Mo": {"W": 4}, "S": {"Se": 2}}, seed=1)
    return [(c.structure, c.pristine) for c in found]


def step_ms(model: torch.nn.Module, batch: Batch, repeats: int, compiled: bool = False) -> float:
    """Median wall time (ms) of forward (through ``CompiledForward`` when ``compiled``), a position loss and
    backward."""
    forward = CompiledForward(model) if compiled else model
    times = []
    for k in range(repeats + 2):
        started = time.perf_counter()
        loss = (forward(batch) - batch.pos).norm(dim=-1).mean()
        model.zero_grad(set_to_none=True)
        loss.backward()
        if k >= 2:
            times.append(1e3 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time each model compiled")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    structures = cases(args.batch)
    ours = ModelConfig(hidden=args.hidden, layers=4)
    variants = {"ours": ours, "ours+edge_displacement": replace(ours, edge_displacement=True),
                "reference": replace(ours, arch="reference", num_rbf=128)}
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch of {args.batch}, hidden {args.hidden}")
    for radius, neighbours in ((5.0, 24), (6.0, 50)):
        graphs = [defect_graph(s, h, replace(ours, radius=radius, max_neighbors=neighbours), np.eye(3, dtype=int))
                  for s, h in structures]
        batch = Batch.from_data_list(graphs)
        print(f"\n{radius:g} A / {neighbours} neighbours: {batch.num_nodes} nodes "
              f"({batch.num_nodes / args.batch:.0f} per graph), {batch.edge_index.shape[1]} edges")
        base = None
        for name, config in variants.items():
            torch.manual_seed(0)
            model = build_model(replace(config, radius=radius, max_neighbors=neighbours)).train()
            ms = step_ms(model, batch, args.repeats)
            base = base or ms
            line = f"  {name:<24}{model.num_parameters():>10,} params {ms:>9.1f} ms/batch  x{ms / base:.2f}"
            if args.compile:
                compiled_ms = step_ms(model, batch, args.repeats, compiled=True)
                line += f"   compiled {compiled_ms:>8.1f} ms/batch  {ms / compiled_ms:.2f}x faster than eager"
            print(line)


if __name__ == "__main__":
    main()
