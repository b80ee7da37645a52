"""The validation flow end to end on real atomate2 relaxations, a real database and real FireWorks."""

from __future__ import annotations

import numpy as np
import pytest
from fireworks.core.rocket_launcher import rapidfire
from jobflow import Flow, run_locally
from jobflow.managers.fireworks import flow_to_workflow
from pymatgen.core import Lattice, Structure

from launchpad.deploy import connect, submit, worker
from workflows.cli.run import run_validation
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.flows.validation import DefectValidationMaker
from workflows.hosts import resolve_host
from workflows.jobs.enumerate import enumeration_job
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.storage.cases import read_case_ids, read_predictions
from workflows.storage.stores import ValidationStore, job_store

CU_SETTINGS = EnumerationSettings(mode="single", supercell_matrix=[[3, 0, 0], [0, 3, 0], [0, 0, 3]],
                                  substitutions={"Cu": ["Ni"]})


@pytest.fixture()
def copper_file(tmp_path):
    path = tmp_path / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure().to(
        filename=str(path))
    return str(path)


def test_flow_end_to_end_with_emt_records_complete_documents_once(copper_file, mongo_uri, database_name):
    store = {"uri": mongo_uri, "database": database_name}
    docs = run_validation([copper_file], CU_SETTINGS, "emt", store, device="cpu", start="prediction")
    assert sorted(d["defect_name"] for d in docs) == ["Ni_Cu", "v_Cu"]
    for doc in docs:
        assert doc["start"] == "prediction" and doc["in_domain"] is (not doc["domain_reasons"])  # forced start
        assert not any("bulk host" in r or "never" in r for r in doc["domain_reasons"])  # the bulk route knows Cu
        assert doc["host_id"] == "Cu" and doc["relaxer"] == "emt" and doc["checkpoint"].startswith("definet_v15@")
        assert doc["steps_from_prediction"] >= 1 and doc["steps_from_unrelaxed"] >= 1
        assert doc["energy_from_prediction"] is not None and doc["energy_from_unrelaxed"] is not None
        assert doc["same_minimum"] is not None and doc["max_final_displacement"] is not None
        assert doc["prediction_mae"] is not None and doc["unrelaxed_mae"] is not None
        assert doc["relaxer_settings"]["relax_cell"] is False
        assert doc["relaxer_settings"]["force_field"] == "EMT"  # the potential that ran, not "MLFF.Forcefield"
        assert doc["converged_from_prediction"] is True and doc["converged_from_unrelaxed"] is True
        assert doc["num_atoms"] == (26 if doc["defect_name"] == "v_Cu" else 27)
    vacancy = next(d for d in docs if d["defect_name"] == "v_Cu")
    assert vacancy["steps_from_unrelaxed"] > 2  # neighbours of a vacancy in Cu do move under EMT
    again = run_validation([copper_file], CU_SETTINGS, "emt", store, device="cpu", start="prediction")
    assert len(again) == 2
    with ValidationStore(mongo_uri, database_name) as validation:
        assert validation.count() == 2
    previous = run_validation([copper_file], CU_SETTINGS, "emt", store, checkpoint="definet_v10", device="cpu",
                              start="prediction")  # another checkpoint: its own documents, not the default's too
    assert len(previous) == 2 and all(d["checkpoint"].startswith("definet_v10@") for d in previous)
    with ValidationStore(mongo_uri, database_name) as validation:
        assert validation.count() == 4


def test_auto_start_relaxes_out_of_domain_cases_once_from_the_unrelaxed_cell(copper_file, mongo_uri, database_name):
    from workflows.reports.validation import summarize

    docs = run_validation([copper_file], CU_SETTINGS, "emt", {"uri": mongo_uri, "database": database_name},
                          checkpoint="definet_2d_v2", device="cpu")  # the 2D model alone knows no bulk host
    assert len(docs) == 2
    for doc in docs:
        assert doc["start"] == "unrelaxed" and doc["start_policy"] == "auto" and doc["in_domain"] is False
        assert any("Cu" in reason for reason in doc["domain_reasons"])
        assert any("bulk host" in reason for reason in doc["domain_reasons"])
        assert doc["steps_from_prediction"] is None and doc["steps_from_unrelaxed"] >= 1
    assert summarize(docs)[0]["n_out_of_domain"] == 2


