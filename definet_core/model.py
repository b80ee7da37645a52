"""DefiNet: a defect-informed equivariant message-passing network that predicts relaxed positions.

Every node carries scalar features ``s`` (N, F) and vector features ``v`` (N, 3, F). Messages
are PaiNN-style equivariant messages whose filters are modulated by the markers of both ends of
the edge. A global virtual node per graph, with its own scalar and vector state, reads from and
writes to all nodes. Every layer ends with a coordinate update ``x += v W``, and the next layer
rebuilds its edge vectors from the updated coordinates (the neighbour list and periodic images
stay those of the unrelaxed structure). Only linear maps of vectors, scalar gates, norms and dot
products touch vector quantities (and, with ``ModelConfig.vector_activation``, the reference's vector
leaky-ReLU, built of the same), so the model is exactly E(3)-equivariant. Two more options put reference
pieces into ours for ablations: its Gaussian radial basis (``ModelConfig.radial_basis``) and its scalar
update without the dot-product term and the LayerNorm (``ModelConfig.scalar_update``).

Two bounds keep the model finite where it has never been (``ModelConfig.vector_clip`` and
``displacement_clip``). The layers hold positive feedback loops in the vector features: the update
``v += a(s, |v|) * (v U)`` grows like ``|v|**2`` once ``|v|`` leaves its trained range (the gate ``a``
is an MLP of the norm), messages ``w * v[src]`` carry large learned gains (up to ~100 per edge), and
the global node adds the cell mean of ``v``. In a defect supercell of a hundred atoms these stay small:
the neighbours' vectors point every way and the cell mean is ~0. In a cell of a few atoms every atom
is beside the defect, its neighbours are images of the same few atoms (its own among them) whose
vectors add coherently, and the cell mean is not diluted; ``|v|`` then squares layer after layer
(0.09 -> 566 -> 2e9 -> inf in a 2-atom cell), the coordinate steps follow (1e28 A), atoms collapse
onto each other and the output is NaN. So every layer clips each vector channel's norm to
``vector_clip``, every node stays within ``displacement_clip`` of its input, and a graph whose vectors
had to be clipped is trusted less: its predicted displacements are divided by the largest excess
(channel norm / ``vector_clip``) it reached, so a runaway prediction falls back towards the unrelaxed
input, the one start that is never worse than nothing. The bounds lie above anything the shipped models
reach on their data (vector norms at most 35, displacements 3.7 A on the 2D train and val sets), where
they change no prediction bit for bit; they act through norms, so equivariance is kept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from definet_core.config import ModelConfig
from definet_core.elements import ElementFeatures
from definet_core.errors import DefiNetInputError
from definet_core.graph import periodic_frame
from definet_core.marker_pairs import gather_with_pair, pair_sum
from definet_core.reference_model import EdgeDisplacement, GaussianBasis, VectorActivation, radial_features
from definet_core.stability import clip_displacement, clip_vectors, shrink_runaways


class BesselBasis(nn.Module):
    """sin(n pi d / rc) / d radial basis times a cosine cutoff envelope."""

    def __init__(self, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("frequencies", torch.arange(1, num_rbf + 1) * math.pi / cutoff)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        d = distance.unsqueeze(-1)
        envelope = 0.5 * (torch.cos(math.pi * d / self.cutoff) + 1.0) * (d < self.cutoff)
        return torch.sin(self.frequencies * d) / d * envelope


class GlobalNode(nn.Module):
    """Virtual node per graph: pools node states into its own scalar/vector state and broadcasts back."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scalar_update = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.vector_mix = nn.Linear(2 * hidden, hidden, bias=False)
        self.scalar_out = nn.Linear(hidden, 2 * hidden)
        self.vector_out = nn.Linear(hidden, hidden, bias=False)

    def forward(self, s: torch.Tensor, v: torch.Tensor, g_s: torch.Tensor, g_v: torch.Tensor,
                batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pooled_s = scatter(s, batch, dim=0, dim_size=g_s.shape[0], reduce="mean")
        pooled_v = scatter(v, batch, dim=0, dim_size=g_v.shape[0], reduce="mean")
        g_s = g_s + self.scalar_update(torch.cat([g_s, pooled_s], dim=-1))
        g_v = g_v + self.vector_mix(torch.cat([g_v, pooled_v], dim=-1))
        shift_s, gate_v = self.scalar_out(g_s)[batch].chunk(2, dim=-1)
        return s + shift_s, v + gate_v.unsqueeze(1) * self.vector_out(g_v)[batch], g_s, g_v


class DefiNetLayer(nn.Module):
    """Marker-modulated equivariant message, global-node exchange, update and coordinate step."""

    def __init__(self, config: ModelConfig, first: bool = False) -> None:
        super().__init__()
        f = config.hidden
        self.hidden = f
        self.first = first
        self.num_markers = config.num_markers
        self.norm = config.aggregation_norm
        self.vector_clip = config.vector_clip
        self.message_mlp = nn.Sequential(nn.Linear(f, f), nn.SiLU(), nn.Linear(f, 3 * f))
        self.filter = nn.Linear(radial_features(config), 3 * f)
        self.marker_pair = nn.Embedding(config.num_markers**2, 3 * f)
        nn.init.zeros_(self.marker_pair.weight)
        self.global_node = GlobalNode(f)
        self.vector_uv = nn.Linear(f, 2 * f, bias=False)
        self.update_mlp = nn.Sequential(nn.Linear(2 * f, f), nn.SiLU(), nn.Linear(f, 3 * f))
        # the reference's scalar update (``config.scalar_update``) has no dot-product term and no LayerNorm
        self.scalar_norm = nn.LayerNorm(f) if config.scalar_update == "painn" else None
        self.coordinate_head = nn.Linear(f, 1, bias=False)
        nn.init.normal_(self.coordinate_head.weight, std=1e-2)
        # the reference's per-edge radial displacement B (``config.edge_displacement``); off: no parameters
        self.edge_displacement = (EdgeDisplacement(f, radial_features(config), nn.SiLU) if config.edge_displacement
                                  else None)
        if self.edge_displacement is not None:
            self.edge_marker = nn.Embedding(config.num_markers, f)  # P m: a projected marker is one row per marker
        # the reference's vector nonlinearity on the summed messages and on the update (``config.vector_activation``)
        vector_map: Callable[[int], nn.Module] = VectorActivation if config.vector_activation else nn.Identity
        self.message_activation = vector_map(f)
        self.update_activation = vector_map(f)

    def forward(self, s: torch.Tensor, v: torch.Tensor, g_s: torch.Tensor, g_v: torch.Tensor,
                pos: torch.Tensor, marker: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                basis: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        src, dst = edge_index
        vec = pos[src] + edge_shift - pos[dst]
        dist = vec.norm(dim=-1).clamp_min(1e-9)
        unit = vec / dist.unsqueeze(-1)
        rbf = basis(dist)
        # the embedding's row (target marker * num_markers + source marker) as a [source, target] factor
        pair_factor = (1.0 + self.marker_pair.weight).view(self.num_markers, self.num_markers, -1).transpose(0, 1)
        weights = gather_with_pair(self.message_mlp(s), pair_factor, marker, src, dst) * self.filter(rbf)
        w_s, w_vv, w_vu = weights.split(self.hidden, dim=-1)
        msg_v = w_vu.unsqueeze(1) * unit.unsqueeze(-1)
        if not self.first:  # the first layer's vectors are all zero: w_vv v_j adds nothing there
            msg_v = torch.addcmul(msg_v, w_vv.unsqueeze(1), v[src])
        n = s.shape[0]
        s = s + scatter(w_s, dst, dim=0, dim_size=n, reduce="sum") / self.norm
        v = v + self.message_activation(scatter(msg_v, dst, dim=0, dim_size=n, reduce="sum") / self.norm)
        s, v, g_s, g_v = self.global_node(s, v, g_s, g_v, batch)
        u_v, v_v = self.vector_uv(v).split(self.hidden, dim=-1)
        a_vv, a_sv, a_ss = self.update_mlp(
            torch.cat([s, torch.sqrt((v_v**2).sum(dim=1) + 1e-8)], dim=-1)
        ).split(self.hidden, dim=-1)
        v = v + self.update_activation(a_vv.unsqueeze(1) * u_v)
        if self.scalar_norm is None:
            s = (s + a_sv / math.sqrt(2.0) + s * torch.tanh(a_ss)) / math.sqrt(2.0)
        else:
            s = self.scalar_norm(s + a_sv * (u_v * v_v).sum(dim=1) + a_ss)
        v, excess = clip_vectors(v, self.vector_clip)  # see the module docstring: the update can square |v|
        step = self.coordinate_head(v).squeeze(-1)
        if self.edge_displacement is not None:  # (A + B) / 2, B along the unit vectors from neighbour to centre
            step = 0.5 * (step + self.edge_displacement(s, rbf, pair_sum(self.edge_marker.weight), marker, -unit,
                                                        edge_index))
        pos = pos + step
        return s, v, g_s, g_v, pos, excess


class DefiNet(nn.Module):
    """Predicts the relaxed Cartesian position of every node of a batch of defect graphs."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.element_embedding = nn.Embedding(config.num_elements + 1, config.hidden)
        # with fixed element features the learned rows start at zero: an element never trained adds nothing
        self.element_features = ElementFeatures(config.num_elements, config.hidden) if config.element_features else None
        if self.element_features is not None:
            nn.init.zeros_(self.element_embedding.weight)
        self.marker_embedding = nn.Embedding(config.num_markers, config.hidden)
        self.basis = (GaussianBasis(config.num_rbf, radial_features(config)) if config.radial_basis == "gaussian"
                      else BesselBasis(config.num_rbf, config.radius))
        self.layers = nn.ModuleList(DefiNetLayer(config, first=k == 0) for k in range(config.layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Predicted positions (N, 3), in the dtype of ``batch.pos``."""
        pos = batch.pos
        node_batch, num_graphs, edge_shift = periodic_frame(batch)
        s = self.element_embedding(batch.z)
        if self.element_features is not None:
            s = s + self.element_features(batch.z)
        s = s + self.marker_embedding(batch.marker)
        v = pos.new_zeros(pos.shape[0], 3, self.config.hidden)
        g_s = pos.new_zeros(num_graphs, self.config.hidden)
        g_v = pos.new_zeros(num_graphs, 3, self.config.hidden)
        start, excess = pos, pos.new_ones(pos.shape[0], 1)
        for layer in self.layers:
            s, v, g_s, g_v, pos, layer_excess = layer(s, v, g_s, g_v, pos, batch.marker, batch.edge_index,
                                                      edge_shift, self.basis, node_batch)
            excess = torch.maximum(excess, layer_excess)
            pos = clip_displacement(pos, start, self.config.displacement_clip)
        return shrink_runaways(pos, start, excess, node_batch, num_graphs)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


COMPILE_POLICIES = ("auto", "always", "never")
COMPILE_AUTO_MIN = 1000
"""``compile_policy("auto", n)`` compiles for this many structures or more: compiling costs ~40 s once
and then saves ~30 ms per structure on a 2-core CPU (more on a GPU)."""

def add_edge_displacement(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint without the per-edge radial term, made loadable by a model of ``config`` (which
    has it), computing the same function: each layer's new term starts from a freshly initialised module whose
    output layer is zero (B = 0), and its coordinate head is doubled, since the step becomes (A + B) / 2."""
    if not config.edge_displacement:
        raise ValueError("add_edge_displacement: the config must have edge_displacement on")
    fresh = DefiNet(config).state_dict()
    state = dict(state)
    for name, weights in fresh.items():
        if name not in state:
            output_layer = ".edge_displacement.edge_mlp.2." in name
            state[name] = torch.zeros_like(weights) if output_layer else weights
    for k in range(config.layers):
        state[f"layers.{k}.coordinate_head.weight"] = 2.0 * state[f"layers.{k}.coordinate_head.weight"]
    return state


def compile_policy(policy: str, count: int) -> bool:
    """Whether to compile the model for ``count`` structures under ``policy`` (``COMPILE_POLICIES``)."""
    if policy not in COMPILE_POLICIES:
        raise DefiNetInputError(f"--compile {policy}: expected one of {', '.join(COMPILE_POLICIES)}")
    return policy == "always" or (policy == "auto" and count >= COMPILE_AUTO_MIN)


COMPILE_OPTIONS = {"inplace_buffers": False}
"""Inductor options of ``CompiledForward``. With in-place buffers (the default) torch 2.13's CPU inductor
miscompiled one-graph batches: the shipped model 6.4e-3 A off eager on a 192-atom MoS2 cell, a float64 tiny
model 1.5e-5 A; without them it matches eager (float64: 1e-19) at about the same speed."""


COMPILE_TOLERANCE_A = 1e-4
"""Largest |compiled - eager| position (A) that ``CompiledForward`` accepts on its first batch of each grad mode;
fp32 reordering stays near 1e-5."""


def _graphs_compiled() -> int:
    """How many graphs dynamo has compiled in this process (any model): a call that raises it compiled anew."""
    from torch._dynamo.utils import counters  # imported by torch.compile already; not at module import

    return counters["stats"]["unique_graphs"]


class CompiledForward:
    """A DefiNet's forward pass compiled by ``torch.compile`` (dynamic shapes: any number of nodes and edges).

    Compiling takes ~40 s once per process on a 2-core CPU and then runs inference ~4x and training
    steps ~2.6x faster there (``bench/bench_predict.py --compile``), within 2e-6 A of eager. The first batch
    with gradients on (training) and the first without (inference) are also run eagerly: inductor compiles the
    two modes apart, and torch 2.13 compiled the reference architecture's training forward to a different
    function (up to 0.12 A off eager, so a compiled run trained a network that eager evaluation did not see)
    until its virtual-node broadcast was kept out of the graph (``reference_model.VirtualNodeIn``). Any later
    batch for which dynamo compiles a new graph (a guard failed: a size it had specialised on, a dtype) is
    checked the same way, so no compiled graph runs unchecked; ``checked_batches`` counts the checks.
    If the compiled result is more than ``COMPILE_TOLERANCE_A`` off, or a call cannot compile (no C++
    compiler, an unsupported backend), it warns and runs eagerly from then on.
    """

    def __init__(self, model: DefiNet) -> None:
        self.model = model
        self.compiled: Callable[[Batch], torch.Tensor] | None = torch.compile(model, dynamic=True,
                                                                               options=COMPILE_OPTIONS)
        self.verified_modes: set[bool] = set()
        self.checked_batches = 0

    def __call__(self, batch: Batch) -> torch.Tensor:
        """Predicted positions, as ``DefiNet.forward``."""
        if self.compiled is None:
            return self.model(batch)
        mode = torch.is_grad_enabled()
        graphs_before = _graphs_compiled()
        try:
            result = self.compiled(batch)
        except Exception as exc:  # any compiler failure: the eager model computes the same function
            return self._eager_from_now(batch, f"torch.compile failed ({type(exc).__name__}: "
                                               f"{str(exc).splitlines()[0][:200]})")
        if mode in self.verified_modes and _graphs_compiled() == graphs_before:
            return result
        self.checked_batches += 1
        with torch.no_grad():
            off = float((result.detach() - self.model(batch)).abs().max())
        if not off <= COMPILE_TOLERANCE_A:  # a NaN is off too
            return self._eager_from_now(batch, f"torch.compile computed a different function ({off:.2e} A off "
                                               f"eager on a newly compiled batch{' with gradients' if mode else ''})")
        self.verified_modes.add(mode)
        return result

    def _eager_from_now(self, batch: Batch, why: str) -> torch.Tensor:
        """Warn with ``why``, drop the compiled function and run ``batch`` eagerly."""
        warnings.warn(f"{why}; running the model eagerly", stacklevel=3)
        self.compiled = None
        return self.model(batch)
