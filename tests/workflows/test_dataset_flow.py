"""The dataset flow on real EMT relaxations and a real database: build, rebuild, grow, fail, export, read, FireWorks."""

from __future__ import annotations

import numpy as np
import yaml
from atomate2.vasp.jobs.core import RelaxMaker
from fireworks.core.rocket_launcher import rapidfire
from jobflow import Maker, run_locally
from pymatgen.core import Lattice, Structure

from definet_core.dataset import load_dataset
from launchpad.deploy import connect, submit, worker
from workflows.cli.main import main
from workflows.defects.recipes import parse_recipe
from workflows.flows.dataset import DatasetBuildMaker
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.storage.stores import DatasetStore, job_store

RECIPE = {"name": "cu-demo", "host": "Cu.cif", "supercell": [2, 2, 2], "vacancies": ["Cu"],
          "substitutions": {"Cu": ["Ni"]}, "defects_per_structure": [1, 2], "structures": 3, "seed": 0,
          "splits": {"train": 0.67, "val": 0.33, "test": 0.0}}


def write_recipe(folder, **changes) -> str:
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure().to(
        filename=str(folder / "Cu.cif"))
    path = folder / "cu.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, **changes}))
    return str(path)


def build(recipe: str, mongo_uri: str, database: str, *extra: str) -> int:
    return main(["dataset", "build", "--recipe", recipe, "--relaxer", "emt", "--device", "cpu", "--db-uri", mongo_uri,
                 "--database", database, *extra])


def test_build_rebuild_grow_export_and_read(tmp_path, mongo_uri, database_name, capsys, cache_dir):
    recipe = write_recipe(tmp_path)
    assert build(recipe, mongo_uri, database_name, "--structures", "2") == 0
    with DatasetStore(mongo_uri, database_name) as store:
        first = {d["structure_id"]: d for d in store.query()}
    assert len(first) == 2
    for doc in first.values():  # 7-8 atom cells are too small for the bulk model: --start auto relaxes them unrelaxed
        assert doc["recipe"] == "cu-demo" and doc["status"] == "complete" and doc["start"] == "unrelaxed"
        assert doc["start_policy"] == "auto" and doc["in_domain"] is False
        assert any("smaller than every training cell" in reason for reason in doc["domain_reasons"])
        assert doc["checkpoint"] is None and doc["start_structure"] is None
        assert doc["relaxer"] == "emt" and doc["relaxer_settings"]["force_field"] == "EMT"
        assert doc["ionic_steps"] >= 1 and doc["converged"] is True and doc["energy"] is not None
        assert len(doc["forces"]) == doc["num_atoms"] and doc["max_force"] < 0.05
        assert doc["relaxed_structure"] and doc["unrelaxed_structure"]
        assert doc["recipe_hash"] and doc["definet_version"] and doc["created_at"]

    assert build(recipe, mongo_uri, database_name) == 0  # the recipe's 3: only the third is relaxed
    with DatasetStore(mongo_uri, database_name) as store:
        docs = {d["structure_id"]: d for d in store.query()}
    assert len(docs) == 3 and all(docs[i]["created_at"] == first[i]["created_at"] for i in first)
    assert build(recipe, mongo_uri, database_name) == 0  # again: nothing new
    with DatasetStore(mongo_uri, database_name) as store:
        assert store.count() == 3
        assert {d["structure_id"]: d["created_at"] for d in store.query()} == {
            i: d["created_at"] for i, d in docs.items()}

    capsys.readouterr()
    assert main(["dataset", "status", "--db-uri", mongo_uri, "--database", database_name,
                 "--json", str(tmp_path / "status.json")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("cu-demo"))
    assert line.split()[:7] == ["cu-demo", "emt", "unrelaxed", "3", "3", "3", "0"]

    out = tmp_path / "export"  # by the name it was built under, as status takes it
    assert main(["dataset", "export", "--recipe", "cu-demo", "-o", str(out), "--db-uri", mongo_uri,
                 "--database", database_name]) == 0
    assert "exported 3 structures" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "cu-demo").iterdir()) == ["CIF", "Cu.cif", "test.csv", "train.csv", "val.csv"]
    train = load_dataset([out], "train", radius=5.0, max_neighbors=12, progress=False)
    val = load_dataset([out], "val", radius=5.0, max_neighbors=12, progress=False)
    assert len(train["cu-demo"]) == 2 and len(val["cu-demo"]) == 1
    graph = train["cu-demo"][0]
    assert graph.atoms_id.startswith("cu-demo-") and graph.y.shape == graph.pos.shape


