"""The defect validation flow (enumerate -> predict -> relax from both starts -> record) and its sibling,
the dataset flow (generate a recipe's structures -> predict -> relax from one start -> record)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobflow import Flow, Job, Maker
from pymatgen.core import Structure

from definet_core.errors import DefiNetInputError
from workflows.categories import CPU_CATEGORY, GPU_CATEGORY
from workflows.dataset_jobs import generation_job, relax_and_record_dataset
from workflows.enumeration_settings import EnumerationSettings
from workflows.jobs import DefiNetPredictMaker, enumeration_job, relax_and_record, with_store
from workflows.recipes import Recipe
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
        cases = enumeration_job(hosts, self.enumeration)
        predict = self.predict_maker.make(cases.output)
        relax = with_store(relax_and_record(cases.output, predict.output, self.relax_maker or relax_maker(self.relaxer),
                                            self.relaxer, self.unrelaxed_start, self.start), "relax and record")
        return routed(Flow([cases, predict, relax], output=relax.output, name=self.name), predict)


def routed(flow: Flow, predict: Job) -> Flow:
    """``flow`` with every job on CPU workers except the prediction job, which goes to GPU workers."""
    flow.update_config({"manager_config": {"_category": CPU_CATEGORY}})
    predict.update_config({"manager_config": {"_category": GPU_CATEGORY}})
    return flow


@dataclass
class DatasetBuildMaker(Maker):
    """Build a dataset recipe: generate -> one batched DefiNet prediction -> one relaxation per structure -> record.

    Relaxations start from the prediction (``start="prediction"``) or the unrelaxed cell; each structure's
    :class:`~workflows.documents.DatasetDocument` is upserted into the ``dataset`` collection. The same
    worker routing as the validation flow: the prediction job on GPU workers, everything else on CPU workers.
    """

    name: str = "definet dataset"
    relaxer: str = "chgnet"
    relax_maker: Maker | None = None
    predict_maker: DefiNetPredictMaker = field(default_factory=DefiNetPredictMaker)
    start: str = "prediction"
    select: int | None = None
    """Relax only this many of the generated structures: those with the largest spread between the prediction
    job's ensemble members (its ``companions`` must be set). None: relax every generated structure."""

    def make(self, recipe: Recipe, host: tuple[str, Structure], structures: int | None = None) -> Flow:
        """Flow over the recipe's first ``structures`` structures on ``host`` (its id and unit cell)."""
        if self.select is not None and not self.predict_maker.companions:
            raise DefiNetInputError(f"--select {self.select}: choosing by spread needs an ensemble; add --companion "
                                    "CHECKPOINT (DefiNetPredictMaker.companions; e.g. --companion definet_2d_seed1)")
        cases = generation_job(recipe, host[0], host[1], structures)
        predict = self.predict_maker.make(cases.output)
        relax = with_store(relax_and_record_dataset(recipe, cases.output, predict.output,
                                                    self.relax_maker or relax_maker(self.relaxer), self.relaxer,
                                                    self.start, self.select), "relax and record dataset")
        return routed(Flow([cases, predict, relax], output=relax.output, name=f"{self.name} {recipe.name}"), predict)
