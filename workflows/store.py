"""What definet stores: the jobflow JobStore and the ``validation`` documents, through pymongo and maggma.

The ``validation`` collection holds one document per (case_id, relaxer, checkpoint), kept unique by a
unique compound index; jobflow's outputs go to the ``jobs`` collection with large objects (such as
trajectories) in the GridFS bucket ``outputs_blobs``. Which server these live on (a MongoDB URI or the
embedded SecantusDB server) is :mod:`workflows.db_server`.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import TYPE_CHECKING, Any

from jobflow import JobStore

from workflows.db_server import DefiNetStoreError, mask_uri, one_line

if TYPE_CHECKING:
    from maggma.stores import MongoStore

VALIDATION_KEY = ("case_id", "relaxer", "checkpoint")
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


class ValidationStore:
    """The ``validation`` collection: one document per (case_id, relaxer, checkpoint), through a maggma MongoStore.

    Use as a context manager (connect on enter, close on exit); the unique compound index on the key is
    created on connect, so writing the same documents twice replaces them instead of duplicating them.
    """

    def __init__(self, uri: str, database: str, collection: str = "validation") -> None:
        from maggma.stores import MongoStore

        self.uri = uri
        self.database = database
        self.collection = collection
        self.store: MongoStore = MongoStore(database, collection, uri=uri, key=VALIDATION_KEY[0],
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
            collection.create_index([(name, 1) for name in VALIDATION_KEY], unique=True,
                                    name="_".join(VALIDATION_KEY))
            collection.create_index([("host_id", 1)], name="host_id")
            collection.create_index([("relaxer", 1)], name="relaxer")
        except PyMongoError as exc:
            self.store.close()
            raise DefiNetStoreError(f"validation store {mask_uri(self.uri)}/{self.database}.{self.collection}: "
                                    f"{one_line(mask_uri(str(exc)))}") from None
        self._connected = True

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._connected:
            self.store.close()
            self._connected = False

    def __enter__(self) -> ValidationStore:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def upsert(self, docs: list[dict]) -> None:
        """Insert or replace ``docs``, keyed on (case_id, relaxer, checkpoint); each must carry all three."""
        from pymongo.errors import BulkWriteError

        clean = []
        for number, doc in enumerate(docs):
            missing = [name for name in VALIDATION_KEY if doc.get(name) is None]
            if missing:
                raise DefiNetStoreError(f"validation document {number} (case_id={doc.get('case_id')!r}) lacks "
                                        f"{', '.join(missing)}")
            clean.append({k: v for k, v in doc.items() if k != "_id"})
        if not clean:
            return
        self.connect()
        try:
            self.store.update(clean, key=list(VALIDATION_KEY))
        except BulkWriteError as exc:  # two writers upserting one new key: the loser retries as a replace
            if not all(err.get("code") == 11000 for err in exc.details.get("writeErrors", [])):
                raise
            self.store.update(clean, key=list(VALIDATION_KEY))

    def query(self, hosts: list[str] | None = None, relaxers: list[str] | None = None) -> list[dict]:
        """Documents whose ``host_id`` is in ``hosts`` and ``relaxer`` in ``relaxers`` (None or empty: any),
        sorted by the key, without Mongo's ``_id``."""
        criteria: dict[str, Any] = {}
        if hosts:
            criteria["host_id"] = {"$in": list(hosts)}
        if relaxers:
            criteria["relaxer"] = {"$in": list(relaxers)}
        self.connect()
        docs = self.store.query(criteria=criteria, sort={name: 1 for name in VALIDATION_KEY})
        return [{k: v for k, v in doc.items() if k != "_id"} for doc in docs]

    def count(self) -> int:
        """Number of validation documents."""
        self.connect()
        return self.store.count()


def upsert_validation_documents(store: JobStore, docs: list[dict]) -> bool:
    """Upsert ``docs`` into ``validation`` in the database of ``store``'s documents collection.

    Used by the record job through jobflow's exposed store. Returns False (nothing written) when the
    JobStore does not live on a MongoDB URI, e.g. a jobflow MemoryStore in a quick local run.
    """
    from maggma.stores import MongoStore

    docs_store = store.docs_store
    if not isinstance(docs_store, MongoStore) or not docs_store.uri:
        return False
    with ValidationStore(docs_store.uri, docs_store.database) as validation:
        validation.upsert(docs)
    return True


def complete_case_ids(store: JobStore, case_ids: list[str], relaxer: str, checkpoint: str, start: str,
                      comparison: bool) -> set[str]:
    """Cases of ``case_ids`` that already have a complete document made with these settings.

    Read through the exposed JobStore by the fan-out job, so a rerun relaxes only the missing and the
    failed cases. Empty when the JobStore does not live on a MongoDB URI.
    """
    from maggma.stores import MongoStore

    docs_store = store.docs_store
    if not isinstance(docs_store, MongoStore) or not docs_store.uri or not case_ids:
        return set()
    with ValidationStore(docs_store.uri, docs_store.database) as validation:
        found = validation.store.query(
            criteria={"case_id": {"$in": list(case_ids)}, "relaxer": relaxer, "checkpoint": checkpoint,
                      "status": "complete", "start_policy": start, "comparison": comparison},
            properties=["case_id"])
        return {doc["case_id"] for doc in found}