def test_silicon_from_materials_project_is_judged_by_the_bulk_ensemble(mongo_uri, database_name):
    """mp-149's vacancy reaches the default's bulk route: its elements, size and kind are in the domain, and only
    the two bulk models' disagreement (3.6 mA, above the 3 mA bound calibrated on the bulk val hosts) keeps
    --start auto on the unrelaxed cell."""
    settings = EnumerationSettings(mode="single", substitutions={})  # the vacancy, in the default supercell
    docs = run_validation(["mp-149"], settings, "chgnet", {"uri": mongo_uri, "database": database_name},
                          device="cpu", comparison=False)
    assert [d["defect_name"] for d in docs] == ["v_Si"] and docs[0]["num_atoms"] >= 17
    assert docs[0]["checkpoint"].startswith("definet_v15@") and docs[0]["prediction_spread"] > 0
    assert [r.split(" (")[0][:15] for r in docs[0]["domain_reasons"]] == ["ensemble spread"]
    assert docs[0]["in_domain"] is False and docs[0]["start"] == "unrelaxed"


def test_chgnet_relaxes_a_small_mos2_case(mongo_uri, database_name, tiny_checkpoint):
    settings = EnumerationSettings(mode="dense", supercell_matrix=[[3, 0, 0], [0, 3, 0], [0, 0, 1]],
                                   dense_vacancies={"S": 1}, n_configs=1)
    docs = run_validation(["MoS2-1L"], settings, "chgnet", {"uri": mongo_uri, "database": database_name},
                          checkpoint="definet_2d_v2", device="cpu", comparison=False,
                          companions=[str(tiny_checkpoint)])
    assert len(docs) == 1 and docs[0]["prediction_spread"] > 0
    assert docs[0]["in_domain"] is True and docs[0]["start"] == "prediction" and docs[0]["domain_reasons"] == []
    assert docs[0]["steps_from_prediction"] >= 1 and docs[0]["steps_from_unrelaxed"] is None
    assert docs[0]["mae_reference"] == "prediction"
    members = docs[0]["checkpoint"].split("+")  # an ensemble's documents name all its members
    assert len(members) == 2 and members[0].startswith("definet_2d_v2@") and members[1].startswith("tiny@")


def test_the_prediction_job_stores_the_same_predictions_with_graph_workers(mongo_uri, database_name, tmp_path):
    settings = EnumerationSettings(mode="dense", supercell_matrix=[[4, 0, 0], [0, 4, 0], [0, 0, 1]],
                                   dense_vacancies={"S": 2}, n_configs=5)
    location, stored = (mongo_uri, database_name), []
    for workers in ("0", "2"):
        cases = enumeration_job([resolve_host("MoS2-1L")], settings)
        predict = DefiNetPredictMaker(device="cpu", batch_size=2, graph_workers=workers).make(cases.output)
        responses = run_locally(Flow([cases, predict]), store=job_store(*location), ensure_success=True, log=False,
                                root_dir=tmp_path, create_folders=True)
        case_set, output = responses[cases.uuid][1].output, responses[predict.uuid][1].output
        ids = read_case_ids(location, case_set)
        stored.append(read_predictions(location, output.prediction_id, ids))
    serial, parallel = stored
    assert len(serial) == 5 and serial.keys() == parallel.keys()
    for case_id, prediction in serial.items():
        assert np.allclose(prediction.structure.cart_coords, parallel[case_id].structure.cart_coords, atol=1e-6)
        assert prediction.in_domain == parallel[case_id].in_domain


