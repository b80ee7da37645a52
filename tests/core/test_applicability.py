"""The applicability verdict: elements, defect kinds, host kind and predicted geometry, with reasons."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from definet_core.applicability import Domain, defect_fraction, dimensionality, domain_of, host_system, judge
from definet_core.checkpoint import SHIPPED_CHECKPOINT, read_checkpoint, resolve_checkpoint
from definet_core.errors import DefiNetInputError
from definet_core.graph import build_graph
from definet_core.markers import Marker, defect_nodes
from definet_core.predict import Predictor, checkpoint_id
from tests.conftest import random_defect_cell, synthetic_relaxation
from workflows.cli.main import main

MOS2_DOMAIN = Domain(elements=(16, 34, 42), markers=(0, 1, 2), dimensionalities=("2D",), max_displacement=0.5)


def mos2_graph(seed: int = 0):
    cell, host = random_defect_cell(np.random.default_rng(seed), size=4)
    nodes = defect_nodes(cell, host)
    relaxed = synthetic_relaxation(cell, host).cart_coords
    target = nodes.cart_coords.copy()
    target[: len(relaxed)] = relaxed
    return build_graph(nodes, 5.0, 24, relaxed_coords=target)


def copper_vacancy_graph():
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    cell = host.copy()
    cell.make_supercell([2, 2, 2])
    cell.remove_sites([0])
    return build_graph(defect_nodes(cell, host), 5.0, 24)


def test_dimensionality_tells_slabs_from_bulk():
    assert dimensionality(mos2_graph()) == "2D"
    assert dimensionality(copper_vacancy_graph()) == "bulk"


def test_domain_of_training_graphs():
    graphs = [mos2_graph(seed) for seed in range(3)]
    domain = domain_of(graphs)
    assert set(domain.elements) == {16, 34, 42} and set(domain.markers) == {0, 1, 2}
    assert domain.dimensionalities == ("2D",)
    largest = max(float(torch.linalg.norm(g.y - g.pos, dim=-1).max()) for g in graphs)
    assert domain.max_displacement == pytest.approx(largest)
    assert domain.min_atoms == min(int((g.marker != Marker.VACANCY).sum()) for g in graphs)
    assert Domain.from_dict(domain.to_dict()) == domain
    assert domain.max_defect_fraction == max(defect_fraction(g) for g in graphs) == pytest.approx(2 / 48)
    old = {k: v for k, v in domain.to_dict().items() if k not in ("min_atoms", "max_defect_fraction")}  # older
    assert Domain.from_dict(old).min_atoms == 0 and Domain.from_dict(old).max_defect_fraction == 0


def test_the_union_of_two_domains_accepts_what_either_does_and_drops_a_rule_one_lacks():
    mos2 = Domain((16, 42), (0, 1), ("2D",), 1.0, 90, ("Mo-S",), 0.02)
    bulk = Domain((14,), (0, 2), ("bulk",), 0.5, 30, ("Si",), 0.05)
    both = mos2.union(bulk)
    assert both == Domain((14, 16, 42), (0, 1, 2), ("2D", "bulk"), 1.0, 30, ("Mo-S", "Si"), 0.05)
    written_before_rules = Domain((14,), (0, 2), ("bulk",), 0.5)  # no host or defect-share rule stored
    assert mos2.union(written_before_rules).host_systems == ()
    assert mos2.union(written_before_rules).max_defect_fraction == 0.0


def test_a_cell_denser_in_defects_than_every_training_cell_is_out_of_domain():
    graph = mos2_graph()  # one vacancy and one substitution among 48 sites
    domain = replace(domain_of([graph]), min_atoms=0)  # the dense cell also has fewer atoms: that rule aside
    cell, host = random_defect_cell(np.random.default_rng(5), size=4, n_vacancies=3, n_substitutions=2)
    dense = build_graph(defect_nodes(cell, host), 5.0, 24)
    assert judge(graph, graph.pos, domain).in_domain
    assert judge(dense, dense.pos, domain).reasons == (
        "5 defect sites of 48 (10.4%): denser than every training cell (4.2% at most)",)
    cell, host = random_defect_cell(np.random.default_rng(5), size=8, n_vacancies=3, n_substitutions=2)
    larger = build_graph(defect_nodes(cell, host), 5.0, 24)  # the same defects in a 4x larger cell: more dilute
    assert judge(larger, larger.pos, domain).in_domain
    assert judge(dense, dense.pos, replace(domain, max_defect_fraction=0.0)).in_domain  # checkpoints before the rule


def test_a_cell_smaller_than_every_training_cell_is_out_of_domain():
    """A 7-atom cell with one vacancy is 1/8 vacant: a concentrated defect, not what a dilute-defect model knows."""
    graph = copper_vacancy_graph()  # 31 atoms
    domain = Domain(elements=(29,), markers=(0, 2), dimensionalities=("bulk",), max_displacement=0.05, min_atoms=31)
    assert judge(graph, graph.pos, domain).in_domain
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    tiny = host.copy()
    tiny.make_supercell([2, 1, 1])
    tiny.remove_sites([0])
    tiny_graph = build_graph(defect_nodes(tiny, host), 5.0, 24)
    verdict = judge(tiny_graph, tiny_graph.pos, domain)
    assert verdict.reasons == ("7 atoms: smaller than every training cell (31 atoms or more)",)


def test_a_host_no_training_host_had_is_out_of_domain_even_when_every_element_is_known():
    """WSe2 for a model that met W and Se only as dopants of MoS2: the left-out-material case of issue 14."""
    graph = mos2_graph()  # S vacancies and Se on S sites: Se is a dopant, not part of the host
    assert host_system(graph) == "Mo-S"
    domain = replace(domain_of([graph]), elements=(16, 34, 42, 74))
    assert domain.host_systems == ("Mo-S",) and judge(graph, graph.pos, domain).in_domain
    cell, host = random_defect_cell(np.random.default_rng(4), size=4)
    cell.replace_species({"Mo": "W", "S": "Se"})
    host.replace_species({"Mo": "W", "S": "Se"})
    wse2 = build_graph(defect_nodes(cell, host), 5.0, 24)
    verdict = judge(wse2, wse2.pos, domain)
    assert [r.split(":")[0] for r in verdict.reasons] == ["host Se-W"] and "never a training host" in verdict.reasons[0]
    assert judge(wse2, wse2.pos, replace(domain, host_systems=())).in_domain  # checkpoints written before the rule


def test_an_in_domain_prediction_has_no_reasons():
    graph = mos2_graph()
    assert judge(graph, graph.y, MOS2_DOMAIN).in_domain


def test_unseen_elements_defect_kinds_and_bulk_hosts_are_out_of_domain():
    graph = copper_vacancy_graph()
    verdict = judge(graph, graph.pos, MOS2_DOMAIN)
    assert not verdict.in_domain
    assert any("Cu" in r and "never seen" in r for r in verdict.reasons)
    assert any("bulk host" in r for r in verdict.reasons)
    interstitial = mos2_graph()
    interstitial.marker = interstitial.marker.clone()
    interstitial.marker[0] = Marker.INTERSTITIAL
    reasons = judge(interstitial, interstitial.y, MOS2_DOMAIN).reasons
    assert reasons == ("defect kind 'interstitial' never seen in training",)


def test_broken_predicted_geometry_is_out_of_domain():
    graph = mos2_graph()
    src, dst = graph.edge_index[:, 0]
    collapsed = graph.pos.clone()
    shift = graph.edge_image[0].double() @ graph.cell[0].double()
    collapsed[dst] = (collapsed[src].double() + shift).float() + 0.3  # 0.52 A from its neighbour
    (reason,) = judge(graph, collapsed, replace(MOS2_DOMAIN, max_displacement=10.0)).reasons
    assert "apart" in reason and "covalent radii" in reason
    runaway = graph.pos.clone()
    runaway[0, 0] += 2.0
    reasons = judge(graph, runaway, MOS2_DOMAIN).reasons
    assert any("moved 2.00 A" in r for r in reasons)


@pytest.mark.parametrize("any_size", [False, True])
def test_checkpoint_domain_stores_the_training_sets_domain_and_keeps_the_weights(dataset_root, cache_dir,
                                                                                   tiny_checkpoint, tmp_path,
                                                                                   any_size):
    out = tmp_path / "with_domain.pt"
    args = ["checkpoint-domain", str(tiny_checkpoint), "--data", str(dataset_root), "-o", str(out)]
    assert main(args + ["--any-size"] * any_size) == 0
    written, before = read_checkpoint(out), read_checkpoint(tiny_checkpoint)
    assert all(torch.equal(written["state_dict"][k], v) for k, v in before["state_dict"].items())
    assert written["domain"]["host_systems"] == ["Mo-S"] and written["domain"]["dimensionalities"] == ["2D"]
    assert (written["domain"]["min_atoms"] == 0) == any_size  # the synthetic cells have atoms: a rule unless told


def test_checkpoint_domain_can_take_another_checkpoints_domain_instead_of_building_graphs(
        dataset_root, cache_dir, tiny_checkpoint, tmp_path, capsys):
    """A model trained on the dilute specialist's data takes its domain as stored, with or beside ``--data``."""
    out = tmp_path / "same_data.pt"
    assert main(["checkpoint-domain", str(tiny_checkpoint), "--domain-from", "definet_2d_dilute_v4",
                 "-o", str(out)]) == 0
    dilute = read_checkpoint("definet_2d_dilute_v4")["domain"]
    assert read_checkpoint(out)["domain"] == dilute
    assert read_checkpoint(out)["metadata"]["domain_from"] == checkpoint_id("definet_2d_dilute_v4")
    both = tmp_path / "both.pt"
    assert main(["checkpoint-domain", str(tiny_checkpoint), "--data", str(dataset_root), "--domain-from", str(out),
                 "-o", str(both)]) == 0
    assert read_checkpoint(both)["domain"]["max_defect_fraction"] > dilute["max_defect_fraction"]  # the synthetic cells
    assert read_checkpoint(both)["domain"]["host_systems"] == dilute["host_systems"]  # Mo-S, Se-W
    capsys.readouterr()
    assert main(["checkpoint-domain", str(tiny_checkpoint), "-o", str(tmp_path / "x.pt")]) == 2
    assert "give --data (the training data) or --domain-from" in capsys.readouterr().err
    refused = tmp_path / "x.pt"
    assert main(["checkpoint-domain", str(out), "--domain-from", str(tiny_checkpoint), "-o", str(refused)]) == 2
    assert "stores no applicability domain" in capsys.readouterr().err and not refused.exists()


