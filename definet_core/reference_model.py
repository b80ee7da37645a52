"""The reference DefiNet architecture (``ModelConfig.arch = "reference"``), written from its description.

Nodes carry scalars ``s`` (N, H) and vectors ``v`` (N, 3, H); one virtual node per graph carries its own
scalar (a learned embedding) and vector (zeros). Each layer:

1. adds the virtual node into every node (scalars: an MLP of [node, virtual], residual; vectors: a linear map
   of node + virtual, residual);
2. passes PaiNN-style messages whose filter is MLP(s_j) * (P m_j + P m_i) * W rbf(d_ij) / sqrt(3), with ``m``
   the input marker embedding, re-projected by every layer's own P and never updated; the filter splits into
   a, b, c; vectors receive VA(sum_j (a v_j + b u_ij) / sqrt(H)), scalars (s + sum_j c) / sqrt(2);
3. updates: V1, V2 = linear maps of v; parts 1-3 = MLP([s, |V2|]); s = (s + part2 / sqrt(2) + s tanh(part3))
   / sqrt(2); v += VA(part1 V1);
4. moves the atoms: pos += (A + B) / 2, A a linear map of v to one vector per node, B a sum over neighbours of
   a per-edge scalar times u_ij (``EdgeDisplacement``);
5. updates the virtual node from the mean over its graph's nodes, with residuals (not after the last layer,
   where nothing would read it).

``u_ij`` is the unit vector from neighbour j to centre i, recomputed from the current positions in every layer
on the neighbour list and periodic images of the unrelaxed cell. The radial basis is ``num_rbf`` Gaussians on
d / ``BASIS_SPAN`` times a polynomial envelope (exponent 5); with 6 A edges about a fifth of them are active.
``VA`` is a leaky-ReLU for vectors (``VectorActivation``). Vectors are touched only by linear maps over
channels, invariant gates, dot products and norms, so the network is exactly E(3)-equivariant.

At the reference size (hidden 512, 4 layers, 128 Gaussians) this is 31,300,100 parameters, against the paper's
"about 29 M": 0.58 M of embeddings and input map, and per layer 7.88 M (7.09 M for the last) = PaiNN's message
and update 3.09 M, virtual node 1.84 M (in 1.05 M, out 0.79 M), marker projections 1.05 M, the two vector
activations 1.05 M, coordinate step 0.86 M. The description fixes neither the MLP widths (all two layers, H wide
here) nor the activations' maps (two H x H each); these choices alone move the count by millions.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from definet_core.config import ModelConfig
from definet_core.graph import periodic_frame
from definet_core.marker_pairs import gather_with_pair, pair_sum
from definet_core.stability import clip_displacement, clip_vectors, shrink_runaways

BASIS_SPAN = 30.0
"""Distance (A) that the reference Gaussians and their envelope span (edges stop at ``ModelConfig.radius``)."""
ENVELOPE_EXPONENT = 5
GAUSSIAN_TAIL_WIDTHS = 6
"""``radial_features``: a Gaussian centred this many widths beyond an edge's length is below exp(-18) on it."""
SILU_SCALE = 1.0 / 0.6
"""SiLU times this has about unit variance for unit-normal inputs."""
VECTOR_NEGATIVE_SLOPE = 0.5
"""``VectorActivation``: the share of the vector kept across the boundary (0.5: the vector and its projection
onto the boundary plane are averaged)."""


