"""A FireWorks worker killed in the middle of a relaxation: detect the lost run, rerun it, store everything once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

from fireworks.core.rocket_launcher import launch_rocket, rapidfire

from launchpad.deploy import connect, submit, worker
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.flows.validation import DefectValidationMaker
from workflows.hosts import resolve_host
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.storage.stores import ValidationStore, job_store

SETTINGS = EnumerationSettings(mode="dense", supercell_matrix=[[3, 0, 0], [0, 3, 0], [0, 0, 1]],
                               dense_vacancies={"S": 1}, n_configs=1)

WORKER = textwrap.dedent("""
    import sys
    from fireworks.core.rocket_launcher import rapidfire
    from launchpad.deploy import connect, worker
    rapidfire(connect(sys.argv[1], name=sys.argv[2]), worker("cpu"), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
""")


def wait_for_running_relaxation(launchpad, timeout_s: float = 120.0) -> int:
    """Id of the relaxation Firework once a worker has started it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = launchpad.get_fw_ids({"state": "RUNNING", "name": {"$regex": "relax .*from"}})
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no relaxation started")


def test_killed_worker_is_detected_rerun_and_leaves_every_document_once(mongo_uri, database_name, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    maker = DefectValidationMaker(relaxer="chgnet", enumeration=SETTINGS, start="prediction",
                                  predict_maker=DefiNetPredictMaker(device="cpu"), comparison=False)
    launchpad = connect(mongo_uri, name=database_name)
    submit(maker.make([resolve_host("MoS2-1L")]), launchpad, store=job_store(mongo_uri, database_name))
    for kind in ("cpu", "gpu", "cpu"):  # enumerate; predict; the fan-out that adds the relaxation and the record
        assert launch_rocket(launchpad, worker(kind), strm_lvl="ERROR")

    process = subprocess.Popen([sys.executable, "-c", WORKER, mongo_uri, database_name], cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get(
                                   "PYTHONPATH", "")}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        relaxation = wait_for_running_relaxation(launchpad)
        time.sleep(1.0)  # inside the relaxation
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert launchpad.get_fw_by_id(relaxation).state == "RUNNING"  # nobody told FireWorks

    _, lost_fireworks, _ = launchpad.detect_lostruns(expiration_secs=0, rerun=True)
    assert relaxation in lost_fireworks and launchpad.get_fw_by_id(relaxation).state == "READY"
    rapidfire(launchpad, worker("cpu"), nlaunches=0, sleep_time=0, strm_lvl="ERROR")

    fireworks = [launchpad.get_fw_by_id(i) for i in launchpad.get_fw_ids()]
    assert all(fw.state == "COMPLETED" for fw in fireworks), [(fw.name, fw.state) for fw in fireworks]
    with ValidationStore(mongo_uri, database_name) as validation:
        docs = validation.query()
    assert len(docs) == 1 and docs[0]["status"] == "complete" and docs[0]["steps_from_prediction"] >= 1
    outputs = job_store(mongo_uri, database_name)
    outputs.connect()
    per_job = Counter((doc["uuid"], doc["index"]) for doc in outputs.query(properties=["uuid", "index"]))
    assert per_job and max(per_job.values()) == 1  # every job's output stored exactly once
