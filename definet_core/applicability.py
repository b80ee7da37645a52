"""Applicability domain: may a prediction serve as a relaxation start? One verdict per structure, with reasons.

A checkpoint stores the domain it was trained on (``Domain``: elements, defect kinds, host
dimensionalities, host chemical systems, the smallest cell, the largest DFT displacement). A prediction is
in-domain only when the input lies inside that domain and the predicted geometry is sane: no two atoms closer than
``MIN_CONTACT_FRACTION`` of the sum of their covalent radii, and no atom moved further than
``DISPLACEMENT_MARGIN`` times the largest displacement seen in training (and at least
``DISPLACEMENT_SLACK_A`` beyond it). An ensemble calibrated with a spread bound (a route of a routing
checkpoint) also refuses predictions its members disagree on by more than the bound. All rules live here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import Element
from torch_geometric.data import Data

from definet_core.markers import Marker, atom_mask

SLAB_VACUUM_A = 5.0
"""A gap of at least this many A between periodic images along a lattice direction makes it non-periodic."""
MIN_CONTACT_FRACTION = 0.6
"""Predicted atoms closer than this fraction of the sum of their covalent radii are a broken geometry."""
DISPLACEMENT_MARGIN = 1.5
"""A predicted displacement above this multiple of the largest training displacement is out of domain..."""
DISPLACEMENT_SLACK_A = 0.1
"""...and never less than this much (A) beyond it: a bulk host whose DFT displacements peak at 0.01 A would
otherwise call a prediction that moves an atom 0.02 A a runaway."""
DIMENSIONALITY = {0: "bulk", 1: "2D", 2: "1D", 3: "0D"}
"""Host kind by the number of lattice directions with vacuum."""


COVALENT_RADII = np.array([1.5] + [CovalentRadius.radius.get(Element.from_Z(z).symbol, 1.5) for z in range(1, 119)])
"""Covalent radius (A) by atomic number (1.5 A where pymatgen has none)."""


@dataclass(frozen=True)
class Domain:
    """What a checkpoint was trained on (stored in the checkpoint as a plain dict)."""

    elements: tuple[int, ...]
    markers: tuple[int, ...]
    dimensionalities: tuple[str, ...]
    max_displacement: float
    min_atoms: int = 0
    """The fewest atoms of a training cell: a smaller cell is a concentrated defect, not a dilute one (0: no
    rule, as in checkpoints written before it)."""
    host_systems: tuple[str, ...] = ()
    """The chemical systems of the training hosts (``host_system``): a host whose system is not among them is one
    the model never saw, even when it knows every element (WSe2 for a model that met W and Se only as dopants
    of other hosts). Empty: no rule, as in checkpoints written before it."""
    max_defect_fraction: float = 0.0
    """The largest share of defect sites (substitutions, vacancies, interstitials: ``defect_fraction``) among a
    training cell's sites: a cell with a larger share is a denser defect configuration than any the model learnt
    from, and a specialist for dilute defects (``checkpoint.Router.specialists``) serves only cells within it
    (0: no rule, as in checkpoints written before it)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def union(self, other: Domain) -> Domain:
        """The domain of a model trained on both domains' data: what either accepts (a rule one of them lacks,
        stored as 0 or empty, is dropped)."""
        return Domain(tuple(sorted({*self.elements, *other.elements})), tuple(sorted({*self.markers, *other.markers})),
                      tuple(sorted({*self.dimensionalities, *other.dimensionalities})),
                      max(self.max_displacement, other.max_displacement), min(self.min_atoms, other.min_atoms),
                      tuple(sorted({*self.host_systems, *other.host_systems}))
                      if self.host_systems and other.host_systems else (),
                      max(self.max_defect_fraction, other.max_defect_fraction)
                      if self.max_defect_fraction and other.max_defect_fraction else 0.0)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Domain:
        """Inverse of ``to_dict``."""
        return cls(tuple(values["elements"]), tuple(values["markers"]), tuple(values["dimensionalities"]),
                   float(values["max_displacement"]), int(values.get("min_atoms", 0)),
                   tuple(values.get("host_systems", ())), float(values.get("max_defect_fraction", 0.0)))


