"""LaunchPad connection, worker definitions and flow submission.

Routing: the DefiNet prediction Firework carries ``_category: gpu`` and runs only on a GPU worker
(``FWorker(category="gpu")``); every other Firework, including those the flow creates at run time,
carries ``_category: cpu`` and runs on CPU workers. See ``launchpad/templates`` for worker and SLURM
queue files.
"""

from __future__ import annotations

from pathlib import Path

from fireworks import FWorker, LaunchPad
from jobflow import Flow, JobStore
from jobflow.managers.fireworks import flow_to_workflow

from workflows.flows.routing import CPU_CATEGORY, GPU_CATEGORY

TEMPLATES = Path(__file__).parent / "templates"


def connect(uri: str, name: str = "definet") -> LaunchPad:
    """LaunchPad on the MongoDB at ``uri`` (database ``name``), initialised if the database has no FireWorks yet.

    An existing FireWorks database is never reset.
    """
    launchpad = LaunchPad(host=uri, uri_mode=True, name=name)
    if launchpad.fw_id_assigner.count_documents({}) == 0 and launchpad.fireworks.count_documents({}) == 0:
        launchpad.reset("", require_password=False)
    return launchpad


def worker(kind: str, name: str | None = None) -> FWorker:
    """FWorker for ``kind`` 'gpu' (the prediction job) or 'cpu' (everything else)."""
    categories = {"gpu": GPU_CATEGORY, "cpu": CPU_CATEGORY}
    if kind not in categories:
        raise ValueError(f"worker kind {kind!r}: choose gpu or cpu")
    return FWorker(name=name or f"definet-{kind}", category=categories[kind])


def submit(flow: Flow, launchpad: LaunchPad, store: JobStore | None = None) -> dict[int, int]:
    """Add ``flow`` to the LaunchPad as one FireWorks workflow; returns the old-to-new Firework id map.

    ``store`` is the JobStore the workers write to (default: jobflow's configured JOB_STORE).
    """
    return launchpad.add_wf(flow_to_workflow(flow, store=store))
