"""What definet stores: the jobflow JobStore and the ``validation`` documents, through pymongo and maggma.

The ``validation`` collection holds one document per (case_id, relaxer, checkpoint, start_policy, comparison),
kept unique by a unique compound index; jobflow's outputs go to the ``jobs`` collection with large objects (such as
trajectories) in the GridFS bucket ``outputs_blobs``. Which server these live on (a MongoDB URI or the
embedded SecantusDB server) is :mod:`workflows.storage.server`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from jobflow import JobStore

from workflows.storage.server import DefiNetStoreError, mask_uri, one_line

if TYPE_CHECKING:
    from maggma.stores import MongoStore

VALIDATION_KEY = ("case_id", "relaxer", "checkpoint", "start_policy", "comparison")
"""A validation document is one experiment: a case, relaxed by one relaxer, predicted by one checkpoint (or
ensemble), under one start policy with or without the comparison relaxations. The fan-out's "done" check
matches the same fields, so a rerun with another policy adds documents and never replaces another's."""
DATASET_KEY = ("recipe", "structure_id", "relaxer", "start")
JOBS_COLLECTION = "jobs"
BLOBS_COLLECTION = "outputs_blobs"


SERVER_TIMEOUT_MS = 10_000
"""How long a job waits for an unanswering server before it fails (pymongo's default is 30 s)."""
URI_ENV = "DEFINET_MONGO_URI"
"""Environment variable that holds the MongoDB URI (and any password) on every machine."""


def job_store(uri: str, database: str) -> DefiNetJobStore:
    """A jobflow JobStore: documents in ``jobs``; large objects (store ``data``) in GridFS ``outputs_blobs``."""
    return DefiNetJobStore(database, uri)


def _has_password(uri: str) -> bool:
    return mask_uri(uri) != uri


class DefiNetJobStore(JobStore):
    """jobflow's JobStore on one MongoDB database, whose serialised form never holds a password.

    FireWorks stores the JobStore inside every Firework it submits. A URI without credentials is kept
    as it is; a URI with a password is replaced by the name of the environment variable that holds it
    (``DEFINET_MONGO_URI``), which each worker reads when it loads the Firework.
    """

    def __init__(self, database: str, uri: str | None = None, uri_env: str = URI_ENV) -> None:
        from maggma.stores import GridFSStore, MongoStore

        uri = uri or os.environ.get(uri_env)
        if not uri:
            raise DefiNetStoreError(f"JobStore of database {database!r}: set {uri_env} to the MongoDB URI "
                                    "on this machine (the submitted workflow does not carry passwords)")
        self.database, self.uri, self.uri_env = database, uri, uri_env
        fail_fast = {"serverSelectionTimeoutMS": SERVER_TIMEOUT_MS}  # a server gone away fails a job in seconds
        super().__init__(MongoStore(database, JOBS_COLLECTION, uri=uri, mongoclient_kwargs=fail_fast),
                         additional_stores={"data": GridFSStore(database, BLOBS_COLLECTION, uri=uri, compression=True,
                                                                mongoclient_kwargs=fail_fast)})

    def as_dict(self) -> dict[str, Any]:
        """MSON dict: the database, and the URI only when it holds no password (else the variable's name)."""
        values = {"database": self.database, "uri_env": self.uri_env}
        if not _has_password(self.uri):
            values["uri"] = self.uri
        return {"@module": type(self).__module__, "@class": type(self).__name__, **values}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DefiNetJobStore:
        """Inverse of ``as_dict`` (reads the URI from the environment when it was not serialised)."""
        return cls(d["database"], d.get("uri"), d.get("uri_env", URI_ENV))


