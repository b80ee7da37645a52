"""Routing checkpoints: one model per host kind behind one checkpoint name (``checkpoint.Router``)."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from definet_core.applicability import Domain
from definet_core.checkpoint import load_model, read_checkpoint, read_router, save_checkpoint, save_router
from definet_core.cli import add_core_commands, run_handler
from definet_core.dataset import load_dataset
from definet_core.errors import DefiNetInputError
from definet_core.predict import Predictor, checkpoint_id
from tests.conftest import random_defect_cell, write_dataset


def copper_vacancy() -> tuple[Structure, Structure]:
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    cell = host.copy()
    cell.make_supercell([3, 3, 3])
    cell.remove_sites([0])
    return cell, host


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """2D hosts to definet_2d_v2, bulk hosts to definet_2d_seed1 (another model, so the route shows)."""
    path = tmp_path_factory.mktemp("router") / "routed.pt"
    save_router(path, {"2D": ["definet_2d_v2"], "bulk": ["definet_2d_seed1"]}, default="2D")
    return path


@pytest.mark.parametrize("two_d", ["definet_2d_v2", "definet_2d_v4"])  # the bulk route's graphs, then 6 A / 50
def test_each_host_kind_is_predicted_and_judged_by_its_route(two_d, tmp_path):
    path = tmp_path / "routed.pt"
    save_router(path, {"2D": [two_d], "bulk": ["definet_2d_seed1"]}, default="2D")
    slab, slab_host = random_defect_cell(np.random.default_rng(1), size=6, n_vacancies=2, c=20.0)
    bulk, bulk_host = copper_vacancy()  # the 24-neighbour cut falls inside a shell: float32 rebuilds would move it
    with Predictor(path, device="cpu", graph_workers=1) as in_workers:
        routed = [*Predictor(path, device="cpu").predictions([slab, bulk], [slab_host, bulk_host]),
                  *in_workers.predictions([slab, bulk], [slab_host, bulk_host])]
    (own_slab,) = Predictor(two_d, device="cpu").predictions([slab], slab_host)
    (own_bulk,) = Predictor("definet_2d_seed1", device="cpu").predictions([bulk], bulk_host)
    for slab_prediction, bulk_prediction in (routed[:2], routed[2:]):
        assert np.array_equal(slab_prediction.structure.cart_coords, own_slab.structure.cart_coords)
        assert np.array_equal(bulk_prediction.structure.cart_coords, own_bulk.structure.cart_coords)
        assert slab_prediction.verdict == own_slab.verdict and bulk_prediction.verdict == own_bulk.verdict
    assert not routed[1].verdict.in_domain  # definet_2d_seed1's domain knows no bulk host


def write_copper_set(root: Path, pairs: int = 2) -> None:
    """A bulk material directory (Cu vacancies, 3x3x3 fcc) in the dataset layout, the relaxed cell the unrelaxed."""
    material = root / "Cu"
    (material / "CIF").mkdir(parents=True)
    cell, host = copper_vacancy()
    host.to(filename=str(material / "Cu.cif"))
    for k in range(pairs):
        for state in ("unrelaxed", "relaxed"):
            cell.to(filename=str(material / "CIF" / f"Cu_{k}_{state}.cif"))
    (material / "val.csv").write_text("atoms_id\n" + "\n".join(f"Cu_{k}" for k in range(pairs)) + "\n")


def test_a_router_reads_each_material_at_its_routes_graph_settings(tmp_path):
    write_dataset(tmp_path / "data", {"val": 2})
    write_copper_set(tmp_path / "data")
    path = tmp_path / "routed.pt"
    save_router(path, {"2D": ["definet_2d_v4"], "bulk": ["definet_2d_seed1"]}, default="2D")
    routed = Predictor(path, device="cpu")
    assert routed.settings_by_kind == {"bulk": (5.0, 24)} and routed.graph_settings("2D") == (6.0, 50)
    sets = routed.dataset([tmp_path / "data"], "val", cache_dir=tmp_path / "cache", progress=False)
    for key, settings in (("MoS2", (6.0, 50)), ("Cu", (5.0, 24))):
        direct = load_dataset([tmp_path / "data"], "val", *settings, tmp_path / "direct", progress=False)[key]
        assert all(torch.equal(a.edge_index, b.edge_index) for a, b in zip(sets[key], direct, strict=True)), key
    assert int(torch.bincount(sets["Cu"][0].edge_index[1]).max()) == 24


def test_a_router_pins_packaged_routes_by_content_and_is_named_by_its_own(router):
    assert read_router(router).routes == {"2D": [checkpoint_id("definet_2d_v2")],
                                          "bulk": [checkpoint_id("definet_2d_seed1")]}
    assert Predictor(router, device="cpu").checkpoint == checkpoint_id(router)
    assert read_router("definet_2d_v2") is None
    with pytest.raises(DefiNetInputError, match=r"routed: routes host kinds to checkpoints \(2D: definet_2d_v2@"):
        read_checkpoint(router)  # training, fine-tuning and checkpoint-domain need one set of weights


def test_an_ensemble_route_serves_its_mean_and_refuses_what_its_members_disagree_on(tmp_path):
    path = tmp_path / "ensemble.pt"
    save_router(path, {"2D": ["definet_2d_v2", "definet_2d_seed1"]}, default="2D", spread_bounds={"2D": 1e-4})
    cell, host = random_defect_cell(np.random.default_rng(3), size=6, n_vacancies=2, c=20.0)
    (routed,) = Predictor(path, device="cpu").predictions([cell], host)
    (pair,) = Predictor("definet_2d_v2", device="cpu", companion="definet_2d_seed1").predictions([cell], host)
    assert np.allclose(routed.structure.cart_coords, pair.structure.cart_coords) and routed.spread == pair.spread
    assert pair.verdict.in_domain and pair.spread > 1e-4
    assert not routed.verdict.in_domain and routed.verdict.reasons[0].startswith("ensemble spread")
    assert routed.verdict.in_domain_before_spread and not pair.verdict.spread_exceeded
    with pytest.raises(DefiNetInputError, match=r"--spread-bound bulk=0\.1: needs an ensemble route for bulk"):
        save_router(path, {"2D": ["definet_2d_v2"], "bulk": ["definet_2d"]}, "2D", spread_bounds={"bulk": 0.1})


def test_ensemble_members_must_route_alike(router):
    with pytest.raises(DefiNetInputError, match="--companion definet_2d: routes host kinds none, the checkpoint "
                                                "2D, bulk; ensemble members must route alike"):
        Predictor(router, device="cpu", companion="definet_2d")
    (pair,) = Predictor(router, device="cpu", companion=router).predictions(*[[s] for s in copper_vacancy()])
    assert pair.spread == 0.0


def definet(argv: list[str]) -> int:
    """Exit status of the ``definet`` command line run on ``argv`` in this process."""
    parser = argparse.ArgumentParser(prog="definet")
    add_core_commands(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


def test_the_router_command_writes_one_and_refuses_bad_routes(tmp_path, capsys):
    out = tmp_path / "mine.pt"
    assert definet(["router", "--route", "2D=definet_2d_v2", "--route", "bulk=definet_2d,definet_2d_seed1",
                    "--spread-bound", "bulk=0.004", "--default", "2D", "-o", str(out)]) == 0
    written = read_router(out)
    assert written.default == "2D" and len(written.routes["bulk"]) == 2 and written.spread_bounds == {"bulk": 0.004}
    assert "definet_2d@" in capsys.readouterr().out
    assert definet(["router", "--route", "2D=definet_2d_v4", "--specialist", "2D=definet_2d_v5", "--default", "2D",
                    "-o", str(out)]) == 0
    assert read_router(out).specialists == {"2D": [[checkpoint_id("definet_2d_v5")]]}
    assert '"specialists": {"2D": [["definet_2d_v5@' in capsys.readouterr().out
    assert definet(["router", "--route", "2D=definet_2d_v4", "--specialist", "2D=definet_2d_v5,definet_2d_seed1",
                    "--default", "2D", "-o", str(out)]) == 0
    assert read_router(out).specialists == {"2D": [[checkpoint_id("definet_2d_v5"), checkpoint_id("definet_2d_seed1")]]}
    capsys.readouterr()
    assert definet(["router", "--route", "2D=definet_2d_v2", "--spread-bound", "2D=wide", "--default", "2D",
                    "-o", str(tmp_path / "y.pt")]) == 2
    assert "--spread-bound 2D=wide: expected KIND=A" in capsys.readouterr().err
    assert definet(["router", "--route", "slab=definet_2d_v2", "--default", "slab", "-o", str(out)]) == 2
    assert "--route slab=definet_2d_v2: expected KIND=CHECKPOINT" in capsys.readouterr().err
    assert definet(["router", "--route", "2D=definet_2d_v2", "--default", "bulk", "-o", str(out)]) == 2
    assert definet(["router", "--route", f"2D={out}", "--default", "2D", "-o", str(tmp_path / "x.pt")]) == 2
    assert "a route must name a checkpoint of weights" in capsys.readouterr().err
    assert torch.load(out, weights_only=False)["format"] == "definet-router"


def test_a_router_derived_from_another_replaces_only_what_it_names(tmp_path, capsys):
    """``--from``: definet_v15 is definet_v15_ensemble with one 2D network in place of the three."""
    out = tmp_path / "derived.pt"
    assert definet(["router", "--from", "definet_v15_ensemble", "--route", "2D=definet_2d_v12", "-o", str(out)]) == 0
    derived, shipped = read_router(out), read_router("definet_v15")
    assert (derived.routes, derived.specialists, derived.spread_bounds, derived.default) == (
        shipped.routes, shipped.specialists, shipped.spread_bounds, shipped.default)
    assert derived.metadata["derived_from"] == checkpoint_id("definet_v15_ensemble")
    assert definet(["router", "--from", str(out), "--route", "bulk=definet_bulk_v1",
                    "--specialist", "2D=definet_2d_dilute_v4", "-o", str(out)]) == 0
    single = read_router(out)
    assert single.spread_bounds == {}  # nothing left to bound: the bulk route is one network now
    assert single.specialists == {"2D": [[checkpoint_id("definet_2d_dilute_v4")]]}
    assert single.routes["2D"] == shipped.routes["2D"]
    capsys.readouterr()
    assert definet(["router", "--from", "definet_2d_v12", "--route", "2D=definet_2d_v9", "-o", str(out)]) == 2
    assert "--from definet_2d_v12: a checkpoint of weights, not a router" in capsys.readouterr().err
    assert definet(["router", "--route", "2D=definet_2d_v9", "-o", str(out)]) == 2
    assert "give --route and --default, or --from" in capsys.readouterr().err
    assert read_router(out).routes == single.routes  # refused commands leave the written router alone


@pytest.fixture(scope="module")
def dilute_specialist(tmp_path_factory):
    """definet_2d_seed1 with its domain narrowed to cells of at most 2 % defect sites: a dilute-defect specialist."""
    model, payload = load_model("definet_2d_seed1")
    path = tmp_path_factory.mktemp("specialist") / "dilute.pt"
    domain = Domain.from_dict({**payload["domain"], "max_defect_fraction": 0.02})
    save_checkpoint(path, model, payload["trained_elements"], domain=domain.to_dict())
    return path


def test_a_specialist_serves_what_its_domain_accepts_and_the_route_the_rest(dilute_specialist, tmp_path):
    path = tmp_path / "routed.pt"
    save_router(path, {"2D": ["definet_2d_v2"]}, default="2D", specialists={"2D": [[str(dilute_specialist)]]})
    assert read_router(path).specialists == {"2D": [[str(dilute_specialist.resolve())]]}
    rng = np.random.default_rng(2)
    dilute, host = random_defect_cell(rng, size=6, n_vacancies=1, n_substitutions=1, c=20.0)  # 2 of 108 sites
    dense, _ = random_defect_cell(rng, size=6, n_vacancies=2, n_substitutions=1, c=20.0)  # 3 of 108
    routed = Predictor(path, device="cpu").predictions([dilute, dense], host)
    (by_specialist,) = Predictor(dilute_specialist, device="cpu").predictions([dilute], host)
    (by_route,) = Predictor("definet_2d_v2", device="cpu").predictions([dense], host)
    assert np.array_equal(routed[0].structure.cart_coords, by_specialist.structure.cart_coords)
    assert np.array_equal(routed[1].structure.cart_coords, by_route.structure.cart_coords)
    (not_specialist,) = Predictor("definet_2d_v2", device="cpu").predictions([dilute], host)
    assert not np.allclose(routed[0].structure.cart_coords, not_specialist.structure.cart_coords)
    assert routed[0].verdict == by_specialist.verdict and routed[1].verdict == by_route.verdict


def test_a_specialist_needs_a_route_a_domain_and_the_routes_graphs(dilute_specialist, tmp_path, tiny_checkpoint):
    out = tmp_path / "x.pt"
    with pytest.raises(DefiNetInputError, match=r"--specialist bulk=.*: no --route for bulk to fall back on$"):
        save_router(out, {"2D": ["definet_2d_v2"]}, "2D", specialists={"bulk": [[str(dilute_specialist)]]})
    with pytest.raises(DefiNetInputError, match=r"tiny\.pt: stores no applicability domain, which decides"):
        save_router(out, {"2D": ["definet_2d_v2"]}, "2D", specialists={"2D": [[str(tiny_checkpoint)]]})
    with pytest.raises(DefiNetInputError, match=r"reads 6\.0 A / 50 neighbours graphs, its route definet_2d_v2 "
                                                r"5\.0 A / 24; they must read the same$"):
        save_router(out, {"2D": ["definet_2d_v2"]}, "2D", specialists={"2D": [["definet_2d_v4"]]})
    with pytest.raises(DefiNetInputError, match="a route must name a checkpoint of weights, not another router"):
        save_router(out, {"2D": ["definet_2d_v2"]}, "2D", specialists={"2D": [[str(dilute_specialist), "definet_v3"]]})
    assert not out.exists()


def test_an_ensemble_specialist_serves_its_mean_and_spread(dilute_specialist, tmp_path):
    """A specialist of several checkpoints predicts as ``--companion`` would, and gives the spread: an error
    estimate (and ``--select``) for the structures it serves; the route's structures have none."""
    from definet_core.checkpoint import serves_spreads

    path, single = tmp_path / "routed.pt", tmp_path / "single.pt"
    save_router(path, {"2D": ["definet_2d_v2"]}, default="2D",
                specialists={"2D": [[str(dilute_specialist), "definet_2d_v4"]]})  # the partner reads 6 A / 50
    save_router(single, {"2D": ["definet_2d_v2"]}, default="2D", specialists={"2D": [[str(dilute_specialist)]]})
    assert serves_spreads(path) and not serves_spreads(single)
    rng = np.random.default_rng(2)
    dilute, host = random_defect_cell(rng, size=6, n_vacancies=1, n_substitutions=1, c=20.0)
    dense, _ = random_defect_cell(rng, size=6, n_vacancies=2, n_substitutions=1, c=20.0)
    routed = Predictor(path, device="cpu").predictions([dilute, dense], host)
    (pair,) = Predictor(dilute_specialist, device="cpu", companion="definet_2d_v4").predictions([dilute], host)
    assert np.allclose(routed[0].structure.cart_coords, pair.structure.cart_coords)
    assert routed[0].spread == pytest.approx(pair.spread) and routed[0].spread > 0
    assert routed[1].spread is None


def test_routers_written_before_ensemble_specialists_still_load():
    """``definet_v12`` (router format version 3) names each specialist by one id, read as a one-member list."""
    from definet_core.checkpoint import resolve_checkpoint

    payload = torch.load(resolve_checkpoint("definet_v12"), weights_only=False)
    assert payload["version"] == 3 and all(isinstance(s, str) for s in payload["specialists"]["2D"])
    assert [len(members) for members in read_router("definet_v12").specialists["2D"]] == [1, 1]