def test_the_default_start_on_an_unknown_host_costs_no_more_steps_than_the_unrelaxed_cell(
        tmp_path, mongo_uri, database_name):
    """--start auto relaxes an out-of-domain host from the unrelaxed cell; forcing the prediction costs more."""
    recipe = write_recipe(tmp_path, supercell=[3, 3, 3])
    two_d = ("--checkpoint", "definet_2d_v2")  # the 2D model alone: bulk Cu is a host it never saw
    assert build(recipe, mongo_uri, database_name, *two_d, "--start", "prediction") == 0
    assert build(recipe, mongo_uri, database_name, *two_d) == 0  # auto: the unrelaxed cells, each structure once more
    assert build(recipe, mongo_uri, database_name, *two_d, "--start", "unrelaxed") == 0  # the same relaxations
    with DatasetStore(mongo_uri, database_name) as store:
        docs = store.query()
    assert len(docs) == 6
    steps = {start: [d["ionic_steps"] for d in docs if d["start"] == start] for start in ("prediction", "unrelaxed")}
    assert len(steps["prediction"]) == len(steps["unrelaxed"]) == 3
    assert np.mean(steps["unrelaxed"]) < np.mean(steps["prediction"])
    assert {d["start_policy"] for d in docs if d["start"] == "unrelaxed"} == {"auto"}


def test_select_relaxes_the_structures_the_ensemble_disagrees_on_most(tmp_path, mongo_uri, database_name, capsys,
                                                                    tiny_checkpoint):
    """``--select N`` relaxes the N of the pool with the largest spread; a larger N adds the next ones only."""
    from definet_core.predict import Predictor
    from workflows.defects.recipes import iter_generate, load_recipe
    from workflows.flows.dataset import recipe_host

    recipe = write_recipe(tmp_path, supercell=[3, 3, 3], defects_per_structure=[2, 3], structures=6)
    assert build(recipe, mongo_uri, database_name, "--checkpoint", "definet_2d_v2", "--select", "2") == 2  # no spread
    assert "--select 2: choosing by spread needs an ensemble" in capsys.readouterr().err
    # the default routes this metal host to its bulk ensemble, whose spread selects
    assert build(recipe, mongo_uri, f"{database_name}_router", "--select", "2") == 0
    with DatasetStore(mongo_uri, f"{database_name}_router") as store:
        assert [d["selection"] for d in store.query()] == ["spread", "spread"]
    # the selection is what is tested: the 2D model and a tiny companion, both started from their predictions
    companion = ("--checkpoint", "definet_2d_v2", "--companion", str(tiny_checkpoint), "--start", "prediction")
    assert build(recipe, mongo_uri, database_name, *companion, "--select", "7") == 2
    assert "must be between 1 and the 6 generated structures" in capsys.readouterr().err

    loaded = load_recipe(recipe)
    cases = list(iter_generate(loaded, *recipe_host(loaded)))
    predicted = Predictor("definet_2d_v2", device="cpu", companion=str(tiny_checkpoint)).predictions(
        [c.structure for c in cases], [c.pristine for c in cases], np.eye(3, dtype=int))
    spreads = {c.case_id: p.spread for c, p in zip(cases, predicted, strict=True)}
    assert len(set(np.round(list(spreads.values()), 6))) > 3  # the selection has something to choose by

    for select in (2, 3):
        assert build(recipe, mongo_uri, database_name, *companion, "--select", str(select)) == 0
        with DatasetStore(mongo_uri, database_name) as store:
            docs = {d["structure_id"]: d for d in store.query()}
        assert len(docs) == select
        chosen = [spreads[i] for i in docs]
        others = [spreads[i] for i in spreads if i not in docs]
        assert min(chosen) >= max(others) - 1e-6  # the most uncertain of the pool
        assert all(d["selection"] == "spread" and np.isclose(d["prediction_spread"], spreads[i], atol=1e-6)
                   for i, d in docs.items())
        assert "+tiny@" in next(iter(docs.values()))["checkpoint"]
        if select == 2:
            first = {i: d["created_at"] for i, d in docs.items()}
    assert all(docs[i]["created_at"] == created for i, created in first.items())  # kept, only one added


