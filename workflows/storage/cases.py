"""Defect cases and DefiNet's predictions of them, kept in the database between the jobs of a flow.

The job that makes the cases (enumeration, or a dataset recipe's generation) writes them in chunks to
the ``defect_cases`` collection and passes on a small :class:`CaseSet`; the prediction job reads them
back chunk by chunk and writes each chunk's predictions to ``defect_predictions``. No job holds every
case at once, so memory does not grow with the number of cases (``bench/bench_scale.py``) and no job
output comes near MongoDB's 16 MB document limit. Both collections live beside the JobStore's ``jobs``
(reached through jobflow's exposed store) and are keyed, so a job that runs again (a lost FireWorks
run, say) replaces its documents instead of duplicating them. The record job, the last to read them,
deletes its flow's cases and predictions once its documents are stored (``discard``): the documents keep
everything worth keeping, and the two collections hold only the flows still running or interrupted.
``prune_stale`` (``definet db prune``) removes those an interrupted flow left behind.

Structures are stored compactly (lattice, species, fractional coordinates, site properties); a case's
pristine supercell is not stored, it is rebuilt from the case (``DefectCase.pristine``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from jobflow import JobStore
from monty.json import jsanitize
from pydantic import BaseModel, Field
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.core.periodic_table import get_el_sp

from workflows.defects.enumeration import DefectCase
from workflows.schemas.prediction import PredictedCase
from workflows.storage.server import DefiNetStoreError
from workflows.storage.stores import JOBS_COLLECTION, KeyedStore, mongo_location

CHUNK_SIZE = 256
"""Cases written, read and predicted together: bounds a job's memory whatever the number of cases."""


class CaseSet(BaseModel):
    """The cases one job wrote to ``defect_cases``: the job's uuid (``set_id``) and how many there are."""

    set_id: str
    count: int = Field(description="number of cases, stored with index 0 .. count - 1")


class CaseCollection(KeyedStore):
    """The ``defect_cases`` collection: one document per (set_id, index)."""

    KIND = "defect case"
    COLLECTION = "defect_cases"
    KEY = ("set_id", "index")
    INDEXES = ("case_id",)


class PredictionCollection(KeyedStore):
    """The ``defect_predictions`` collection: one document per (prediction_id, case_id)."""

    KIND = "prediction"
    COLLECTION = "defect_predictions"
    KEY = ("prediction_id", "case_id")


def compact_structure(structure: Structure) -> dict[str, Any]:
    """Lattice matrix, species symbols, fractional coordinates and site properties of an ordered structure."""
    compact = {"lattice": structure.lattice.matrix.tolist(), "species": [site.species_string for site in structure],
               "frac_coords": structure.frac_coords.tolist()}
    if structure.site_properties:
        compact["site_properties"] = jsanitize(structure.site_properties)
    return compact


def structure_from_compact(compact: dict[str, Any]) -> Structure:
    """Inverse of :func:`compact_structure`."""
    compositions = {symbol: Composition({get_el_sp(symbol): 1}) for symbol in set(compact["species"])}
    return Structure(Lattice(compact["lattice"]), [compositions[symbol] for symbol in compact["species"]],
                     compact["frac_coords"], site_properties=compact.get("site_properties"))


def chunks(items: Iterable[Any], size: int = CHUNK_SIZE) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def database_of(store: JobStore | None, job: str) -> tuple[str, str]:
    """(URI, database) of the JobStore a job writes its cases beside; a one-line error when there is none."""
    location = mongo_location(store) if store is not None else None
    if location is None:
        raise DefiNetStoreError(f"{job}: needs jobflow's store exposed (JobConfig.expose_store) and on MongoDB "
                                "(workflows.store.job_store), where the defect cases are kept")
    return location


def write_cases(location: tuple[str, str], set_id: str, cases: Iterable[DefectCase]) -> CaseSet:
    """Store ``cases`` (consumed lazily, CHUNK_SIZE at a time) as the set ``set_id``; the set's reference."""
    count = 0
    with CaseCollection(*location) as collection:
        for chunk in chunks(cases):
            collection.upsert([{"set_id": set_id, "index": count + i, "case_id": case.case_id,
                                **case.model_dump(exclude={"structure"}),
                                "structure": compact_structure(case.structure)} for i, case in enumerate(chunk)])
            count += len(chunk)
    return CaseSet(set_id=set_id, count=count)


def _case(doc: dict[str, Any]) -> DefectCase:
    return DefectCase(case_id=doc["case_id"], host_id=doc["host_id"], supercell_matrix=doc["supercell_matrix"],
                      defects=doc["defects"], structure=structure_from_compact(doc["structure"]))


def read_cases(location: tuple[str, str], case_set: CaseSet,
               case_ids: Collection[str] | None = None) -> Iterator[DefectCase]:
    """The set's cases in their stored order (only ``case_ids`` when given), read as they are consumed.

    Raises a one-line error when the set holds fewer cases than its reference says (it was deleted).
    """
    criteria: dict[str, Any] = {"set_id": case_set.set_id}
    if case_ids is not None:
        criteria["case_id"] = {"$in": list(case_ids)}
    expected = case_set.count if case_ids is None else len(set(case_ids))
    found = 0
    with CaseCollection(*location) as collection:
        for doc in collection.iterate(criteria):
            found += 1
            yield _case(doc)
    if found != expected:
        raise DefiNetStoreError(f"defect cases of set {case_set.set_id}: {found} stored, {expected} expected "
                                f"(collection {CaseCollection.COLLECTION} was changed)")