def test_a_checkpoint_without_a_domain_vouches_for_nothing():
    graph = mos2_graph()
    verdict = judge(graph, graph.y, None)
    assert not verdict.in_domain and "no applicability domain" in verdict.reasons[0]


def test_the_2d_checkpoint_carries_its_training_domain_and_judges_real_cases():
    domain = Domain.from_dict(read_checkpoint("definet_2d_v2")["domain"])
    assert domain.dimensionalities == ("2D",) and Marker.INTERSTITIAL not in domain.markers
    assert {5, 7, 15, 16, 31, 34, 42, 49, 74} <= set(domain.elements)
    predictor = Predictor("definet_2d_v2", device="cpu")
    cell, host = random_defect_cell(np.random.default_rng(1), size=8, n_vacancies=3, c=20.0)
    (mos2,) = predictor.predictions([cell], host)
    assert mos2.verdict.in_domain, mos2.verdict.reasons
    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    vacancy = copper.copy()
    vacancy.make_supercell([3, 3, 3])
    vacancy.remove_sites([0])
    (cu,) = predictor.predictions([vacancy], copper)
    assert not cu.verdict.in_domain


def test_checkpoints_resolve_by_name_and_by_recorded_id():
    assert resolve_checkpoint(None) == SHIPPED_CHECKPOINT
    assert resolve_checkpoint("definet_2d").name == "definet_2d.pt"  # the first shipped model stays loadable
    recorded = checkpoint_id("definet_2d")
    assert recorded == "definet_2d@9c4923c0cc46"  # the id documents written with it carry
    assert resolve_checkpoint(recorded).name == "definet_2d.pt"
    with pytest.raises(DefiNetInputError, match="not 000000000000"):
        resolve_checkpoint("definet_2d@000000000000")
    packaged = ("definet_2d, definet_2d_dilute_v1, definet_2d_dilute_v2, definet_2d_dilute_v3, definet_2d_dilute_v4, "
                "definet_2d_large, definet_2d_seed1, definet_2d_v2, definet_2d_v3, definet_2d_v4, definet_2d_v5, "
                "definet_2d_v6, definet_2d_v6_hbn, definet_2d_v7, definet_2d_v8, definet_2d_v9, definet_2d_v10, "
                "definet_2d_v11, definet_2d_v12, definet_bulk_v1, definet_bulk_v1_seed1, definet_v3, definet_v4, "
                "definet_v5, definet_v6, definet_v7, definet_v8, definet_v9, definet_v10, definet_v11, definet_v12, "
                "definet_v12_ensemble, definet_v13, definet_v14, definet_v15, definet_v15_ensemble")  # in version order
    with pytest.raises(DefiNetInputError, match=f"packaged checkpoints: {packaged}"):
        resolve_checkpoint("no_such_model")


