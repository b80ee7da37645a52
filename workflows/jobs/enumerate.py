"""The jobs that make a flow's defect cases, streamed into ``defect_cases`` (``workflows.storage.cases``):
enumeration on hosts (validation flow) and a recipe's generation (dataset flow)."""

from __future__ import annotations

from jobflow import CURRENT_JOB, Job, job
from pymatgen.core import Structure

from definet_core.errors import DefiNetInputError
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.defects.recipes import Recipe, iter_generate
from workflows.storage.cases import CaseSet, database_of, write_cases


def with_store(job_: Job, name: str) -> Job:
    """``job_`` named ``name`` and given jobflow's store at run time (it reads or writes the case collections)."""
    job_.name = name
    job_.config.expose_store = True
    return job_


@job
def enumerate_defects(hosts: list[tuple[str, Structure]], settings: EnumerationSettings) -> CaseSet:
    """All defect cases of all hosts, as ``settings`` asks, streamed into ``defect_cases``.

    Needs jobflow's store exposed: build it with :func:`enumeration_job`.
    """
    location = database_of(CURRENT_JOB.store, "enumerate defects")
    case_set = write_cases(location, CURRENT_JOB.job.uuid,
                           (case for host_id, host in hosts for case in settings.iter_cases(host_id, host)))
    if case_set.count == 0:
        raise DefiNetInputError("enumerate defects: no hosts given, so no defect cases")
    return case_set


def enumeration_job(hosts: list[tuple[str, Structure]], settings: EnumerationSettings) -> Job:
    """The enumeration job of a validation flow ("enumerate defects", with the store it writes the cases to)."""
    return with_store(enumerate_defects(hosts, settings), "enumerate defects")


@job
def generate_structures(recipe: Recipe, host_id: str, host: Structure, structures: int | None = None) -> CaseSet:
    """The recipe's first ``structures`` structures (case ids are the structure ids), streamed into
    ``defect_cases``. Needs jobflow's store exposed: build it with :func:`generation_job`."""
    location = database_of(CURRENT_JOB.store, "generate structures")
    return write_cases(location, CURRENT_JOB.job.uuid, iter_generate(recipe, host_id, host, structures))


def generation_job(recipe: Recipe, host_id: str, host: Structure, structures: int | None = None) -> Job:
    """The generation job of a dataset flow ("generate structures", with the store it writes the cases to)."""
    return with_store(generate_structures(recipe, host_id, host, structures), "generate structures")
