"""Periodic radius graphs of defect supercells, as torch_geometric ``Data`` objects."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice
from pymatgen.optimization.neighbors import find_points_in_spheres
from torch_geometric.data import Batch, Data

from definet_core.markers import DefectNodes


def radius_graph_pbc(cart_coords: np.ndarray, lattice: Lattice, radius: float,
                     max_neighbors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed periodic radius graph keeping each centre's ``max_neighbors`` nearest neighbours.

    Returns ``edge_index`` (2, E) with row 0 the neighbour (source) and row 1 the centre (target),
    the integer lattice ``images`` (E, 3) such that the edge vector is
    ``x[src] + images @ lattice - x[dst]``, and the edge ``distances`` (E,). Edges are sorted by
    centre, then distance; ties keep pymatgen's order so truncation is deterministic.
    """
    coords = np.ascontiguousarray(cart_coords, dtype=float)
    centers, points, images, distances = find_points_in_spheres(
        coords, coords, float(radius), np.array([1, 1, 1], dtype=np.int64),
        np.ascontiguousarray(lattice.matrix, dtype=float), tol=1e-8,
    )
    not_self = distances > 1e-8
    centers, points, images, distances = centers[not_self], points[not_self], images[not_self], distances[not_self]
    order = np.lexsort((distances, centers))
    centers, points, images, distances = centers[order], points[order], images[order], distances[order]
    first_of_center = np.searchsorted(centers, centers, side="left")
    rank = np.arange(len(centers)) - first_of_center
    keep = rank < max_neighbors
    edge_index = np.stack([points[keep], centers[keep]]).astype(np.int64)
    return edge_index, np.rint(images[keep]).astype(np.int64), distances[keep]


def build_graph(nodes: DefectNodes, radius: float, max_neighbors: int,
                relaxed_coords: np.ndarray | None = None) -> Data:
    """Graph of a defect supercell built from its unrelaxed positions.

    ``relaxed_coords`` (one row per node, vacancy nodes included) becomes the target ``y``.
    """
    return with_edges(node_graph(nodes, relaxed_coords), nodes, radius, max_neighbors)


def node_graph(nodes: DefectNodes, relaxed_coords: np.ndarray | None = None) -> Data:
    """The nodes of ``build_graph``'s graph (species, markers, positions, cell, targets) without its edges: enough
    to tell the host kind (``applicability.dimensionality``) before choosing the graph settings."""
    data = Data(
        z=torch.from_numpy(nodes.atomic_numbers),
        marker=torch.from_numpy(nodes.markers),
        pos=torch.from_numpy(nodes.cart_coords).float(),
        cell=torch.tensor(nodes.lattice.matrix, dtype=torch.float32).unsqueeze(0),
        site_index=torch.from_numpy(nodes.site_index),
        num_nodes=len(nodes.atomic_numbers),
    )
    if relaxed_coords is not None:
        data.y = torch.from_numpy(np.asarray(relaxed_coords)).float()
    return data


def with_edges(graph: Data, nodes: DefectNodes, radius: float, max_neighbors: int) -> Data:
    """``graph`` (``node_graph(nodes)``) given the radius graph of ``nodes``' float64 positions, in place."""
    edge_index, images, _ = radius_graph_pbc(nodes.cart_coords, nodes.lattice, radius, max_neighbors)
    graph.edge_index = torch.from_numpy(edge_index)
    graph.edge_image = torch.from_numpy(images).to(torch.int8)
    return graph


def regraph(graph: Data, radius: float, max_neighbors: int) -> Data:
    """A copy of ``graph`` (nodes, markers, cell, targets) with the radius graph of other settings."""
    edge_index, images, _ = radius_graph_pbc(graph.pos.double().numpy(), Lattice(graph.cell[0].double().numpy()),
                                             radius, max_neighbors)
    copy = graph.clone()
    copy.edge_index = torch.from_numpy(edge_index)
    copy.edge_image = torch.from_numpy(images).to(torch.int8)
    return copy


def graph_to_arrays(graph: Data) -> dict:
    """``graph`` as plain numpy arrays and values, to cross process boundaries (torch tensors would cross as
    shared-memory file descriptors, one per tensor); ``graph_from_arrays`` is the inverse."""
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in graph.to_dict().items()}


def graph_from_arrays(values: dict) -> Data:
    """The graph that ``graph_to_arrays`` gave ``values`` for."""
    return Data(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in values.items()})


def periodic_frame(batch: Batch) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(graph index of each node, number of graphs, Cartesian shift of each edge's periodic image (E, 3) in the dtype
    of ``batch.pos``): what a model needs to rebuild edge vectors ``pos[src] + shift - pos[dst]`` as it moves the
    atoms, for one graph or a batch."""
    node_batch = batch.batch if batch.batch is not None else torch.zeros_like(batch.z)
    num_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else 1
    cell = batch.cell.to(batch.pos.dtype)
    shift = torch.einsum("ei,eij->ej", batch.edge_image.to(batch.pos.dtype), cell[node_batch[batch.edge_index[0]]])
    return node_batch, num_graphs, shift