def test_only_the_prediction_firework_is_gpu_even_for_jobs_created_at_run_time(
        copper_file, mongo_uri, database_name, tmp_path, monkeypatch):
    from workflows.hosts import resolve_host

    maker = DefectValidationMaker(relaxer="emt", enumeration=CU_SETTINGS,
                                  predict_maker=DefiNetPredictMaker(device="cpu"), comparison=False)
    flow = maker.make([resolve_host(copper_file)])
    static = flow_to_workflow(flow)
    categories = {fw.name: fw.spec.get("_category") for fw in static.fws}
    assert categories == {"enumerate defects": "cpu", "definet predict": "gpu", "relax and record": "cpu"}

    launchpad = connect(mongo_uri, name=database_name)
    submit(flow, launchpad, store=job_store(mongo_uri, database_name))
    monkeypatch.chdir(tmp_path)
    for kind in ("cpu", "gpu", "cpu"):  # enumerate; predict; fan-out, relaxations and record
        rapidfire(launchpad, worker(kind), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    fireworks = [launchpad.get_fw_by_id(i) for i in launchpad.get_fw_ids()]
    assert all(fw.state == "COMPLETED" for fw in fireworks), [(fw.name, fw.state) for fw in fireworks]
    gpu = [fw.name for fw in fireworks if fw.spec.get("_category") == "gpu"]
    assert gpu == ["definet predict"]
    assert len(fireworks) >= 6  # 3 static + 2 relaxations + record created at run time
    assert all(fw.spec.get("_category") == "cpu" for fw in fireworks if fw.name != "definet predict")
    with ValidationStore(mongo_uri, database_name) as validation:
        assert validation.count() == 2


def test_enumeration_error_stops_before_any_job(mongo_uri, database_name):
    from definet_core.errors import DefiNetInputError

    settings = EnumerationSettings(mode="single", vacancies=False)
    with pytest.raises(DefiNetInputError, match="MoS2-1L"):
        run_validation(["MoS2-1L"], settings, "emt", {"uri": mongo_uri, "database": database_name})


def test_validation_document_detects_different_minima():
    from workflows.defects.enumeration import single_defects
    from workflows.hosts import resolve_host
    from workflows.schemas.prediction import PredictedCase, PredictionJobOutput
    from workflows.schemas.relaxation import RelaxationSummary
    from workflows.schemas.validation import ValidationDocument

    host_id, host = resolve_host("mp-149")
    case = single_defects(host_id, host, np.diag([2, 2, 2]))[0]
    moved = case.structure.copy()
    moved.translate_sites([0], [0.3, 0, 0], frac_coords=False)
    predicted = PredictedCase(case_id=case.case_id, structure=case.structure, mean_displacement=0.0, in_domain=True)
    a = RelaxationSummary(ionic_steps=3, energy=-10.0, structure=case.structure)
    b = RelaxationSummary(ionic_steps=30, energy=-10.0, structure=moved)
    job = PredictionJobOutput(checkpoint="ckpt", device="cpu", seconds=0.2, prediction_id="p", count=2, in_domain=2)
    doc = ValidationDocument.from_relaxations(case, predicted, job, "emt", {}, "auto", True, a, b, [])
    assert doc.same_minimum is False and doc.max_final_displacement == pytest.approx(0.3)
    assert doc.start == "prediction" and doc.prediction_seconds_per_case == pytest.approx(0.1)
    assert doc.steps_from_prediction == 3 and doc.steps_from_unrelaxed == 30 and doc.mae_reference == "unrelaxed"
    same = ValidationDocument.from_relaxations(case, predicted, job, "auto", {}, "unrelaxed", False, a, a, [])
    assert same.same_minimum is True and same.energy_difference == 0.0 and same.start == "unrelaxed"
    failed = ValidationDocument.from_relaxations(case, predicted, job, "emt", {}, "auto", True, a, None, ["boom"])
    assert failed.status == "failed" and failed.mae_reference == "prediction" and failed.steps_from_unrelaxed is None
