"""The dataset flow: generate a recipe's structures -> predict (one batched job) -> relax each once, from the
start the policy picks -> record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobflow import Flow, Maker
from pymatgen.core import Structure

from definet_core.checkpoint import serves_spreads
from definet_core.errors import DefiNetInputError
from workflows.defects.enumeration import survey
from workflows.defects.recipes import Recipe, iter_generate, with_vacuum
from workflows.flows.routing import routed
from workflows.hosts import resolve_host
from workflows.jobs.dataset import relax_and_record_dataset
from workflows.jobs.enumerate import generation_job, with_store
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.relaxers.makers import check_elements, relax_maker
from workflows.starts import check_start


@dataclass
class DatasetBuildMaker(Maker):
    """Build a dataset recipe: generate -> one batched DefiNet prediction -> one relaxation per structure -> record.

    Under ``start`` (``workflows.starts``; default ``auto``) a structure is relaxed from the prediction where its
    verdict is in-domain and from the unrelaxed cell otherwise, so a host the model does not know costs no more
    ionic steps than relaxing it without DefiNet; each structure's
    :class:`~workflows.schemas.dataset.DatasetDocument` is upserted into the ``dataset`` collection. The same
    worker routing as the validation flow: the prediction job on GPU workers, everything else on CPU workers.
    """

    name: str = "definet dataset"
    relaxer: str = "chgnet"
    relax_maker: Maker | None = None
    predict_maker: DefiNetPredictMaker = field(default_factory=DefiNetPredictMaker)
    start: str = "auto"
    select: int | None = None
    """Relax only this many of the generated structures: those with the largest spread between the prediction
    job's ensemble members (its ``companions``, or the ensemble route of a router such as the default's bulk
    route: ``checkpoint.serves_spreads``). None: relax every generated structure."""

    def make(self, recipe: Recipe, host: tuple[str, Structure], structures: int | None = None) -> Flow:
        """Flow over the recipe's first ``structures`` structures on ``host`` (its id and unit cell)."""
        if self.select is not None and not serves_spreads(self.predict_maker.checkpoint,
                                                          self.predict_maker.companions):
            raise DefiNetInputError(f"--select {self.select}: choosing by spread needs an ensemble; add --companion "
                                    "CHECKPOINT (DefiNetPredictMaker.companions; e.g. --checkpoint definet_2d_v2 "
                                    "--companion definet_2d_seed1) or use a router with an ensemble route")
        cases = generation_job(recipe, host[0], host[1], structures)
        predict = self.predict_maker.make(cases.output)
        relax = with_store(relax_and_record_dataset(recipe, cases.output, predict.output,
                                                    self.relax_maker or relax_maker(self.relaxer), self.relaxer,
                                                    check_start(self.start), self.select), "relax and record dataset")
        return routed(Flow([cases, predict, relax], output=relax.output, name=f"{self.name} {recipe.name}"), predict)


def recipe_host(recipe: Recipe) -> tuple[str, Structure]:
    """(host id, unit cell with the recipe's vacuum) of a recipe."""
    host_id, host = resolve_host(recipe.host_spec())
    return host_id, with_vacuum(host, recipe)


def prepare_dataset_flow(recipe: Recipe, relaxer: str, structures: int | None = None, start: str = "auto",
                         fmax: float | None = None, checkpoint: str | None = None, companions: Sequence[str] = (),
                         select: int | None = None, device: str = "auto") -> Flow:
    """The dataset flow of a recipe, after generating its structures once here to fail early (one-line errors
    before any job exists)."""
    host_id, host = recipe_host(recipe)
    count, elements = survey(iter_generate(recipe, host_id, host, structures))
    check_elements(relaxer, elements)
    check_selection(select, count)
    chosen = "" if select is None else f", of which the {select} with the largest spread are relaxed"
    print(f"recipe {recipe.name} ({recipe.content_hash}): {count} structures on {host_id}{chosen}; relaxer "
          f"{relaxer}, start {start} (structures already relaxed are skipped)")
    maker = DatasetBuildMaker(relaxer=relaxer, relax_maker=relax_maker(relaxer, fmax=fmax),
                              predict_maker=DefiNetPredictMaker(checkpoint=checkpoint, device=device,
                                                                companions=list(companions)),
                              start=start, select=select)
    return maker.make(recipe, (host_id, host), structures)


def check_selection(select: int | None, pool: int) -> None:
    """A one-line error unless ``--select`` (when given) is between 1 and the pool size (``DatasetBuildMaker``
    checks that it has an ensemble)."""
    if select is not None and not 1 <= select <= pool:
        raise DefiNetInputError(f"--select {select}: must be between 1 and the {pool} generated structures "
                                "(raise --structures for a larger pool)")
