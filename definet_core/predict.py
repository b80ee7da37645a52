"""Batched prediction of relaxed defect structures with a trained DefiNet."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from pymatgen.core import Element, Structure
from torch_geometric.data import Batch, Data
from tqdm import tqdm

from definet_core.applicability import Domain, Verdict, dimensionality, input_reasons, judge
from definet_core.checkpoint import content_hash, model_of, read_payload, resolve_checkpoint, resolve_device, router_of
from definet_core.config import ModelConfig
from definet_core.dataset import load_dataset
from definet_core.errors import DefiNetInputError
from definet_core.graph import graph_from_arrays, graph_to_arrays, node_graph, regraph, with_edges
from definet_core.markers import MATCH_TOLERANCE, atom_mask, defect_nodes
from definet_core.model import CompiledForward, compile_policy

EDGE_KEYS = ("edge_index", "edge_image")
"""The edge tensors of a defect graph: most of its memory, needed only by the model and the verdict."""

PREDICTION_GAUSSIAN_MARGIN = 4.0
"""A model with Gaussians evaluates, in prediction, only those that matter on edges up to its radius plus this
many A (``checkpoint.model_of``): 49 of definet_2d_v8's 128 (2.6x fewer). Its layers' re-measured edges reach
radius + 1.8 A on the 2D val sets; the predictions move by float32 rounding (``bench/bench_gaussian_pruning.py``)."""

GRAPH_WORKERS_AUTO_MIN = 256
"""``graph_workers_policy("auto", n, cuda)`` builds graphs in worker processes for this many structures or more
(a flow's chunk of cases)."""


@dataclass(frozen=True)
class Prediction:
    """DefiNet's prediction for one structure."""

    structure: Structure
    """Predicted relaxed structure: the input's lattice, species and site order."""
    graph: Data
    """The defect graph the model read (markers, vacancy nodes). Graphs that ``Predictor.predictions`` built
    itself come without their edges (``EDGE_KEYS``), which are dropped once the batch is judged."""
    verdict: Verdict
    """Whether the prediction may be used as a relaxation start (``definet_core.applicability``)."""
    spread: float | None = None
    """Mean |dx|,|dy|,|dz| (A) between the ensemble members' predictions over real atoms, averaged over the pairs
    of members, when companion checkpoints were given (the prediction is then the members' mean): an estimate
    of the prediction's error (``bench/ensemble_uncertainty.py``); None without a companion."""


class Served(NamedTuple):
    """One batch as a predictor serves it: positions of every node, ensemble spreads (None without companions)
    and, per graph, the predictor whose domain and spread bound judge it (a router's route, else itself)."""

    positions: list[torch.Tensor]
    spreads: list[float | None]
    routes: list[Predictor]


class Predictor:
    """Loads a checkpoint once and predicts relaxed structures for many defect supercells.

    >>> predictor = Predictor()                      # shipped checkpoint, CUDA when available
    >>> relaxed = predictor.predict(defect_cells, host=unit_cell)
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto", batch_size: int = 16,
                 companion: str | Path | Sequence[str | Path] | None = None, compile: bool = False,
                 graph_workers: int = 0, spread_bound: float | None = None) -> None:
        """``companion``: one or more further, independently trained checkpoints. Predictions are then the mean
        of all the models (an ensemble), and their disagreement is ``Prediction.spread``; a prediction whose
        spread exceeds ``spread_bound`` (A) is out of domain (``applicability.spread_reasons``). ``compile``: run the
        model(s) through ``torch.compile`` (~40 s once, then several times faster; see ``compile_policy``).
        ``graph_workers``: processes that build the graphs of ``predictions`` while the model predicts (0: built
        in this process; see ``graph_workers_policy``). They start on first use; ``close`` (or leaving a ``with``
        block) stops them."""
        others = [companion] if isinstance(companion, str | Path) else list(companion or [])
        self.companions = [Predictor(other, device, batch_size, compile=compile) for other in others]
        self.device = resolve_device(device)
        self.spread_bound = spread_bound
        payload = read_payload(checkpoint)  # read once: a router's routes, or the weights
        router = router_of(payload)
        self.routes = {kind: Predictor(specs[0], device, batch_size, specs[1:], compile,
                                       spread_bound=router.spread_bounds.get(kind))
                       for kind, specs in (router.routes.items() if router else ())}
        """A routing checkpoint's predictor per host kind (``checkpoint.Router``; a route of several checkpoints
        is an ensemble); empty for a checkpoint of weights. Each structure's graph is built at the graph settings
        of its host kind's route (``graph_settings``) and served by that route, or by one of its specialists."""
        self.specialists = {kind: [Predictor(specs[0], device, batch_size, specs[1:], compile) for specs in ensembles]
                            for kind, ensembles in (router.specialists.items() if router else ())}
        """A routing checkpoint's specialists per host kind (each one model or an ensemble), tried before its route
        (``route``)."""
        if router is not None:
            primary = self.routes[router.default]
            self.default_route = router.default
            self.model, self.forward, self.config = primary.model, primary.forward, primary.config
            self.domain, self.metadata = None, router.metadata
        else:
            self.model = model_of(payload, self.device, PREDICTION_GAUSSIAN_MARGIN)
            self.forward = CompiledForward(self.model) if compile else self.model
            self.config = self.model.config
            self.domain = Domain.from_dict(payload["domain"]) if payload.get("domain") else None
            self.metadata = payload.get("metadata", {})
        self.checkpoint = checkpoint_id(checkpoint)
        default = (self.config.radius, self.config.max_neighbors)
        self.settings_by_kind = {kind: self.graph_settings(kind) for kind in self.routes
                                 if self.graph_settings(kind) != default}
        """(radius, max_neighbors) per host kind whose route reads other graphs than ``config``'s (``defect_graph``);
        empty for a checkpoint of weights and for a router whose routes read the same graphs."""
        for partner, name in zip(self.companions, others, strict=True):
            if set(partner.routes) != set(self.routes):
                own, theirs = (", ".join(sorted(p.routes)) or "none" for p in (self, partner))
                raise DefiNetInputError(f"--companion {name}: routes host kinds {theirs}, the checkpoint {own}; "
                                        "ensemble members must route alike (a router with a router of the same "
                                        "kinds; 2D models with --checkpoint definet_2d_v2)")
        self.batch_size = batch_size
        self.graph_workers = graph_workers
        self._pool: ProcessPoolExecutor | None = None

    @classmethod
    def for_count(cls, count: int, checkpoint: str | Path | None = None, device: str = "auto", batch_size: int = 16,
                  companion: str | Path | Sequence[str | Path] | None = None, compile: str = "auto",
                  graph_workers: str | int = 0) -> Predictor:
        """A predictor set up for ``count`` structures: the one place where the compile policy
        (``compile_policy``: ``auto``, ``always``, ``never``) and the graph-worker policy
        (``graph_workers_policy``: a number or ``auto``) are resolved."""
        return cls(checkpoint, device, batch_size, companion, compile_policy(compile, count),
                   graph_workers_policy(graph_workers, count, resolve_device(device)))

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the graph worker processes, if any were started (a later ``predictions`` starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def dataset(self, roots: Sequence[str | Path], split: str, cache_dir: Path | None = None,
                progress: bool = True) -> dict[str, list[Data]]:
        """``dataset.load_dataset`` of ``split`` below ``roots``, each material's graphs at the settings of the
        model that serves its host kind: the graphs to hand to ``predict_graphs``."""
        return load_dataset(roots, split, self.config.radius, self.config.max_neighbors, cache_dir, progress,
                            self.settings_by_kind)

    @property
    def graph_plan(self) -> tuple:
        """What decides the graphs this predictor reads (its settings and its routes' other ones): predictors of
        equal plans read the same graph of every structure."""
        return self.config.radius, self.config.max_neighbors, tuple(sorted(self.settings_by_kind.items()))

    def graph_settings(self, kind: str) -> tuple[float, int]:
        """(radius, max_neighbors) of the graphs that the model serving host kind ``kind`` reads (``route``)."""
        route = self.routes.get(kind, self.routes[self.default_route]) if self.routes else self
        return route.config.radius, route.config.max_neighbors

    def graph(self, structure: Structure, host: Structure, supercell_matrix: np.ndarray | None = None,
              name: str = "structure", tolerance: float = MATCH_TOLERANCE) -> Data:
        """Defect graph of one structure, at the graph settings of the model that serves it (a router's route);
        elements beyond the model's embedding are refused. Graphs given to ``predict_graphs`` and
        ``predictions(graphs=...)`` must be built this way (or read by ``dataset``).

        Elements the model never saw are accepted here and reported by the verdict (``Prediction.verdict``).
        """
        return defect_graph(structure, host, self.config, supercell_matrix, name, tolerance, self.settings_by_kind)

    def _batches(self, count: int, progress: str | None) -> Iterator[slice]:
        """Slices of ``batch_size`` items over ``count`` items, with a progress bar labelled ``progress``."""
        starts = range(0, count, self.batch_size)
        for start in tqdm(starts, desc=progress, disable=progress is None, leave=False):
            yield slice(start, start + self.batch_size)

    def _built_batches(self, structures: Sequence[Structure], hosts: Sequence[Structure],
                       supercell_matrix: np.ndarray | None, names: Sequence[str],
                       progress: str | None) -> Iterator[tuple[slice, list[Data]]]:
        """Each batch's slice with its graphs, in order, with a progress bar over the batches handed on. With
        ``graph_workers`` the workers build up to two batches per worker ahead of the one handed on, so graph
        building overlaps the model's work."""
        if self.graph_workers < 1:
            for part in self._batches(len(structures), progress):
                yield part, [self.graph(s, h, supercell_matrix, n)
                             for s, h, n in zip(structures[part], hosts[part], names[part], strict=True)]
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.graph_workers)
        submitted: deque[tuple[slice, Future]] = deque()
        with tqdm(total=-(-len(structures) // self.batch_size), desc=progress, disable=progress is None,
                  leave=False) as bar:
            for part in self._batches(len(structures), None):
                job = (list(zip(structures[part], hosts[part], names[part], strict=True)), supercell_matrix,
                       self.config, self.settings_by_kind)
                submitted.append((part, self._pool.submit(_graph_arrays_job, job)))
                while len(submitted) > 2 * self.graph_workers or (submitted and part.stop >= len(structures)):
                    done, future = submitted.popleft()
                    yield done, [graph_from_arrays(values) for values in future.result()]
                    bar.update()

    def route(self, graph: Data) -> Predictor:
        """The predictor that serves ``graph``: this one, or for a router the first specialist of the graph's host
        kind whose domain accepts its input, else the kind's route (the default route for a kind without one,
        whose domain then refuses it)."""
        if not self.routes:
            return self
        kind = dimensionality(graph)
        for specialist in self.specialists.get(kind, ()):
            if not input_reasons(graph, specialist.domain):
                return specialist
        return self.routes.get(kind, self.routes[self.default_route])

    def judge(self, graph: Data, positions: torch.Tensor, spread: float | None = None) -> Verdict:
        """The applicability verdict on one prediction and its ensemble spread (a router asks the domain and
        the spread bound of the route that served it)."""
        return self.route(graph).verdict(graph, positions, spread)

    def verdict(self, graph: Data, positions: torch.Tensor, spread: float | None = None) -> Verdict:
        """The verdict of this predictor's own domain and spread bound (``judge`` first finds the route)."""
        return judge(graph, positions, self.domain, spread, self.spread_bound)

    @torch.no_grad()
    def _served(self, graphs: Sequence[Data]) -> Served:
        """The prediction of one batch as this predictor serves it, and each graph's ensemble spread: a router's
        routes each predict their graphs; with companions, the mean of all the models (an ensemble: two small
        models give 3 % lower mean val MAE than either alone, three models 5 %) and their disagreement."""
        own = self._routed(graphs) if self.routes else Served(self._positions(graphs), [None] * len(graphs),
                                                              [self] * len(graphs))
        if not self.companions:
            return own
        rebuilt: dict[tuple[int, float, int], Data] = {}
        members = [own.positions,
                   *(c._served(self._graphs_for(c, graphs, rebuilt)).positions for c in self.companions)]
        per_graph = [ensemble_mean_and_spread(list(each), atom_mask(g.marker))
                     for g, *each in zip(graphs, *members, strict=True)]
        return Served([mean for mean, _ in per_graph], [spread for _, spread in per_graph], own.routes)

    def _routed(self, graphs: Sequence[Data]) -> Served:
        """A router's prediction of one batch: each route serves its graphs (``_served``), stitched in order."""
        chosen = [self.route(g) for g in graphs]
        positions: list[torch.Tensor | None] = [None] * len(graphs)
        spreads: list[float | None] = [None] * len(graphs)
        served: list[Predictor | None] = [None] * len(graphs)
        for route in {id(r): r for r in chosen}.values():
            mine = [i for i, r in enumerate(chosen) if r is route]
            for i, *each in zip(mine, *route._served([graphs[i] for i in mine]), strict=True):
                positions[i], spreads[i], served[i] = each
        return Served(positions, spreads, served)

    @torch.no_grad()
    def _positions(self, graphs: Sequence[Data]) -> list[torch.Tensor]:
        """This checkpoint's own predicted positions of every node of one batch, one tensor per graph."""
        batch = Batch.from_data_list(list(graphs)).to(self.device)
        positions = self.forward(batch).double().cpu()
        return list(positions.split(batch.ptr.diff().tolist()))

    @property
    def companion_ids(self) -> list[str]:
        """Content ids (``checkpoint_id``) of the companion checkpoints, in the order given."""
        return [companion.checkpoint for companion in self.companions]

    def _judged(self, structures: Sequence[Structure], graphs: Sequence[Data]) -> list[Prediction]:
        """Predictions of one batch (``_served``): structures written back, the verdict and the spread."""
        served = self._served(graphs)
        return [Prediction(to_structure(s, g, p), g, route.verdict(g, p, spread), spread)
                for s, g, p, spread, route in zip(structures, graphs, *served, strict=True)]

    def _graphs_for(self, companion: Predictor, graphs: Sequence[Data],
                    rebuilt: dict[tuple[int, float, int], Data]) -> list[Data]:
        """These graphs with a companion's graph settings for their host kind: each as it is where they match
        this predictor's, else rebuilt (``regraph``) once per graph and setting in ``rebuilt`` (companions that
        share settings share the graphs)."""
        if companion.graph_plan == self.graph_plan:
            return list(graphs)
        served = []
        for i, graph in enumerate(graphs):
            kind = dimensionality(graph)
            settings = companion.graph_settings(kind)
            if settings != self.graph_settings(kind) and (i, *settings) not in rebuilt:
                rebuilt[(i, *settings)] = regraph(graph, *settings)
            served.append(rebuilt.get((i, *settings), graph))
        return served

    def predict_graphs(self, graphs: Sequence[Data], progress: str | None = None) -> list[torch.Tensor]:
        """Predicted Cartesian positions of every node (vacancy nodes included), one tensor per graph, as the
        predictor serves them (routes, ensemble means: ``predicted_graphs``).

        ``progress`` is the label of a progress bar over batches (none when ``None``).
        """
        return self.predicted_graphs(graphs, progress)[0]

    def predicted_graphs(self, graphs: Sequence[Data], progress: str | None = None
                         ) -> tuple[list[torch.Tensor], list[float | None]]:
        """``predict_graphs`` and each graph's ensemble spread (None without companions); judge them with
        ``judge``."""
        positions: list[torch.Tensor] = []
        spreads: list[float | None] = []
        for part in self._batches(len(graphs), progress):
            served = self._served(graphs[part])
            positions += served.positions
            spreads += served.spreads
        return positions, spreads

    def predictions(self, structures: Sequence[Structure], host: Structure | Sequence[Structure] | None = None,
                    supercell_matrix: np.ndarray | None = None, names: Sequence[str] | None = None,
                    progress: str | None = None, graphs: Sequence[Data] | None = None) -> list[Prediction]:
        """One ``Prediction`` per input: the structure, the defect graph (its markers) and the domain verdict.

        ``host`` is one host (unit cell or pristine supercell) for all structures or one per structure.
        Streams: the graphs of one batch are built, predicted and judged, then lose their edges, so memory
        holds one batch of full graphs besides the predictions. With ``graphs`` (``graph`` of each structure,
        built by the caller) no host is needed and the graphs are left whole.
        """
        if graphs is not None:
            return [prediction for part in self._batches(len(graphs), progress)
                    for prediction in self._judged(structures[part], graphs[part])]
        if host is None:
            raise DefiNetInputError("predictions: give the host(s) of the structures, or their graphs")
        hosts = [host] * len(structures) if isinstance(host, Structure) else list(host)
        if len(hosts) != len(structures):
            raise DefiNetInputError(f"hosts: {len(hosts)} hosts given for {len(structures)} structures")
        names = list(names) if names is not None else [f"structure {i}" for i in range(len(structures))]
        results: list[Prediction] = []
        for part, built in self._built_batches(structures, hosts, supercell_matrix, names, progress):
            judged = self._judged(structures[part], built)
            for prediction in judged:
                without_edges(prediction.graph)
            results.extend(judged)
        return results

    def predict(self, structures: Sequence[Structure], host: Structure | Sequence[Structure],
                supercell_matrix: np.ndarray | None = None, names: Sequence[str] | None = None) -> list[Structure]:
        """Predicted relaxed structures: same lattice, species and site order as each input."""
        return [p.structure for p in self.predictions(structures, host, supercell_matrix, names)]


def defect_graph(structure: Structure, host: Structure, config: ModelConfig, supercell_matrix: np.ndarray | None = None,
                 name: str = "structure", tolerance: float = MATCH_TOLERANCE,
                 settings_by_kind: Mapping[str, tuple[float, int]] | None = None) -> Data:
    """The defect graph that a model of ``config`` reads for ``structure`` (``Predictor.graph``); with
    ``settings_by_kind`` (a router's ``Predictor.settings_by_kind``), at its host kind's radius and neighbours
    where they differ from ``config``'s. Edges come from the float64 positions either way."""
    nodes = defect_nodes(structure, host, supercell_matrix, tolerance, name)
    too_heavy = sorted({int(z) for z in nodes.atomic_numbers if z > config.num_elements})
    if too_heavy:
        symbols = ", ".join(Element.from_Z(z).symbol for z in too_heavy)
        raise DefiNetInputError(f"{name}: element(s) {symbols} not covered by the model's element embedding")
    graph = node_graph(nodes)
    settings = (config.radius, config.max_neighbors)
    if settings_by_kind:
        settings = settings_by_kind.get(dimensionality(graph), settings)
    return with_edges(graph, nodes, *settings)


def _graph_arrays_job(job: tuple[list[tuple[Structure, Structure, str]], np.ndarray | None, ModelConfig,
                                 Mapping[str, tuple[float, int]]]) -> list[dict]:
    """Worker: the graphs of one batch of (structure, host, name), as plain arrays (``graph_to_arrays``)."""
    items, supercell_matrix, config, settings_by_kind = job
    return [graph_to_arrays(defect_graph(s, h, config, supercell_matrix, n, settings_by_kind=settings_by_kind))
            for s, h, n in items]


def workers_policy(policy: str | int, count: int, auto_min: int) -> int:
    """Worker processes for ``count`` items under ``policy``: a number, or ``auto``: all the cores this process
    may run on (a batch scheduler's allocation) but one, for ``auto_min`` items or more on 2 cores or more; else 0."""
    policy = str(policy)
    if policy != "auto":
        if not policy.isdigit():
            raise DefiNetInputError(f"workers {policy!r}: expected a number of processes or 'auto'")
        return int(policy)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores - 1 if count >= auto_min and cores >= 2 else 0


def graph_workers_policy(policy: str | int, count: int, device: torch.device) -> int:
    """``Predictor.graph_workers`` for ``count`` structures predicted on ``device`` (``workers_policy``), where
    ``auto`` starts workers only on CUDA with 3 cores or more, from ``GRAPH_WORKERS_AUTO_MIN`` structures: on a
    CPU the network needs the cores itself (workers beside torch's threads made 2-core prediction slower)."""
    workers = workers_policy(policy, count, GRAPH_WORKERS_AUTO_MIN)
    automatic = str(policy) == "auto"
    return 0 if automatic and (device.type != "cuda" or workers < 2) else workers


def ensemble_mean_and_spread(members: Sequence[torch.Tensor], atoms: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The mean of several models' positions for one graph, and their spread: mean |dx|,|dy|,|dz| between two
    members over the ``atoms`` rows, averaged over all pairs of members (0.0 for a single member)."""
    pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1:]]
    spread = float(np.mean([(a - b).abs()[atoms].mean().item() for a, b in pairs])) if pairs else 0.0
    return torch.stack(list(members)).mean(dim=0), spread


def checkpoint_id(checkpoint: str | Path | None) -> str:
    """``<file stem>@<first 12 hex of its sha256>``: names a checkpoint by its content (``resolve_checkpoint``)."""
    path = resolve_checkpoint(checkpoint)
    return f"{path.stem}@{content_hash(path)[:12]}"


def ensemble_id(specs: Iterable[str | Path | None]) -> str:
    """What documents predicted by the mean of these checkpoints record as their checkpoint: each one's
    ``checkpoint_id``, joined by ``+`` in the order given (``None``: the default). A spec already written as an id
    (``name@hash``, not a file) is kept as it is, so documents of an older version of a file or name still match."""
    return "+".join(spec if isinstance(spec, str) and "@" in spec and not Path(spec).is_file() else checkpoint_id(spec)
                    for spec in specs)


def to_structure(original: Structure, graph: Data, positions: torch.Tensor) -> Structure:
    """Replace the positions of ``original`` by the predicted ones (vacancy nodes dropped)."""
    site_index = graph.site_index.numpy()
    coords = np.empty((len(original), 3))
    atoms = site_index >= 0
    coords[site_index[atoms]] = positions.numpy()[atoms]
    species = [site.species for site in original]  # compositions: ~5x faster to build from than elements
    return Structure(original.lattice, species, coords, coords_are_cartesian=True,
                     site_properties=original.site_properties or None)


def without_edges(graph: Data) -> Data:
    """``graph`` with its edge tensors (``EDGE_KEYS``) removed in place; nodes, markers and cell stay."""
    for key in EDGE_KEYS:
        del graph[key]
    return graph