def test_failed_relaxation_is_stored_retried_and_left_out_of_the_export(tmp_path, mongo_uri, database_name, capsys):
    # EMT has no Zn: that relaxation raises inside the real atomate2 job
    recipe = parse_recipe({**RECIPE, "substitutions": {"Cu": ["Zn"]}, "vacancies": [],
                           "defects_per_structure": [1, 1], "structures": 1}, "test")
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    maker = DatasetBuildMaker(relaxer="emt", predict_maker=DefiNetPredictMaker(device="cpu"))
    for _ in range(2):
        run_locally(maker.make(recipe, ("Cu", host)), store=job_store(mongo_uri, database_name),
                    ensure_success=False, log=False, root_dir=tmp_path, create_folders=True)
    with DatasetStore(mongo_uri, database_name) as store:
        (doc,) = store.query()
    assert doc["status"] == "failed" and doc["relaxed_structure"] is None
    assert doc["errors"] == ["relaxation from the unrelaxed cell failed: its job gave no output (the job log or the "
                             "FireWorks launch holds the traceback)"]
    from workflows.reports.dataset import export_dataset

    counts = export_dataset(recipe.model_copy(update={"host": write_recipe(tmp_path) and str(tmp_path / "Cu.cif")}),
                            [doc], tmp_path / "out")
    assert counts == {"exported": 0, "unconverged": 0, "failed": 1}


def test_dataset_flow_on_fireworks_with_cpu_and_gpu_workers(tmp_path, mongo_uri, database_name, monkeypatch):
    recipe = parse_recipe({**RECIPE, "structures": 2}, "test")
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    flow = DatasetBuildMaker(relaxer="emt", predict_maker=DefiNetPredictMaker(device="cpu")).make(recipe, ("Cu", host))
    launchpad = connect(mongo_uri, name=database_name)
    submit(flow, launchpad, store=job_store(mongo_uri, database_name))
    monkeypatch.chdir(tmp_path)
    for kind in ("cpu", "gpu", "cpu"):  # generate; predict; fan-out, relaxations and record
        rapidfire(launchpad, worker(kind), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    fireworks = [launchpad.get_fw_by_id(i) for i in launchpad.get_fw_ids()]
    assert all(fw.state == "COMPLETED" for fw in fireworks), [(fw.name, fw.state) for fw in fireworks]
    assert [fw.name for fw in fireworks if fw.spec.get("_category") == "gpu"] == ["definet predict"]
    assert len(fireworks) >= 6 and all(fw.spec.get("_category") == "cpu" for fw in fireworks
                                       if fw.name != "definet predict")
    with DatasetStore(mongo_uri, database_name) as store:
        assert store.count() == 2


def test_dataset_submit_defaults_to_vasp(tmp_path, mongo_uri, database_name, capsys):
    assert main(["dataset", "submit", "--recipe", write_recipe(tmp_path), "--structures", "1", "--db-uri", mongo_uri,
                 "--database", database_name]) == 0
    assert "submitted 3 Fireworks" in capsys.readouterr().out
    launchpad = connect(mongo_uri, name=database_name)
    fanout = next(launchpad.get_fw_by_id(i) for i in launchpad.get_fw_ids() if
                  launchpad.get_fw_by_id(i).name == "relax and record dataset")
    (maker,) = [arg for arg in fanout.tasks[0]["job"].function_args if isinstance(arg, Maker)]
    assert isinstance(maker, RelaxMaker)  # atomate2's VASP relaxation, with the defect settings
    incar = maker.input_set_generator.user_incar_settings
    assert incar["ISIF"] == 2 and incar["IBRION"] == 2 and incar["GGA"] == "PE"


def test_an_interrupted_build_started_again_stores_every_structure_once(tmp_path, mongo_uri, database_name):
    """SIGKILL the build between relaxations, run it again: every structure ends up stored exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pymongo import MongoClient

    recipe = write_recipe(tmp_path, supercell=[3, 3, 3], structures=5)
    command = [sys.executable, "-m", "workflows.cli", "dataset", "build", "--recipe", recipe, "--relaxer", "emt",
               "--device", "cpu", "--db-uri", mongo_uri, "--database", database_name]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relaxed = 0
    with MongoClient(mongo_uri) as client:
        jobs, dataset = client[database_name]["jobs"], client[database_name]["dataset"]
        try:
            deadline = time.monotonic() + 240
            while relaxed == 0 and process.poll() is None and time.monotonic() < deadline:
                relaxed = jobs.count_documents({"name": {"$regex": "relax"}})
                time.sleep(0.05)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=30)
        assert relaxed >= 1 and dataset.count_documents({}) == 0  # killed between relaxations, nothing recorded
        interrupted = client[database_name]["defect_cases"].distinct("set_id")
        assert len(interrupted) == 1
    assert build(recipe, mongo_uri, database_name) == 0
    with DatasetStore(mongo_uri, database_name) as store:
        docs = store.query()
    assert len(docs) == 5 and len({d["structure_id"] for d in docs}) == 5
    assert all(d["status"] == "complete" for d in docs)
    with MongoClient(mongo_uri) as client:  # the completed build discarded its cases; the killed one's remain
        assert client[database_name]["defect_cases"].distinct("set_id") == interrupted