@dataclass(frozen=True)
class Verdict:
    """Whether a prediction may be used as a relaxation start, and why not."""

    in_domain: bool
    reasons: tuple[str, ...] = ()
    spread_exceeded: bool = False

    @property
    def in_domain_before_spread(self) -> bool:
        """The verdict without the ensemble-spread bound: only the spread (if anything) argues against it."""
        return len(self.reasons) == int(self.spread_exceeded)


def largest_gap(frac_coords: np.ndarray, cell: np.ndarray, axis: int) -> tuple[float, float, float]:
    """(width in A, fractional start, fractional width) of the largest atom-free slab along lattice vector ``axis``
    of ``cell`` (rows are lattice vectors), measured perpendicular to the other two vectors."""
    volume = abs(np.linalg.det(cell))
    height = volume / np.linalg.norm(np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3]))
    coords = np.sort(np.asarray(frac_coords)[:, axis] % 1.0)
    gaps = np.diff(np.append(coords, coords[0] + 1.0))
    k = int(np.argmax(gaps))
    return float(gaps[k] * height), float(coords[k]), float(gaps[k])


def dimensionality(graph: Data) -> str:
    """``bulk``, ``2D``, ``1D`` or ``0D``: how many lattice directions have vacuum between the images."""
    atoms = atom_mask(graph.marker).numpy()
    cell = graph.cell[0].double().numpy()
    frac = np.linalg.solve(cell.T, graph.pos.double().numpy()[atoms].T).T
    vacuum_directions = sum(largest_gap(frac, cell, axis)[0] >= SLAB_VACUUM_A for axis in range(3))
    return DIMENSIONALITY[vacuum_directions]


def host_system(graph: Data) -> str:
    """The host's chemical system, e.g. ``Mo-S``: the elements of its unchanged sites and of its vacancy nodes
    (which carry the removed element), so dopants do not count."""
    host_sites = (graph.marker == Marker.PRISTINE) | (graph.marker == Marker.VACANCY)
    return "-".join(sorted({Element.from_Z(int(z)).symbol for z in graph.z[host_sites].unique()}))


def defect_fraction(graph: Data) -> float:
    """The share of a graph's sites (its nodes, vacancy nodes included) that are defects: not marked pristine."""
    return float((graph.marker != Marker.PRISTINE).float().mean())


def domain_of(graphs: Iterable[Data]) -> Domain:
    """The domain spanned by training graphs (their targets ``y`` give the displacements)."""
    elements, markers, kinds, largest, fewest, systems, densest = set(), set(), set(), 0.0, None, set(), 0.0
    for graph in graphs:
        systems.add(host_system(graph))
        densest = max(densest, defect_fraction(graph))
        elements.update(int(z) for z in graph.z.unique())
        markers.update(int(m) for m in graph.marker.unique())
        kinds.add(dimensionality(graph))
        atoms = atom_mask(graph.marker)
        largest = max(largest, float(torch.linalg.norm(graph.y - graph.pos, dim=-1)[atoms].max()))
        count = int(atoms.sum())
        fewest = count if fewest is None else min(fewest, count)
    return Domain(tuple(sorted(elements)), tuple(sorted(markers)), tuple(sorted(kinds)), largest, fewest or 0,
                  tuple(sorted(systems)), densest)


def _symbols(numbers: Iterable[int]) -> str:
    return ", ".join(Element.from_Z(int(z)).symbol for z in sorted(numbers))