def read_case_ids(location: tuple[str, str], case_set: CaseSet) -> list[str]:
    """The set's case ids in their stored order, read without the structures."""
    with CaseCollection(*location) as collection:
        ids = [doc["case_id"] for doc in collection.iterate({"set_id": case_set.set_id}, ["case_id"])]
    if len(ids) != case_set.count:
        raise DefiNetStoreError(f"defect cases of set {case_set.set_id}: {len(ids)} stored, {case_set.count} expected "
                                f"(collection {CaseCollection.COLLECTION} was changed)")
    return ids


def read_cases_with_predictions(location: tuple[str, str], case_set: CaseSet, prediction_id: str,
                                case_ids: list[str]) -> list[tuple[DefectCase, PredictedCase]]:
    """(case, its prediction by the job ``prediction_id``) for each of ``case_ids``, in that order."""
    predicted = read_predictions(location, prediction_id, case_ids)
    by_id = {case.case_id: case for case in read_cases(location, case_set, case_ids)}
    return [(by_id[case_id], predicted[case_id]) for case_id in case_ids]


def discard(location: tuple[str, str], case_set: CaseSet, prediction_id: str) -> tuple[int, int]:
    """Delete the set's cases and the predictions of the job ``prediction_id``; (cases, predictions) deleted."""
    with CaseCollection(*location) as cases, PredictionCollection(*location) as predictions:
        return cases.remove({"set_id": case_set.set_id}), predictions.remove({"prediction_id": prediction_id})


def read_prediction_fields(location: tuple[str, str], prediction_id: str,
                           fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Some fields of every prediction of the job ``prediction_id`` (None where absent), by case id, read in one
    pass without the structures (e.g. ``in_domain`` and ``spread``)."""
    with PredictionCollection(*location) as collection:
        return {doc["case_id"]: {field: doc.get(field) for field in fields}
                for doc in collection.iterate({"prediction_id": prediction_id}, ["case_id", *fields])}


def prune_stale(location: tuple[str, str], older_than_days: float) -> dict[str, int]:
    """Delete the case sets and predictions whose job completed more than ``older_than_days`` ago.

    The record job discards its flow's sets when it ends, so what stays this long belongs to a flow that was
    interrupted and started again as a new flow (``definet run`` does that), or abandoned. Sets whose job
    has no completed document (still being written, or killed while writing) are kept and counted.
    Returns the documents deleted from each collection and the number of sets kept as incomplete.
    """
    from maggma.stores import MongoStore

    cutoff = datetime.now() - timedelta(days=older_than_days)  # jobflow stamps completed_at in local time
    counts = {"cases": 0, "predictions": 0, "incomplete": 0}
    jobs = MongoStore(location[1], JOBS_COLLECTION, uri=location[0], key="uuid")
    jobs.connect()
    try:
        for kind, collection_class, field in (("cases", CaseCollection, "set_id"),
                                              ("predictions", PredictionCollection, "prediction_id")):
            with collection_class(*location) as collection:
                owners = collection.store.distinct(field)
                completed = {doc["uuid"]: datetime.fromisoformat(doc["completed_at"])
                             for doc in jobs.query({"uuid": {"$in": owners}}, ["uuid", "completed_at"])}
                stale = [owner for owner, when in completed.items() if when < cutoff]
                counts["incomplete"] += len(set(owners) - set(completed))
                if stale:
                    counts[kind] = collection.remove({field: {"$in": stale}})
    finally:
        jobs.close()
    return counts


def write_predictions(location: tuple[str, str], prediction_id: str, predicted: list[PredictedCase]) -> None:
    """Store one chunk of predictions of the prediction job ``prediction_id``."""
    with PredictionCollection(*location) as collection:
        collection.upsert([{"prediction_id": prediction_id, **p.model_dump(exclude={"structure"}),
                            "structure": compact_structure(p.structure)} for p in predicted])


def read_predictions(location: tuple[str, str], prediction_id: str,
                     case_ids: Collection[str]) -> dict[str, PredictedCase]:
    """The predictions of ``case_ids`` made by the prediction job ``prediction_id``, by case id."""
    with PredictionCollection(*location) as collection:
        docs = collection.find({"prediction_id": prediction_id, "case_id": {"$in": list(case_ids)}})
    predicted = {doc["case_id"]: PredictedCase(**{k: v for k, v in doc.items() if k not in ("prediction_id",
                                                                                             "structure")},
                                               structure=structure_from_compact(doc["structure"]))
                 for doc in docs}
    missing = set(case_ids) - set(predicted)
    if missing:
        raise DefiNetStoreError(f"predictions of job {prediction_id}: {len(missing)} of {len(set(case_ids))} cases "
                                f"missing from {PredictionCollection.COLLECTION} (e.g. {sorted(missing)[0]})")
    return predicted
