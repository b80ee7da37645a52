"""Saving and loading DefiNet checkpoints (weights plus the configuration that built them)."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from definet_core.applicability import Domain
from definet_core.architectures import Model, build_model, prune_gaussians
from definet_core.config import ModelConfig
from definet_core.errors import DefiNetInputError
from definet_core.io import save_atomically

FORMAT = "definet-checkpoint"
ROUTER_FORMAT = "definet-router"
"""A checkpoint that names one packaged checkpoint per host kind (``Router``) instead of holding weights."""
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
"""Packaged checkpoints, each loadable by its file stem (``--checkpoint definet_2d``)."""
SHIPPED_CHECKPOINT = CHECKPOINT_DIR / "definet_v15.pt"
"""The pretrained checkpoint loaded by default: a router, 2D hosts to ``definet_2d_v12`` (6 A / 50 graphs, Gaussian
radial basis; ``definet_2d_v9``'s lineage trained on with pseudo-labelled pairs, ``pseudo_labels``) with two specialists
tried first, ``definet_2d_dilute_v4`` for the dilute cells of the hosts it was fine-tuned on (at most 1.6 % defect
sites: MoS2 and WSe2) and the ensemble ``definet_2d_v6_hbn`` + ``definet_2d_seed1`` for hBN hosts, and bulk hosts
to the ensemble ``definet_bulk_v1`` + ``definet_bulk_v1_seed1`` (5 A / 24; see the model card)."""


def resolve_checkpoint(spec: str | Path | None = None) -> Path:
    """Checkpoint file of ``spec``: ``None`` (the default), a file, or a packaged name, optionally ``name@sha12``.

    ``name@sha12`` is how documents record the checkpoint that predicted them; the hash must match the
    packaged file's content, so a document always leads back to the weights that wrote it.
    """
    if spec is None:
        return SHIPPED_CHECKPOINT
    path = Path(spec)
    if path.is_file():
        return path
    name, _, digest = str(spec).partition("@")
    packaged = CHECKPOINT_DIR / f"{name}.pt"
    if "/" in name or not packaged.is_file():
        names = ", ".join(sorted((p.stem for p in CHECKPOINT_DIR.glob("*.pt")), key=version_order))
        raise DefiNetInputError(f"{spec}: checkpoint not found (no such file; packaged checkpoints: {names})")
    if digest and not content_hash(packaged).startswith(digest):
        raise DefiNetInputError(f"{spec}: the packaged {name} has content {content_hash(packaged)[:12]}, "
                                f"not {digest}")
    return packaged


def version_order(name: str) -> list[str | int]:
    """Sort key that orders version numbers by value (``definet_v9`` before ``definet_v10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def content_hash(path: Path) -> str:
    """sha256 hex digest of a file's bytes, computed once per file version (path, size, modification time)."""
    stat = path.stat()
    return _cached_hash(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_hash(path: Path, size: int, mtime_ns: int) -> str:
    """``content_hash`` of one file version; ``size`` and ``mtime_ns`` are part of the cache key only."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DefiNetInputError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def save_checkpoint(path: str | Path, model: Model, trained_elements: list[int],
                    metadata: dict[str, Any] | None = None, half: bool = False,
                    domain: dict[str, Any] | None = None) -> None:
    """Write weights, configuration, the elements seen in training, the applicability domain and metadata.

    ``domain`` is ``definet_core.applicability.Domain.to_dict()`` of the training set. ``half`` stores
    the trainable parameters in float16 (buffers stay float32); loading upcasts them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parameters = {name for name, _ in model.named_parameters()}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if k in parameters and v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "version": 1,
        "config": model.config.to_dict(),
        "state_dict": state,
        "weights_dtype": "float16" if half else "float32",
        "trained_elements": sorted(int(z) for z in trained_elements),
        "domain": domain,
        "metadata": metadata or {},
    }
    save_atomically(payload, path)


@dataclass(frozen=True)
class Router:
    """A routing checkpoint: each host kind (``applicability.dimensionality``: ``2D``, ``bulk``, ...) is predicted
    by its own checkpoint, or an ensemble of several, each named as ``name@sha12`` so the router pins the
    weights; kinds without a route go to ``default``'s, whose domain then refuses them. ``spread_bounds``: per
    kind, the ensemble spread (A) above which that route's predictions are out of domain. ``specialists``: per
    kind, checkpoints tried in order before its route, each one checkpoint or an ensemble of several (pinned
    alike); the first whose applicability domain (an ensemble's: its first member's) accepts a structure's input
    (``applicability.input_reasons``: its hosts, elements, defect kinds, cell sizes and share of defect sites)
    serves it, e.g. a model fine-tuned on dilute defects of two hosts."""

    routes: dict[str, list[str]]
    default: str
    spread_bounds: dict[str, float]
    metadata: dict[str, Any]
    specialists: dict[str, list[list[str]]] = field(default_factory=dict)


def read_payload(spec: str | Path | None = None) -> dict[str, Any]:
    """The raw payload of a checkpoint of weights or a routing checkpoint (``resolve_checkpoint``'s ``spec``),
    read once; ``router_of`` and ``model_of`` take it apart."""
    path = resolve_checkpoint(spec)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DefiNetInputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, ROUTER_FORMAT):
        raise DefiNetInputError(f"{path}: not a DefiNet checkpoint")
    return payload


def read_router(spec: str | Path | None = None) -> Router | None:
    """The routes of a routing checkpoint (``resolve_checkpoint``'s ``spec``); None for a checkpoint of weights."""
    return router_of(read_payload(spec))


def router_of(payload: dict[str, Any]) -> Router | None:
    """The routes of a ``read_payload`` payload; None for a checkpoint of weights."""
    if payload["format"] != ROUTER_FORMAT:
        return None
    routes = {kind: [specs] if isinstance(specs, str) else list(specs) for kind, specs in payload["routes"].items()}
    specialists = {kind: [[specs] if isinstance(specs, str) else list(specs) for specs in ensembles]
                   for kind, ensembles in payload.get("specialists", {}).items()}  # before version 4: one each
    return Router(routes, payload["default"], dict(payload.get("spread_bounds", {})), payload.get("metadata", {}),
                  specialists)


def serves_spreads(spec: str | Path | None, companions: Sequence[str | Path] = ()) -> bool:
    """Whether predicting with checkpoint ``spec`` (and ``companions``) yields ensemble spreads: with companions,
    or a router with an ensemble route or specialist (then only for the structures those serve)."""
    router = read_router(spec)
    if companions or router is None:
        return bool(companions)
    specialists = (members for per_kind in router.specialists.values() for members in per_kind)
    return any(len(members) > 1 for members in [*router.routes.values(), *specialists])


def pinned(spec: str | Path) -> str:
    """How a router records a checkpoint: a packaged one as ``name@sha12`` of its content (a changed file is then
    refused), a file by its absolute path."""
    path = resolve_checkpoint(spec)
    if path.parent == CHECKPOINT_DIR:
        return f"{path.stem}@{content_hash(path)[:12]}"
    return str(path.resolve())


def save_router(path: str | Path, routes: dict[str, list[str]], default: str,
                spread_bounds: dict[str, float] | None = None, metadata: dict[str, Any] | None = None,
                specialists: dict[str, list[list[str]]] | None = None) -> None:
    """Write a routing checkpoint: ``routes`` maps host kinds to one checkpoint of weights or an ensemble of
    several (each ``pinned``), ``default`` is the kind whose route serves the others, ``spread_bounds`` the
    ensemble spread above which a kind's predictions are out of domain, ``specialists`` the checkpoints (or
    ensembles) tried before a kind's route (``Router``). A specialist's first member needs an applicability
    domain and the graph settings of its kind's route (the graph is built before the model that serves it is
    chosen)."""
    if default not in routes:
        raise DefiNetInputError(f"--default {default}: not one of the routes ({', '.join(routes)})")
    for kind, bound in (spread_bounds or {}).items():
        if len(routes.get(kind, [])) < 2:
            raise DefiNetInputError(f"--spread-bound {kind}={bound}: needs an ensemble route for {kind} (KIND=A,B)")
    ensembles = specialists or {}
    named = [*routes.values(), *(members for per_kind in ensembles.values() for members in per_kind)]
    for spec in (spec for members in named for spec in members):
        if read_router(spec) is not None:
            raise DefiNetInputError(f"{spec}: a route must name a checkpoint of weights, not another router")
    for kind, specs in ensembles.items():
        for members in specs:
            check_specialist(kind, members[0], routes)
    save_atomically({"format": ROUTER_FORMAT, "version": 4,
                     "routes": {kind: [pinned(spec) for spec in specs] for kind, specs in routes.items()},
                     "default": default, "spread_bounds": dict(spread_bounds or {}), "metadata": metadata or {},
                     "specialists": {kind: [[pinned(spec) for spec in members] for members in specs]
                                     for kind, specs in ensembles.items()}},
                    Path(path))


def derived_router(base: Router, routes: dict[str, list[str]], specialists: dict[str, list[list[str]]],
                   spread_bounds: dict[str, float], default: str | None = None) -> Router:
    """``base`` with some parts replaced: each kind in ``routes`` gets that route, each kind in ``specialists``
    that list of specialists (the base's for that kind dropped), each kind in ``spread_bounds`` that bound, and
    ``default`` (when given) the default kind. A bound the base had for a kind whose new route is a single
    checkpoint is dropped (there is no spread to bound); everything else is kept as the base has it."""
    merged_routes = {**base.routes, **routes}
    bounds = {kind: bound for kind, bound in base.spread_bounds.items() if len(merged_routes.get(kind, [])) > 1}
    return Router(merged_routes, default or base.default, {**bounds, **spread_bounds}, dict(base.metadata),
                  {**base.specialists, **specialists})


def stored_domain(spec: str | Path) -> Domain:
    """The applicability domain stored in checkpoint ``spec`` (``--domain-from``); a one-line error without one."""
    values = read_checkpoint(spec).get("domain")
    if not values:
        raise DefiNetInputError(f"--domain-from {spec}: stores no applicability domain (definet checkpoint-domain)")
    return Domain.from_dict(values)


def check_specialist(kind: str, spec: str, routes: dict[str, list[str]]) -> None:
    """Raise a one-line error unless checkpoint ``spec`` can specialise host kind ``kind`` of ``routes``: a kind
    with a route, a stored applicability domain, and the same graph settings as that route's first checkpoint."""
    if kind not in routes:
        raise DefiNetInputError(f"--specialist {kind}={spec}: no --route for {kind} to fall back on")
    payload = read_checkpoint(spec)
    if not payload.get("domain"):
        raise DefiNetInputError(f"--specialist {kind}={spec}: stores no applicability domain, which decides what it "
                                "serves (definet checkpoint-domain)")
    own, route = (ModelConfig.from_dict(p["config"]) for p in (payload, read_checkpoint(routes[kind][0])))
    if (own.radius, own.max_neighbors) != (route.radius, route.max_neighbors):
        raise DefiNetInputError(f"--specialist {kind}={spec}: reads {own.radius} A / {own.max_neighbors} neighbours "
                                f"graphs, its route {routes[kind][0]} {route.radius} A / {route.max_neighbors}; "
                                "they must read the same")


def read_checkpoint(path: str | Path | None = None) -> dict[str, Any]:
    """The raw checkpoint payload of a file or packaged name (``resolve_checkpoint``); ``None``: the default.
    A routing checkpoint has no single payload: the error names its routes."""
    payload = read_payload(path)
    router = router_of(payload)
    if router is not None:
        routes = ", ".join(f"{kind}: {'+'.join(specs)}" for kind, specs in router.routes.items())
        raise DefiNetInputError(f"{resolve_checkpoint(path).stem}: routes host kinds to checkpoints ({routes}); "
                                "name one of them")
    return payload


def float32_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's weights in float32 (half-precision checkpoints are upcast)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[Model, dict[str, Any]]:
    """Model in eval mode on ``device`` and its checkpoint payload (config, elements, metadata)."""
    payload = read_checkpoint(path)
    return model_of(payload, device), payload


def model_of(payload: dict[str, Any], device: str | torch.device = "cpu",
             gaussian_margin: float | None = None) -> Model:
    """The model of a checkpoint-of-weights payload, in eval mode on ``device``. ``gaussian_margin`` (A): a model
    with a Gaussian radial basis evaluates only the Gaussians that matter on edges up to its graph radius plus
    this margin (``architectures.prune_gaussians``; each layer re-measures its edges from the atoms moved so
    far, so they can exceed the radius); ``None`` keeps them all."""
    config, state = ModelConfig.from_dict(payload["config"]), float32_state(payload)
    if gaussian_margin is not None:
        config, state = prune_gaussians(config, state, config.radius + gaussian_margin)
    model = build_model(config)
    model.load_state_dict(state)
    model.eval()
    return model.to(device)