class ScaledSiLU(nn.Module):
    """SiLU scaled to about unit output variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(x) * SILU_SCALE


def mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    """Linear, scaled SiLU, linear."""
    return nn.Sequential(nn.Linear(n_in, n_hidden), ScaledSiLU(), nn.Linear(n_hidden, n_out))


def radial_features(config: ModelConfig) -> int:
    """How many radial basis functions the layers of ``config`` read: ``num_rbf``, or, with a
    ``config.gaussian_reach``, the first Gaussians up to the last one centred within the reach plus
    ``GAUSSIAN_TAIL_WIDTHS`` widths. The rest are below exp(-18) on every edge up to the reach, so dropping them
    changes the function there by less than float32 rounding (``architectures.prune_gaussians``)."""
    if not config.gaussian_reach:
        return config.num_rbf
    spacing = BASIS_SPAN / (config.num_rbf - 1)
    return min(config.num_rbf, int(config.gaussian_reach / spacing + GAUSSIAN_TAIL_WIDTHS) + 1)


class GaussianBasis(nn.Module):
    """``num_rbf`` Gaussians evenly spaced on x = d / span in [0, 1] (width: their spacing), times the polynomial
    envelope 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) (zero from x = 1). ``count``: evaluate
    only the first so many (``radial_features``)."""

    def __init__(self, num_rbf: int, count: int | None = None, span: float = BASIS_SPAN,
                 exponent: int = ENVELOPE_EXPONENT) -> None:
        super().__init__()
        if num_rbf < 2:
            raise ValueError("GaussianBasis needs at least 2 Gaussians")
        self.span = span
        self.exponent = exponent
        self.register_buffer("offsets", torch.linspace(0.0, 1.0, num_rbf)[:count])
        self.coefficient = -0.5 / (1.0 / (num_rbf - 1)) ** 2

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        x = (distance / self.span).unsqueeze(-1)
        p = self.exponent
        envelope = (1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1)
                    - p * (p + 1) / 2 * x ** (p + 2)) * (x < 1.0)
        return envelope * torch.exp(self.coefficient * (x - self.offsets) ** 2)


class VectorActivation(nn.Module):
    """A leaky-ReLU for vectors: q = W v, kept where q . k >= 0 for a learned direction k = U v; elsewhere q is
    averaged with its projection onto the plane normal to k, q - 0.5 (q . k / |k|^2) k. Per channel; continuous,
    and equivariant because k is a linear map of the vectors too."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.value = nn.Linear(hidden, hidden, bias=False)
        self.direction = nn.Linear(hidden, hidden, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        q, k = self.value(v), self.direction(v)
        dot = (q * k).sum(dim=1, keepdim=True)
        norm2 = (k * k).sum(dim=1, keepdim=True)
        return q - (1.0 - VECTOR_NEGATIVE_SLOPE) * torch.clamp(dot, max=0.0) / (norm2 + 1e-8) * k


class EdgeDisplacement(nn.Module):
    """B_i = sum_j MLP(MLP(s_j) * W rbf_ij * marker_ij) u_ij: a per-edge radial displacement along each bond.

    ``pair_factor`` (markers, markers, hidden) is the caller's marker factor of an edge's two ends (P m_j + P m_i,
    ``marker_pairs.pair_sum``); ``marker`` the nodes' markers. The output layer starts
    small (weights N(0, 0.01), zero bias), so an untrained model moves atoms by hundredths of an A.
    """

    def __init__(self, hidden: int, num_radial: int, activation: type[nn.Module] = ScaledSiLU) -> None:
        super().__init__()
        self.scalar_mlp = nn.Sequential(nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, hidden))
        self.radial = nn.Linear(num_radial, hidden)
        self.edge_mlp = nn.Sequential(nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, 1))
        nn.init.normal_(self.edge_mlp[-1].weight, std=1e-2)
        nn.init.zeros_(self.edge_mlp[-1].bias)

    def forward(self, s: torch.Tensor, rbf: torch.Tensor, pair_factor: torch.Tensor, marker: torch.Tensor,
                unit: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        magnitude = self.edge_mlp(gather_with_pair(self.scalar_mlp(s), pair_factor, marker, src, dst)
                                  * self.radial(rbf))
        return scatter(magnitude * unit, dst, dim=0, dim_size=s.shape[0], reduce="sum")


class VirtualNodeIn(nn.Module):
    """Adds the virtual node into every node of its graph: s += MLP([s, g_s]); v += W (v + g_v)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scalar = mlp(2 * hidden, hidden, hidden)
        self.vector = nn.Linear(hidden, hidden, bias=False)

    # Runs eagerly under torch.compile: torch 2.13's CPU inductor compiles a whole reference layer's training
    # forward to a different function (3.5e-4 A off eager on an untrained hidden-64 model, 6 % of its largest
    # displacement); with this cheap per-node step outside the graph the compiled layer matches eager (2e-6 A)
    # and trains ~2x faster than eager. ``CompiledForward`` still checks the first batch.
    @torch.compiler.disable
    def forward(self, s: torch.Tensor, v: torch.Tensor, g_s: torch.Tensor, g_v: torch.Tensor,
                batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return s + self.scalar(torch.cat([s, g_s[batch]], dim=-1)), v + self.vector(v + g_v[batch])


class VirtualNodeOut(nn.Module):
    """Updates the virtual node from the mean over its graph's nodes, with residuals: g_s += MLP(mean s);
    g_v += W mean v."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scalar = mlp(hidden, hidden, hidden)
        self.vector = nn.Linear(hidden, hidden, bias=False)

    def forward(self, s: torch.Tensor, v: torch.Tensor, g_s: torch.Tensor, g_v: torch.Tensor,
                batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean_s = scatter(s, batch, dim=0, dim_size=g_s.shape[0], reduce="mean")
        mean_v = scatter(v, batch, dim=0, dim_size=g_v.shape[0], reduce="mean")
        return g_s + self.scalar(mean_s), g_v + self.vector(mean_v)


class ReferenceLayer(nn.Module):
    """Virtual-node broadcast, marker-aware message, update, coordinate step, virtual-node update."""

    def __init__(self, config: ModelConfig, last: bool = False) -> None:
        super().__init__()
        h = config.hidden
        self.hidden = h
        self.vector_clip = config.vector_clip
        self.virtual_in = VirtualNodeIn(h)
        self.message_mlp = mlp(h, h, 3 * h)
        self.message_marker = nn.Linear(h, 3 * h)
        self.message_radial = nn.Linear(radial_features(config), 3 * h)
        self.message_activation = VectorActivation(h)
        self.update_vectors = nn.Linear(h, 2 * h, bias=False)
        self.update_mlp = mlp(2 * h, h, 3 * h)
        self.update_activation = VectorActivation(h)
        self.coordinate_vector = nn.Linear(h, 1, bias=False)
        self.coordinate_marker = nn.Linear(h, h)
        self.edge_displacement = EdgeDisplacement(h, radial_features(config))
        # the last layer's virtual-node update would never be read: no parameters that cannot train
        self.virtual_out = None if last else VirtualNodeOut(h)
        # PyTorch's initialisation everywhere but the two coordinate outputs, which start small as ours does
        # (an untrained model then moves atoms ~0.01 A rather than ~0.6 A at hidden 64)
        nn.init.normal_(self.coordinate_vector.weight, std=1e-2)

    def forward(self, s: torch.Tensor, v: torch.Tensor, g_s: torch.Tensor, g_v: torch.Tensor,
                pos: torch.Tensor, marker: torch.Tensor, marker_table: torch.Tensor, edge_index: torch.Tensor,
                edge_shift: torch.Tensor, basis: GaussianBasis, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s, v = self.virtual_in(s, v, g_s, g_v, batch)
        src, dst = edge_index
        vec = pos[dst] - (pos[src] + edge_shift)  # from the neighbour to the centre
        dist = vec.norm(dim=-1).clamp_min(1e-9)
        unit = vec / dist.unsqueeze(-1)
        rbf = basis(dist)
        # P m for the marker of each end: projecting the (num_markers, H) table equals projecting every node's row
        marker_factor = pair_sum(self.message_marker(marker_table))
        weights = (gather_with_pair(self.message_mlp(s), marker_factor, marker, src, dst) * self.message_radial(rbf)
                   / math.sqrt(3.0))
        a, b, c = weights.split(self.hidden, dim=-1)
        msg_v = (a.unsqueeze(1) * v[src] + b.unsqueeze(1) * unit.unsqueeze(-1)) / math.sqrt(self.hidden)
        n = s.shape[0]
        s = (s + scatter(c, dst, dim=0, dim_size=n, reduce="sum")) / math.sqrt(2.0)
        v = v + self.message_activation(scatter(msg_v, dst, dim=0, dim_size=n, reduce="sum"))
        v1, v2 = self.update_vectors(v).split(self.hidden, dim=-1)
        part1, part2, part3 = self.update_mlp(
            torch.cat([s, torch.sqrt((v2**2).sum(dim=1) + 1e-8)], dim=-1)).split(self.hidden, dim=-1)
        s = (s + part2 / math.sqrt(2.0) + s * torch.tanh(part3)) / math.sqrt(2.0)
        v, excess = clip_vectors(v + self.update_activation(part1.unsqueeze(1) * v1), self.vector_clip)
        displacement_b = self.edge_displacement(s, rbf, pair_sum(self.coordinate_marker(marker_table)), marker, unit,
                                                edge_index)
        pos = pos + 0.5 * (self.coordinate_vector(v).squeeze(-1) + displacement_b)
        if self.virtual_out is not None:
            g_s, g_v = self.virtual_out(s, v, g_s, g_v, batch)
        return s, v, g_s, g_v, pos, excess


class ReferenceDefiNet(nn.Module):
    """The reference DefiNet: predicts the relaxed Cartesian position of every node of a batch of defect graphs.

    Same interface as ``definet_core.model.DefiNet``. Uses ``hidden``, ``layers``, ``num_rbf``,
    ``num_elements`` and ``num_markers`` of the config (``radius``/``max_neighbors`` define the graph it
    reads), and the same bounds as ours (``vector_clip`` after each layer's update, ``displacement_clip``,
    ``definet_core.stability``), which the reference does not have; ``aggregation_norm``,
    ``edge_displacement`` and ``vector_activation`` belong to our architecture and are ignored here (the
    reference always has the last two).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.element_embedding = nn.Embedding(config.num_elements + 1, h)
        self.marker_embedding = nn.Embedding(config.num_markers, h)
        self.input_map = nn.Linear(2 * h, h)
        self.virtual_embedding = nn.Embedding(1, h)
        self.basis = GaussianBasis(config.num_rbf, radial_features(config))
        self.layers = nn.ModuleList(ReferenceLayer(config, last=k == config.layers - 1) for k in range(config.layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Predicted positions (N, 3), in the dtype of ``batch.pos``."""
        pos = batch.pos
        node_batch, num_graphs, edge_shift = periodic_frame(batch)
        marker_table = self.marker_embedding.weight
        s = self.input_map(torch.cat([self.element_embedding(batch.z), marker_table[batch.marker]], dim=-1))
        v = pos.new_zeros(pos.shape[0], 3, self.config.hidden)
        g_s = self.virtual_embedding.weight.expand(num_graphs, -1)
        g_v = pos.new_zeros(num_graphs, 3, self.config.hidden)
        start, excess = pos, pos.new_ones(pos.shape[0], 1)
        for layer in self.layers:
            s, v, g_s, g_v, pos, layer_excess = layer(s, v, g_s, g_v, pos, batch.marker, marker_table,
                                                      batch.edge_index, edge_shift, self.basis, node_batch)
            excess = torch.maximum(excess, layer_excess)
            pos = clip_displacement(pos, start, self.config.displacement_clip)
        return shrink_runaways(pos, start, excess, node_batch, num_graphs)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