def test_a_companion_checkpoint_gives_the_mean_prediction_and_a_spread(tiny_checkpoint):
    from definet_core.graph import regraph

    cell, host = random_defect_cell(np.random.default_rng(2), size=4, n_vacancies=2, c=20.0)
    (alone,) = Predictor("definet_2d_v2", device="cpu").predictions([cell], host)
    assert alone.spread is None
    two_d = "definet_2d_v2"
    (twin,) = Predictor(two_d, device="cpu", companion="definet_2d").predictions([cell], host)  # same weights
    assert twin.spread == 0.0 and np.allclose(twin.structure.cart_coords, alone.structure.cart_coords)
    (pair,) = Predictor(two_d, device="cpu", companion=tiny_checkpoint).predictions([cell], host)  # other graphs
    (other,) = Predictor(tiny_checkpoint, device="cpu").predictions([cell], host)
    mean = 0.5 * (alone.structure.cart_coords + other.structure.cart_coords)
    assert pair.spread > 0 and np.allclose(pair.structure.cart_coords, mean, atol=1e-6)
    assert np.isclose(pair.spread, np.abs(alone.structure.cart_coords - other.structure.cart_coords).mean(),
                      atol=1e-6)  # no vacancy node reaches the structure
    (trio,) = Predictor(two_d, device="cpu", companion=[tiny_checkpoint, "definet_2d"]).predictions([cell], host)
    coords = [alone.structure.cart_coords, other.structure.cart_coords, alone.structure.cart_coords]
    assert np.allclose(trio.structure.cart_coords, np.mean(coords, axis=0), atol=1e-6)
    assert np.isclose(trio.spread, 2 / 3 * pair.spread, atol=1e-6)  # pairs (v2, tiny), (v2, v1) = 0, (tiny, v1)

    graph = mos2_graph()
    rebuilt = regraph(graph, 4.0, 12)
    direct = build_graph(defect_nodes(*random_defect_cell(np.random.default_rng(0), size=4)), 4.0, 12)
    def lengths(g):  # per centre, the sorted neighbour distances (ties may pick other, equally near images)
        vec = g.pos[g.edge_index[0]] + g.edge_image.float() @ g.cell[0] - g.pos[g.edge_index[1]]
        return sorted(zip(g.edge_index[1].tolist(), np.round(vec.norm(dim=-1).numpy(), 4).tolist(), strict=True))

    assert lengths(rebuilt) == lengths(direct) and torch.equal(rebuilt.y, graph.y)
