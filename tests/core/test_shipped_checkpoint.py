"""The shipped checkpoint loads by default and beats the unrelaxed input on held-out DFT data."""

import numpy as np
import pytest

from definet_core.checkpoint import CHECKPOINT_DIR, read_checkpoint, read_router, resolve_checkpoint
from definet_core.config import ModelConfig
from definet_core.dataset import MaterialSet, load_pair
from definet_core.host_report import host_table, pair_rows, summary
from definet_core.io import read_structure
from definet_core.metrics import structure_errors
from definet_core.predict import Predictor
from tests.conftest import shared_data_or_skip


def test_shipped_checkpoint_routes_2d_and_bulk_hosts_to_small_self_describing_checkpoints():
    router = read_router()
    assert router.default == "2D" and set(router.routes) == {"2D", "bulk"}
    assert [spec.split("@")[0] for spec in router.routes["2D"]] == ["definet_2d_v12"]
    names = [[spec.split("@")[0] for spec in members] for members in router.specialists["2D"]]
    assert names == [["definet_2d_dilute_v4"], ["definet_2d_v6_hbn", "definet_2d_seed1"]]  # hBN: an ensemble
    specialists = [spec for members in router.specialists["2D"] for spec in members]
    assert [spec.split("@")[0] for spec in router.routes["bulk"]] == ["definet_bulk_v1", "definet_bulk_v1_seed1"]
    assert 0 < router.spread_bounds["bulk"] < 0.01 and "2D" not in router.spread_bounds
    for spec in router.routes["2D"] + specialists + router.routes["bulk"]:
        assert resolve_checkpoint(spec).stat().st_size < 25 * 2**20
        payload = read_checkpoint(spec)
        assert {"hidden", "layers", "radius", "max_neighbors"} <= set(payload["config"])
        assert payload["metadata"]["val_mae"]
    gaussian = read_checkpoint("definet_2d_v9")
    students = (("definet_2d_v12", "definet_2d_v11", 21568), ("definet_2d_v11", "definet_2d_v9", 14386),
                ("definet_2d_v10", "definet_2d_v9", 9594))  # trained on DFT and pseudo-labelled pairs
    for name, start, pairs in students:
        student = read_checkpoint(name)
        assert student["metadata"]["init"] == start and student["metadata"]["train_structures"] == pairs
        assert any("pseudo" in root for root in student["metadata"]["data"])
        assert student["metadata"]["train_config"]["loss"] == "component-l1"
        assert student["config"] == gaussian["config"] and student["domain"] == gaussian["domain"]
    assert {42, 16, 74, 34, 5, 7} <= set(gaussian["trained_elements"])  # Mo S W Se B N
    assert gaussian["domain"]["host_systems"] == ["B-N", "Ga-Se", "In-Se", "Mo-S", "P", "Se-W"]
    assert gaussian["domain"]["min_atoms"] == 0  # checkpoint-domain --any-size: small 2D supercells stay in domain
    assert gaussian["domain"]["max_defect_fraction"] == 0.125  # 24 of 192 sites: the densest training cells
    members = gaussian["metadata"]["average_of"]  # definet_2d_v8's weights and their component-l1 fine-tune
    assert [m["checkpoint"].split("@")[0] for m in members] == ["definet_2d_v8_soup", "v8_l1"]
    assert members[1]["init"] == "definet_2d_v8" and members[1]["train_structures"] == 18466  # high density 3x
    assert gaussian["config"]["radial_basis"] == "gaussian" and gaussian["config"]["num_rbf"] == 128
    assert not gaussian["config"].get("gaussian_reach")  # stored whole; prediction prunes (test_reference_model)
    assert gaussian["domain"] == read_checkpoint("definet_2d_v7")["domain"]
    two_d, hbn = read_checkpoint("definet_2d_v6"), read_checkpoint("definet_2d_v6_hbn")
    assert two_d["config"]["edge_displacement"] and two_d["config"]["max_neighbors"] == 50
    assert two_d["domain"] == gaussian["domain"]
    assert hbn["domain"]["host_systems"] == ["B-N"] and hbn["config"] == two_d["config"]  # definet_2d_v6's weights
    assert hbn["state_dict"]["layers.0.filter.weight"].equal(two_d["state_dict"]["layers.0.filter.weight"])
    dilute = read_checkpoint("definet_2d_dilute_v4")
    assert dilute["domain"]["host_systems"] == ["Mo-S", "Se-W"] and dilute["domain"]["min_atoms"] == 0
    assert dilute["domain"]["max_defect_fraction"] == pytest.approx(3 / 192)  # low density: at most 3 of 192 sites
    same_network = ModelConfig.from_dict(dilute["config"]) == ModelConfig.from_dict(two_d["config"])
    assert same_network  # the network and graphs of definet_2d_v6 (its config written before gaussian_reach existed)
    assert dilute["domain"] == read_checkpoint("definet_2d_dilute_v3")["domain"]
    bulk = read_checkpoint("definet_bulk_v1")
    assert bulk["domain"]["min_atoms"] >= 16 and "bulk" in bulk["domain"]["dimensionalities"]
    assert bulk["metadata"]["train_config"]["min_atoms"] == 16


