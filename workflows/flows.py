"""The defect validation flow: enumerate -> predict -> relax from both starts -> record."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobflow import Flow, Maker
from pymatgen.core import Structure

from workflows.categories import CPU_CATEGORY, GPU_CATEGORY
from workflows.enumeration_settings import EnumerationSettings
from workflows.jobs import DefiNetPredictMaker, enumerate_defects, relax_and_record
from workflows.relaxers import relax_maker


@dataclass
class DefectValidationMaker(Maker):
    """Validate DefiNet on hosts: how many ionic steps do relaxations save when started from its prediction?

    ``relax_maker`` is any atomate2 relaxation Maker (see ``workflows.relaxers.relax_maker``);
    ``relaxer`` names it in the stored documents. The prediction job alone carries the GPU worker
    category; all other jobs, and those the fan-out creates at run time, carry the CPU category.
    """

    name: str = "definet validation"
    relaxer: str = "chgnet"
    relax_maker: Maker | None = None
    predict_maker: DefiNetPredictMaker = field(default_factory=DefiNetPredictMaker)
    enumeration: EnumerationSettings = field(default_factory=EnumerationSettings)
    unrelaxed_start: bool = True
    start: str = "auto"
    """auto: start from the prediction where its verdict is in-domain (else unrelaxed); prediction; unrelaxed."""

    def make(self, hosts: list[tuple[str, Structure]]) -> Flow:
        """Flow over ``hosts``: (host id, host structure) pairs."""
        cases = enumerate_defects(hosts, self.enumeration)
        cases.name = "enumerate defects"
        predict = self.predict_maker.make(cases.output)
        relax = relax_and_record(cases.output, predict.output, self.relax_maker or relax_maker(self.relaxer),
                                 self.relaxer, self.unrelaxed_start, self.start)
        relax.name = "relax and record"
        relax.config.expose_store = True  # reads which cases are already complete
        flow = Flow([cases, predict, relax], output=relax.output, name=self.name)
        flow.update_config({"manager_config": {"_category": CPU_CATEGORY}})
        predict.update_config({"manager_config": {"_category": GPU_CATEGORY}})
        return flow