class KeyedStore:
    """A collection of documents unique on ``KEY`` (a unique compound index), through a maggma MongoStore.

    Use as a context manager (connect on enter, close on exit); the unique compound index on the key is
    created on connect, so writing the same documents twice replaces them instead of duplicating them.
    Subclasses name the collection, its key and the fields with query indexes.
    """

    KIND = "documents"
    COLLECTION = "documents"
    KEY: tuple[str, ...] = ("id",)
    INDEXES: tuple[str, ...] = ()

    def __init__(self, uri: str, database: str, collection: str | None = None) -> None:
        from maggma.stores import MongoStore

        self.uri = uri
        self.database = database
        self.collection = collection or self.COLLECTION
        self.store: MongoStore = MongoStore(database, self.collection, uri=uri, key=self.KEY[0],
                                            mongoclient_kwargs={"serverSelectionTimeoutMS": SERVER_TIMEOUT_MS})
        self._connected = False

    def connect(self) -> None:
        """Connect and make sure the unique key index and the query indexes exist."""
        from pymongo.errors import PyMongoError

        if self._connected:
            return
        self.store.connect()
        try:
            collection = self.store._collection
            drop_stale_unique_indexes(collection, self.KEY)
            collection.create_index([(name, 1) for name in self.KEY], unique=True, name="_".join(self.KEY))
            for name in self.INDEXES:
                collection.create_index([(name, 1)], name=name)
        except PyMongoError as exc:
            self.store.close()
            raise DefiNetStoreError(f"{self.KIND} store {mask_uri(self.uri)}/{self.database}.{self.collection}: "
                                    f"{one_line(mask_uri(str(exc)))}") from None
        self._connected = True

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._connected:
            self.store.close()
            self._connected = False

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def upsert(self, docs: list[dict]) -> None:
        """Insert or replace ``docs``, keyed on ``KEY``; each must carry every field of the key."""
        from pymongo.errors import BulkWriteError

        clean = []
        for number, doc in enumerate(docs):
            missing = [name for name in self.KEY if doc.get(name) is None]
            if missing:
                raise DefiNetStoreError(f"{self.KIND} document {number} ({self.KEY[0]}={doc.get(self.KEY[0])!r}) lacks "
                                        f"{', '.join(missing)}")
            clean.append({k: v for k, v in doc.items() if k != "_id"})
        if not clean:
            return
        self.connect()
        try:
            self.store.update(clean, key=list(self.KEY))
        except BulkWriteError as exc:  # two writers upserting one new key: the loser retries as a replace
            if not all(err.get("code") == 11000 for err in exc.details.get("writeErrors", [])):
                raise
            self.store.update(clean, key=list(self.KEY))

    def iterate(self, criteria: dict[str, Any] | None = None,
                properties: list[str] | None = None) -> Iterator[dict]:
        """Documents matching ``criteria`` (all when None), sorted by the key, without Mongo's ``_id``,
        read from the server in batches as the iterator is consumed."""
        self.connect()
        for doc in self.store.query(criteria=criteria or {}, properties=properties,
                                    sort={name: 1 for name in self.KEY}):
            yield {k: v for k, v in doc.items() if k != "_id"}

    def find(self, criteria: dict[str, Any] | None = None, properties: list[str] | None = None) -> list[dict]:
        """:meth:`iterate` as a list."""
        return list(self.iterate(criteria, properties))

    def find_in(self, **allowed: list[str] | None) -> list[dict]:
        """Documents whose every named field is one of its allowed values (a None or empty list: any value)."""
        return self.find(in_criteria(**allowed))

    def remove(self, criteria: dict[str, Any]) -> int:
        """Delete the documents matching ``criteria`` (which must not be empty); how many there were."""
        if not criteria:
            raise ValueError(f"{self.KIND} store: refusing to delete with empty criteria")
        self.connect()
        return self.store._collection.delete_many(criteria).deleted_count

    def count(self, criteria: dict[str, Any] | None = None) -> int:
        """Number of documents (matching ``criteria``)."""
        self.connect()
        return self.store.count(criteria)


def in_criteria(**allowed: list[str] | None) -> dict[str, Any]:
    """A query: every named field one of its allowed values (a None or empty list: any value)."""
    return {field: {"$in": list(values)} for field, values in allowed.items() if values}


def drop_stale_unique_indexes(collection: Any, key: tuple[str, ...]) -> None:
    """Drop unique indexes on ``collection`` other than the one on ``key``: those an older definet made for a
    narrower key (validation was once unique on case, relaxer and checkpoint), which would refuse a second
    start policy's document. Documents are untouched."""
    for name, spec in collection.index_information().items():
        fields = tuple(field for field, _ in spec["key"])
        if spec.get("unique") and name != "_id_" and fields != key:
            collection.drop_index(name)


class ValidationStore(KeyedStore):
    """The ``validation`` collection: one document per ``VALIDATION_KEY``."""

    KIND = "validation"
    COLLECTION = "validation"
    KEY = VALIDATION_KEY
    INDEXES = ("host_id", "relaxer")

    def query(self, hosts: list[str] | None = None, relaxers: list[str] | None = None,
              start_policies: list[str] | None = None, comparison: bool | None = None,
              checkpoints: list[str] | None = None) -> list[dict]:
        """Documents whose ``host_id`` is in ``hosts``, ``relaxer`` in ``relaxers``, ``start_policy`` in
        ``start_policies`` and ``checkpoint`` in ``checkpoints`` (None or empty: any), with ``comparison`` as given
        (None: either), sorted by the key, without Mongo's ``_id``."""
        criteria = in_criteria(host_id=hosts, relaxer=relaxers, start_policy=start_policies, checkpoint=checkpoints)
        if comparison is not None:  # documents from before the field existed ran the comparison
            criteria["comparison"] = {"$ne": False} if comparison else False
        return self.find(criteria)