DILUTE_V3, DILUTE_V4, HBN = ["definet_2d_dilute_v3"], ["definet_2d_dilute_v4"], ["definet_2d_v6_hbn"]
HBN_PAIR = ["definet_2d_v6_hbn", "definet_2d_seed1"]
PACKAGED_ROUTERS = {  # every packaged router by name: its 2D route, then its 2D specialists in the order tried
    "definet_v3": (["definet_2d_v3"], []), "definet_v4": (["definet_2d_v4"], []),
    "definet_v5": (["definet_2d_v5"], []),
    "definet_v6": (["definet_2d_v6"], [["definet_2d_dilute_v1"]]),
    "definet_v7": (["definet_2d_v6"], [["definet_2d_dilute_v2"]]), "definet_v8": (["definet_2d_v6"], [DILUTE_V3]),
    "definet_v9": (["definet_2d_v7"], [DILUTE_V3, HBN]), "definet_v10": (["definet_2d_v8"], [DILUTE_V3, HBN]),
    "definet_v11": (["definet_2d_v8"], [DILUTE_V4, HBN]), "definet_v12": (["definet_2d_v9"], [DILUTE_V4, HBN]),
    "definet_v13": (["definet_2d_v10"], [DILUTE_V4, HBN]),
    "definet_v14": (["definet_2d_v11"], [DILUTE_V4, HBN_PAIR]),
    "definet_v15": (["definet_2d_v12"], [DILUTE_V4, HBN_PAIR]),
    "definet_v12_ensemble": (["definet_2d_v9", "definet_2d_v6"], [DILUTE_V4, HBN_PAIR]),
    "definet_v15_ensemble": (["definet_2d_v9", "definet_2d_v6", "definet_2d_v12"], [DILUTE_V4, HBN_PAIR]),
}


def names(specs: list[str]) -> list[str]:
    """Packaged checkpoint names of pinned ids (``name@sha12``)."""
    return [spec.split("@")[0] for spec in specs]


def test_the_router_table_names_every_packaged_router():
    assert set(PACKAGED_ROUTERS) == {path.stem for path in CHECKPOINT_DIR.glob("definet_v*.pt")}


@pytest.mark.parametrize(("name", "route", "specialists"), [(n, *v) for n, v in PACKAGED_ROUTERS.items()])
def test_every_packaged_router_keeps_its_routes_and_the_bulk_ensemble(name, route, specialists):
    """Documents name the router that predicted them: each stays loadable and routes as it did when it shipped."""
    router = read_router(name)
    assert router.default == "2D" and names(router.routes["2D"]) == route
    assert [names(members) for members in router.specialists.get("2D", [])] == specialists
    assert names(router.routes["bulk"]) == ["definet_bulk_v1", "definet_bulk_v1_seed1"]
    assert router.spread_bounds == {"bulk": 0.003}
    pinned = [*router.routes["2D"], *router.routes["bulk"], *(m for ms in router.specialists.get("2D", []) for m in ms)]
    assert all(resolve_checkpoint(spec).is_file() for spec in pinned)  # each name@sha12 still the packaged content