def input_reasons(graph: Data, domain: Domain) -> list[str]:
    """Why the input (elements, defect kinds, host kind) lies outside the domain; empty when it does not."""
    reasons = []
    unseen = {int(z) for z in graph.z.unique()} - set(domain.elements)
    if unseen:
        reasons.append(f"element(s) {_symbols(unseen)} never seen in training")
    for marker in sorted({int(m) for m in graph.marker.unique()} - set(domain.markers)):
        reasons.append(f"defect kind '{Marker(marker).name.lower()}' never seen in training")
    kind = dimensionality(graph)
    if kind not in domain.dimensionalities:
        reasons.append(f"{kind} host; trained on {', '.join(domain.dimensionalities)} hosts only")
    atoms = int(atom_mask(graph.marker).sum())
    if atoms < domain.min_atoms:
        reasons.append(f"{atoms} atoms: smaller than every training cell ({domain.min_atoms} atoms or more)")
    system = host_system(graph)
    if domain.host_systems and system not in domain.host_systems:
        reasons.append(f"host {system}: never a training host ({len(domain.host_systems)} host systems known; "
                       "fine-tune on it first: docs/new_host.md)")
    share = defect_fraction(graph)
    if domain.max_defect_fraction and share > domain.max_defect_fraction * (1 + 1e-6):
        reasons.append(f"{round(share * graph.num_nodes)} defect sites of {graph.num_nodes} ({share:.1%}): denser than "
                       f"every training cell ({domain.max_defect_fraction:.1%} at most)")
    return reasons


def geometry_reasons(graph: Data, predicted: torch.Tensor, domain: Domain) -> list[str]:
    """Why the predicted geometry is not a sane start (close contacts, runaway atoms); empty when it is."""
    reasons = []
    atoms = atom_mask(graph.marker).numpy()
    pos = predicted.double().numpy()
    moved = np.linalg.norm(pos - graph.pos.double().numpy(), axis=1) * atoms
    bound = max(DISPLACEMENT_MARGIN * domain.max_displacement, domain.max_displacement + DISPLACEMENT_SLACK_A)
    if moved.max() > bound:
        reasons.append(f"atom {int(moved.argmax())} moved {moved.max():.2f} A (> {bound:.2f} A: "
                       f"{DISPLACEMENT_MARGIN} x, and at least {DISPLACEMENT_SLACK_A} A beyond, the largest "
                       f"training displacement, {domain.max_displacement:.2f} A)")
    src, dst = graph.edge_index.numpy()
    real = atoms[src] & atoms[dst]
    src, dst = src[real], dst[real]
    shift = graph.edge_image.double().numpy()[real] @ graph.cell[0].double().numpy()
    distance = np.linalg.norm(pos[src] + shift - pos[dst], axis=1)
    radii = COVALENT_RADII[graph.z.numpy()]
    limit = MIN_CONTACT_FRACTION * (radii[src] + radii[dst])
    closest = int(np.argmin(distance / limit)) if len(distance) else None
    if closest is not None and distance[closest] < limit[closest]:
        reasons.append(f"atoms {int(dst[closest])} and {int(src[closest])} end {distance[closest]:.2f} A apart "
                       f"(< {MIN_CONTACT_FRACTION} x the sum of their covalent radii, {limit[closest]:.2f} A)")
    return reasons


def spread_reasons(spread: float | None, bound: float | None) -> list[str]:
    """Why an ensemble's prediction is not trusted: its members disagree by more than ``bound`` (A, mean
    |dx|,|dy|,|dz| between members, ``predict.ensemble_mean_and_spread``); empty without a bound or a spread."""
    if bound is None or spread is None or spread <= bound:
        return []
    return [f"ensemble spread {spread:.4f} A (> {bound} A, the bound its members were calibrated to)"]


def judge(graph: Data, predicted: torch.Tensor, domain: Domain | None, spread: float | None = None,
          spread_bound: float | None = None) -> Verdict:
    """The verdict on one prediction (and its ensemble spread): in-domain only with no reason against it."""
    if domain is None:
        return Verdict(False, ("the checkpoint stores no applicability domain (retrain or fine-tune it with "
                               "this version of definet)",))
    disagreement = spread_reasons(spread, spread_bound)
    reasons = input_reasons(graph, domain) + geometry_reasons(graph, predicted, domain) + disagreement
    return Verdict(not reasons, tuple(reasons), bool(disagreement))