class DatasetStore(KeyedStore):
    """The ``dataset`` collection: one document per (recipe, structure_id, relaxer, start)."""

    KIND = "dataset"
    COLLECTION = "dataset"
    KEY = DATASET_KEY
    INDEXES = ("recipe_hash", "relaxer", "status")

    def query(self, recipes: list[str] | None = None, relaxers: list[str] | None = None) -> list[dict]:
        """Documents of ``recipes`` made by ``relaxers`` (None or empty: any), sorted by the key."""
        return self.find_in(recipe=recipes, relaxer=relaxers)


class RecipeRegistry(KeyedStore):
    """The ``dataset_recipes`` collection: per recipe and hash, the recipe and the structure ids generated."""

    KIND = "recipe registry"
    COLLECTION = "dataset_recipes"
    KEY = ("recipe", "recipe_hash")

    def register(self, recipe: str, recipe_hash: str, content: dict[str, Any], structure_ids: list[str]) -> None:
        """Record that ``structure_ids`` were generated for the recipe (added to those recorded before)."""
        from datetime import UTC, datetime

        found = self.find({"recipe": recipe, "recipe_hash": recipe_hash}, ["structure_ids"])
        known = found[0]["structure_ids"] if found else []
        ids = known + [i for i in structure_ids if i not in set(known)]
        self.upsert([{"recipe": recipe, "recipe_hash": recipe_hash, "content": content, "structure_ids": ids,
                      "updated_at": datetime.now(UTC)}])

    def latest(self, recipe: str) -> dict[str, Any] | None:
        """The content of the recipe built last under the name ``recipe`` (None if never built here)."""
        entries = self.find({"recipe": recipe}, ["content", "updated_at"])
        return max(entries, key=lambda entry: entry["updated_at"])["content"] if entries else None


def mongo_location(store: JobStore) -> tuple[str, str] | None:
    """(URI, database) of a JobStore's documents collection; None when it does not live on a MongoDB URI."""
    from maggma.stores import MongoStore

    docs_store = store.docs_store
    if not isinstance(docs_store, MongoStore) or not docs_store.uri:
        return None
    return docs_store.uri, docs_store.database


def upsert_documents(store: JobStore, docs: list[dict], kind: type[KeyedStore]) -> bool:
    """Upsert ``docs`` into the ``kind`` collection (e.g. ValidationStore) beside ``store``'s documents.

    Used by the record jobs through jobflow's exposed store. Returns False (nothing written) when the
    JobStore does not live on a MongoDB URI, e.g. a jobflow MemoryStore in a quick local run.
    """
    location = mongo_location(store)
    if location is None:
        return False
    with kind(*location) as collection:
        collection.upsert(docs)
    return True


def upsert_validation_documents(store: JobStore, docs: list[dict]) -> bool:
    """Upsert ``docs`` into ``validation`` beside ``store``'s documents (see :func:`upsert_documents`)."""
    return upsert_documents(store, docs, ValidationStore)


def documented_keys(store: JobStore, kind: type[KeyedStore], fields: tuple[str, ...], id_field: str, ids: list[str],
                    criteria: dict[str, Any]) -> set[tuple[Any, ...]]:
    """The ``fields`` values (as tuples) of the ``kind`` documents matching ``criteria`` whose ``id_field`` is one
    of ``ids``.

    Read through the exposed JobStore by the fan-out jobs, so a rerun relaxes only what is missing or
    failed. Empty when the JobStore does not live on a MongoDB URI.
    """
    location = mongo_location(store)
    if location is None or not ids:
        return set()
    with kind(*location) as collection:
        return {tuple(doc[f] for f in fields)
                for doc in collection.find({**criteria, id_field: {"$in": list(ids)}}, list(fields))}


def complete_case_ids(store: JobStore, case_ids: list[str], relaxer: str, checkpoint: str, start: str,
                      comparison: bool) -> set[str]:
    """Cases of ``case_ids`` that already have a complete validation document with this key."""
    criteria = {"relaxer": relaxer, "checkpoint": checkpoint, "status": "complete", "start_policy": start,
                "comparison": comparison}
    return {key[0] for key in documented_keys(store, ValidationStore, ("case_id",), "case_id", case_ids, criteria)}