def test_the_ensemble_router_pairs_the_default_with_models_of_other_lineages():
    """``definet_v12_ensemble``: the default's routes with a second, independently trained member where one helps
    on val (2D route, hBN specialist); the dilute specialist and the bulk ensemble as the default's."""
    from definet_core.checkpoint import serves_spreads

    default, ensemble = read_router("definet_v12"), read_router("definet_v12_ensemble")
    names = [[m.split("@")[0] for m in members] for members in ensemble.specialists["2D"]]
    assert names == [["definet_2d_dilute_v4"], ["definet_2d_v6_hbn", "definet_2d_seed1"]]
    assert [m.split("@")[0] for m in ensemble.routes["2D"]] == ["definet_2d_v9", "definet_2d_v6"]
    assert ensemble.routes["2D"][0] == default.routes["2D"][0] and ensemble.routes["bulk"] == default.routes["bulk"]
    assert ensemble.specialists["2D"][0] == default.specialists["2D"][0]
    assert read_router().specialists["2D"][1] == ensemble.specialists["2D"][1]  # the default took its hBN pair
    assert ensemble.spread_bounds == default.spread_bounds and serves_spreads("definet_v12_ensemble")


def test_the_three_network_ensemble_router_adds_both_lineages_to_the_default_route():
    """``definet_v15_ensemble``: the default with ``definet_2d_v9`` + ``definet_2d_v6`` beside its 2D route (the
    teacher of that route's last pseudo-labels, with the route in its predecessor's place); the rest as the
    default's."""
    from definet_core.checkpoint import serves_spreads

    default, ensemble = read_router(), read_router("definet_v15_ensemble")
    two_network = read_router("definet_v12_ensemble")
    assert [m.split("@")[0] for m in ensemble.routes["2D"]] == ["definet_2d_v9", "definet_2d_v6", "definet_2d_v12"]
    assert ensemble.routes["2D"][:2] == two_network.routes["2D"] and ensemble.routes["2D"][2:] == default.routes["2D"]
    assert ensemble.specialists == default.specialists and ensemble.routes["bulk"] == default.routes["bulk"]
    assert ensemble.spread_bounds == default.spread_bounds and serves_spreads("definet_v15_ensemble")


def test_shipped_checkpoint_beats_the_unrelaxed_cell_on_unseen_dilute_bulk_hosts():
    data = shared_data_or_skip().parent / "bulk_public"
    if not data.is_dir():
        pytest.skip("../shared/data/bulk_public is absent")
    rows = pair_rows(data, Predictor(device="cpu"), {})
    report = summary(host_table(rows), rows)["dilute_licensed"]
    assert report["hosts"] >= 20 and report["mean_host_ratio"] < 0.85


@pytest.mark.parametrize(("checkpoint", "material", "max_ratio", "served_by"), [
    (None, "high_density/MoS2", 0.6, "definet_2d_v12"), (None, "high_density/WSe2", 0.6, "definet_2d_v12"),
    (None, "low_density/WSe2", 0.3, "definet_2d_dilute_v4"), (None, "low_density/MoS2", 0.3, "definet_2d_dilute_v4"),
    (None, "high_density/hBN", 0.8, "definet_2d_v6_hbn"),
    ("definet_v9", "high_density/MoS2", 0.6, "definet_2d_v7"),
    ("definet_v11", "high_density/MoS2", 0.6, "definet_2d_v8"),
    ("definet_v12", "high_density/GaSe", 0.6, "definet_2d_v9"),
    ("definet_v13", "high_density/BP", 0.7, "definet_2d_v10"),
    ("definet_v14", "high_density/InSe", 0.6, "definet_2d_v11"),
    ("definet_v15_ensemble", "high_density/BP", 0.7, "definet_2d_v9"),
    ("definet_v12_ensemble", "high_density/GaSe", 0.6, "definet_2d_v9"),
    ("definet_v12_ensemble", "high_density/hBN", 0.8, "definet_2d_v6_hbn")])
def test_shipped_checkpoint_beats_the_unrelaxed_input_on_val(checkpoint, material, max_ratio, served_by):
    data = MaterialSet(shared_data_or_skip() / material)
    predictor = Predictor(checkpoint, device="cpu")
    host = read_structure(data.unit_cell_path)
    graphs = [load_pair(data, i, host, predictor.config.radius, predictor.config.max_neighbors)
              for i in data.split_ids("val")[:20]]
    assert {predictor.route(g).checkpoint.split("@")[0] for g in graphs} == {served_by}  # dilute: the specialist
    rows = [structure_errors(g, p) for g, p in zip(graphs, predictor.predict_graphs(graphs), strict=True)]
    mae, dummy = np.mean([r["mae"] for r in rows]), np.mean([r["dummy_mae"] for r in rows])
    assert mae < max_ratio * dummy
