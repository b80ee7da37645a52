"""The defect validation flow: enumerate -> predict (one batched job) -> relax under the start policy -> record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobflow import Flow, Maker
from pymatgen.core import Structure

from workflows.defects.enumeration import survey
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.flows.routing import routed
from workflows.hosts import resolve_host
from workflows.jobs.enumerate import enumeration_job, with_store
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.jobs.validation import relax_and_record
from workflows.relaxers.makers import check_elements, relax_maker
from workflows.starts import check_start


@dataclass
class DefectValidationMaker(Maker):
    """Validate DefiNet on hosts: how many ionic steps do relaxations save when started from its prediction?

    ``relax_maker`` is any atomate2 relaxation Maker (see ``workflows.relaxers.makers.relax_maker``);
    ``relaxer`` names it in the stored documents. The prediction job alone carries the GPU worker
    category; all other jobs, and those the fan-out creates at run time, carry the CPU category.
    """

    name: str = "definet validation"
    relaxer: str = "chgnet"
    relax_maker: Maker | None = None
    predict_maker: DefiNetPredictMaker = field(default_factory=DefiNetPredictMaker)
    enumeration: EnumerationSettings = field(default_factory=EnumerationSettings)
    comparison: bool = True
    """Also relax the cases that start from the prediction from the unrelaxed cell, to count the steps saved."""
    start: str = "auto"
    """``workflows.starts``: auto (the prediction where its verdict is in-domain, else unrelaxed), prediction,
    unrelaxed."""

    def make(self, hosts: list[tuple[str, Structure]]) -> Flow:
        """Flow over ``hosts``: (host id, host structure) pairs."""
        cases = enumeration_job(hosts, self.enumeration)
        predict = self.predict_maker.make(cases.output)
        relax = with_store(relax_and_record(cases.output, predict.output, self.relax_maker or relax_maker(self.relaxer),
                                            self.relaxer, self.comparison, check_start(self.start)),
                           "relax and record")
        return routed(Flow([cases, predict, relax], output=relax.output, name=self.name), predict)


def prepare_flow(host_specs: list[str], enumeration: EnumerationSettings, relaxer: str,
                 checkpoint: str | None = None, device: str = "auto", comparison: bool = True,
                 fmax: float | None = None, start: str = "auto",
                 companions: Sequence[str] = ()) -> tuple[Flow, list[str]]:
    """The validation flow and its host ids, after checking hosts, enumeration and relaxer up front (one-line
    errors before any job exists)."""
    hosts = [resolve_host(spec) for spec in host_specs]
    count, elements = survey(case for host_id, host in hosts for case in enumeration.iter_cases(host_id, host))
    check_elements(relaxer, elements)
    print(f"{count} defect cases on {len(hosts)} host(s); relaxer {relaxer}; "
          f"up to {count * (2 if comparison else 1)} relaxations (start: {start})")
    maker = DefectValidationMaker(relaxer=relaxer, relax_maker=relax_maker(relaxer, fmax=fmax),
                                  predict_maker=DefiNetPredictMaker(checkpoint=checkpoint, device=device,
                                                                    companions=list(companions)),
                                  enumeration=enumeration, comparison=comparison, start=start)
    return maker.make(hosts), [host_id for host_id, _ in hosts]
