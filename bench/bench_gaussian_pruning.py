"""What evaluating only the Gaussians that matter changes: a Gaussian-basis checkpoint with all its Gaussians
against the same weights pruned to its radius plus each margin (``architectures.prune_gaussians``), in this one
process, on the val graphs of a data root.

    python bench/bench_gaussian_pruning.py [--checkpoint definet_2d_v8] [--data ../shared/data/definet_2d]
                                           [--margins 2 4 6] [--threads 1] [--every 1]

Prints, per material set, the longest edge the full model's layers measured (each re-measures its edges from
the atoms moved so far, so they can exceed the graph radius) and, per margin, how many Gaussians are kept and
the largest |pruned - full| predicted position; then the model's structures/s (eager, batch 16, graphs built
beforehand; best of three) with all and with each pruned basis, and their ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from definet_core.checkpoint import model_of, read_checkpoint
from definet_core.dataset import load_dataset
from definet_core.reference_model import radial_features

BATCH = 16


class LongestEdge(nn.Module):
    """A radial basis that records the longest distance it was evaluated on."""

    def __init__(self, basis: nn.Module) -> None:
        super().__init__()
        self.basis = basis
        self.longest = 0.0

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        self.longest = max(self.longest, float(distance.max()))
        return self.basis(distance)


def predict(model: nn.Module, graphs: list[Data]) -> torch.Tensor:
    """Predicted positions of ``graphs``, concatenated, in batches of ``BATCH``."""
    with torch.no_grad():
        return torch.cat([model(Batch.from_data_list(graphs[i:i + BATCH])) for i in range(0, len(graphs), BATCH)])


def rate(model: nn.Module, graphs: list[Data]) -> float:
    """Structures/s of ``model`` on ``graphs``, best of three after a warm-up batch."""
    predict(model, graphs[:BATCH])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        predict(model, graphs)
        best = min(best, time.perf_counter() - start)
    return len(graphs) / best


def main() -> None:
    """Print the table and the rates."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="definet_2d_v8")
    parser.add_argument("--data", default="../shared/data/definet_2d")
    parser.add_argument("--margins", type=float, nargs="+", default=[2.0, 4.0, 6.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every", type=int, default=1, help="use every n-th val graph")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    payload = read_checkpoint(args.checkpoint)
    full = model_of(payload)
    if not full.config.gaussian_basis:
        parser.error(f"--checkpoint {args.checkpoint}: has no Gaussian radial basis")
    pruned = {margin: model_of(payload, gaussian_margin=margin) for margin in args.margins}
    recorder = LongestEdge(full.basis)
    full.basis = recorder
    config = full.config
    sets = load_dataset([args.data], "val", config.radius, config.max_neighbors, progress=False)
    print(f"{args.checkpoint}: {config.num_rbf} Gaussians, graph radius {config.radius} A")
    print(f"{'set':24}{'graphs':>7}{'longest edge A':>16}" + "".join(
        f"{f'+{margin:g} A ({radial_features(model.config)}): max |dx| A':>30}" for margin, model in pruned.items()))
    timing: list[Data] = []
    for key, graphs in sets.items():
        graphs = graphs[::args.every]
        timing += graphs[:32]
        recorder.longest = 0.0
        reference = predict(full, graphs)
        offs = [float((predict(model, graphs) - reference).abs().max()) for model in pruned.values()]
        print(f"{key:24}{len(graphs):>7}{recorder.longest:>16.3f}" + "".join(f"{off:>30.2e}" for off in offs))
    full.basis = recorder.basis
    base = rate(full, timing)
    print(f"\nstructures/s on {len(timing)} val graphs ({args.threads} thread(s)): all {config.num_rbf}: {base:.1f}")
    for margin, model in pruned.items():
        speed = rate(model, timing)
        print(f"  +{margin:g} A, {radial_features(model.config)} Gaussians: {speed:.1f} ({speed / base:.2f}x)")


if __name__ == "__main__":
    main()
