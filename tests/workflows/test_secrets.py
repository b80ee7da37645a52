"""A password in DEFINET_MONGO_URI never appears in output, logs, stored workflows or exceptions."""

from __future__ import annotations

import json
import logging

import pytest
from jobflow.managers.fireworks import flow_to_workflow
from monty.json import MontyDecoder
from pymatgen.core import Lattice, Structure

from workflows.cli.main import main
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.flows.validation import DefectValidationMaker
from workflows.storage.stores import job_store

PASSWORD = "s3cret-Pa55"


def with_password(uri: str) -> str:
    return uri.replace("mongodb://", f"mongodb://alice:{PASSWORD}@")


@pytest.fixture()
def copper_file(tmp_path):
    path = tmp_path / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).to(filename=str(path))
    return str(path)


def test_submitted_fireworks_carry_no_password_and_workers_read_it_from_the_environment(monkeypatch):
    from workflows.hosts import resolve_host

    uri = with_password("mongodb://db.example.org:27017/")
    flow = DefectValidationMaker(relaxer="emt", enumeration=EnumerationSettings(mode="single")).make(
        [resolve_host("mp-149")])
    workflow = flow_to_workflow(flow, store=job_store(uri, "definet"))
    stored = json.dumps(workflow.to_dict(), default=str)
    assert PASSWORD not in stored and "DEFINET_MONGO_URI" in stored
    spec_store = workflow.fws[0].tasks[0]["store"]
    monkeypatch.setenv("DEFINET_MONGO_URI", uri)
    loaded = MontyDecoder().process_decoded(json.loads(json.dumps(spec_store.as_dict())))
    assert loaded.docs_store.uri == uri and loaded.additional_stores["data"].database == "definet"


def test_a_rejected_password_is_masked_in_the_error_and_the_logs(copper_file, mongo_uri, monkeypatch, capsys, caplog):
    monkeypatch.setenv("DEFINET_MONGO_URI", with_password(mongo_uri))  # SecantusDB refuses authentication
    caplog.set_level(logging.DEBUG)
    status = main(["run", "--host", copper_file, "--relaxer", "emt", "--supercell", "2", "2", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 2
    assert "alice:***@" in captured.err and captured.err.count("\n") == 1
    assert PASSWORD not in captured.out + captured.err + caplog.text


def test_an_unreachable_server_with_a_password_is_masked(copper_file, monkeypatch, capsys):
    monkeypatch.setenv("DEFINET_MONGO_URI", with_password("mongodb://127.0.0.1:1/"))
    assert main(["results"]) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err and "alice:***@127.0.0.1:1" in err
