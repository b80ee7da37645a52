"""Scale: enumerate and predict thousands of dense-defect MoS2 8x8 cases in one prediction job.

    python bench/bench_scale.py --n 5000 [--baseline 500] [--batch-size 32] [--data-dir DIR] [--json FILE]
                                [--threads T] [--compile auto|always|never]

Runs the enumerate + predict part of the validation flow (``enumeration_job`` and
``DefiNetPredictMaker(device="cpu")`` from ``workflows.jobs.predict``, relaxations off) with jobflow's
``run_locally`` on the embedded SecantusDB server (a temporary data directory unless ``--data-dir``;
there the database ``bench_scale_<n>`` is dropped first) through ``workflows.storage.stores.job_store``. With a
server started beforehand by ``definet db start --data-dir DIR`` and ``--data-dir DIR`` here, the server
runs in its own process and the peak RSS is the flow's alone (in-process, it includes the database's cache).

Each size runs in a process of its own (``--single N``), since a process's peak RSS only grows; the
baseline size shows how peak memory grows with the number of cases. Per size: seconds per case of the
enumeration job and of the prediction job (wall time from jobflow's start to finish of each job, storage
included; and the graph + inference time the prediction reports), peak RSS of the process and the peak
within each job, the size of the ``jobs`` collection, of the GridFS ``outputs_blobs`` files and of the
``defect_cases`` and ``defect_predictions`` collections, and where each job's output went (the ``jobs``
document, or a blob reference there and the blob in GridFS).

The cases and their predictions stream through ``defect_cases`` and ``defect_predictions`` in chunks
(``workflows.storage.cases``); the job outputs are small references.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import bson
import gridfs
import torch
from jobflow import Flow, run_locally
from pymongo import MongoClient
from tqdm import tqdm

from definet_core.model import COMPILE_POLICIES
from workflows.cli.run import DEMO_SETTINGS
from workflows.defects.enumeration_settings import EnumerationSettings
from workflows.hosts import resolve_host
from workflows.jobs.enumerate import enumeration_job
from workflows.jobs.predict import DefiNetPredictMaker
from workflows.storage.cases import CaseCollection, PredictionCollection
from workflows.storage.server import StoreSettings, one_line, open_database
from workflows.storage.stores import BLOBS_COLLECTION, JOBS_COLLECTION, job_store

MB = 2**20


def rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class JobMonitor(logging.Handler):
    """Wall time, failure and peak memory of each job, from jobflow's "Starting job" / "Finished job" log lines.

    A thread samples the RSS every ``interval`` s; a job whose run raised the process's peak RSS gets that
    peak too, so allocations the sampler misses (one long call holding the GIL) still count.
    """

    EVENT = re.compile(r"(Starting|Finished) job - (.+) \(([0-9a-f-]{36})")
    FAILED = re.compile(r"(.+) failed with exception:\n(.*)", re.DOTALL)

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(logging.INFO)
        self.interval = interval
        self.jobs: dict[str, dict[str, Any]] = {}
        self._current: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> JobMonitor:
        logger = logging.getLogger("jobflow")
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        logging.getLogger("jobflow").removeHandler(self)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            current = self._current
            if current is not None:
                current["peak_rss_mb"] = max(current["peak_rss_mb"], rss_mb())

    def emit(self, record: logging.LogRecord) -> None:
        """Open or close the record of the job a jobflow log line names."""
        message = record.getMessage()
        event = self.EVENT.match(message)
        failed = self.FAILED.match(message)
        if event and event.group(1) == "Starting":
            rss = rss_mb()
            self._current = {"name": event.group(2), "uuid": event.group(3), "started": time.perf_counter(),
                             "rss_start_mb": rss, "peak_rss_mb": rss, "process_peak_start_mb": peak_rss_mb(),
                             "error": None}
            self.jobs[event.group(3)] = self._current
        elif self._current is not None and (event or failed):
            entry, self._current = self._current, None
            entry["seconds"] = time.perf_counter() - entry.pop("started")
            if peak_rss_mb() > entry.pop("process_peak_start_mb"):
                entry["peak_rss_mb"] = max(entry["peak_rss_mb"], peak_rss_mb())
            if failed:
                entry["error"] = one_line(failed.group(2).strip().splitlines()[-1], 260)


def enumeration_settings(n: int) -> EnumerationSettings:
    """Dense MoS2 8x8 configurations as in ``definet demo`` (DEMO_SETTINGS), ``n`` of them."""
    return DEMO_SETTINGS.model_copy(update={"n_configs": n})


def build_flow(n: int, batch_size: int, compile_model: str) -> Flow:
    """Enumerate -> predict, the first two jobs of the validation flow, for ``n`` dense MoS2 8x8 cases."""
    cases = enumeration_job([resolve_host("MoS2-1L")], enumeration_settings(n))
    predict = DefiNetPredictMaker(device="cpu", batch_size=batch_size, compile=compile_model).make(cases.output)
    return Flow([cases, predict], name="scale")


def blob_references(value: Any, path: str = "output") -> list[tuple[str, str]]:
    """(path, blob uuid) of every blob reference jobflow left in a stored output."""
    if isinstance(value, dict):
        if "blob_uuid" in value:
            return [(path, value["blob_uuid"])]
        return [ref for key, item in value.items() for ref in blob_references(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [ref for index, item in enumerate(value) for ref in blob_references(item, f"{path}[{index}]")]
    return []


def storage_report(uri: str, database: str, jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sizes of the ``jobs``, case and prediction collections and the GridFS blobs, and where each job's output went."""
    with MongoClient(uri) as client:
        db = client[database]
        bucket = gridfs.GridFS(db, BLOBS_COLLECTION)
        for entry in jobs.values():
            doc = db[JOBS_COLLECTION].find_one({"uuid": entry["uuid"]})
            if doc is None:
                entry["output_in"] = f"not stored, the job failed: {entry['error']}"
                continue
            entry["jobs_doc_bytes"] = len(bson.encode(doc))
            if isinstance(doc["output"], dict) and "seconds" in doc["output"]:
                entry["reported_seconds"] = doc["output"]["seconds"]  # the prediction's graph + inference time
            blobs = []
            for path, blob_uuid in blob_references(doc["output"]):
                stored = bucket.find_one({"metadata.blob_uuid": blob_uuid})
                data = stored.read()
                raw = zlib.decompress(data) if stored.metadata.get("compression") == "zlib" else data
                blobs.append({"path": path, "stored_bytes": len(data), "json_bytes": len(raw)})
            entry["blobs"] = blobs
            inline = f"jobs document ({entry['jobs_doc_bytes'] / 1024:.1f} kB)"
            entry["output_in"] = inline if not blobs else "GridFS " + ", ".join(
                f"{b['path']} ({b['json_bytes'] / MB:.1f} MB JSON, {b['stored_bytes'] / MB:.1f} MB stored)"
                for b in blobs) + f"; the blob reference in the {inline}"
        present = set(db.list_collection_names())
        stats = {name: db.command("collStats", name) if name in present else {"size": 0, "count": 0}
                 for name in (JOBS_COLLECTION, f"{BLOBS_COLLECTION}.files", f"{BLOBS_COLLECTION}.chunks",
                              CaseCollection.COLLECTION, PredictionCollection.COLLECTION)}
        return {"jobs_collection_bytes": stats[JOBS_COLLECTION]["size"], "jobs_count": stats[JOBS_COLLECTION]["count"],
                "cases_collection_bytes": stats[CaseCollection.COLLECTION]["size"],
                "predictions_collection_bytes": stats[PredictionCollection.COLLECTION]["size"],
                "blob_files": stats[f"{BLOBS_COLLECTION}.files"]["count"],
                "blob_chunks_bytes": stats[f"{BLOBS_COLLECTION}.chunks"]["size"],
                "blob_stored_bytes": sum(f["length"] for f in db[f"{BLOBS_COLLECTION}.files"].find({}, ["length"])),
                "database_bytes": db.command("dbStats")["dataSize"]}


def run_single(n: int, batch_size: int, data_dir: str | None, compile_model: str) -> dict[str, Any]:
    """Enumerate and predict ``n`` cases in this process; its figures."""
    database = f"bench_scale_{n}"
    flow = build_flow(n, batch_size, compile_model)
    with ExitStack() as stack:
        folder = data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="definet-scale-db-"))
        uri = stack.enter_context(open_database(StoreSettings(uri=None, database=database, data_dir=Path(folder))))
        work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="definet-scale-jobs-"))
        with MongoClient(uri) as client:
            client.drop_database(database)
        rss_before = rss_mb()
        with JobMonitor() as monitor:
            run_locally(flow, store=job_store(uri, database), ensure_success=False, log=False, root_dir=work_dir,
                        create_folders=True)
        peak = peak_rss_mb()  # before the storage report reads the blobs back
        storage = storage_report(uri, database, monitor.jobs)
    by_name = {entry["name"]: entry for entry in monitor.jobs.values()}
    predict = by_name.get("definet predict", {})
    return {"n": n, "batch_size": batch_size, "compile": compile_model, "torch_threads": torch.get_num_threads(),
            "rss_before_run_mb": rss_before, "peak_rss_mb": peak, "jobs": list(monitor.jobs.values()),
            "enumeration_s_per_case": by_name["enumerate defects"]["seconds"] / n,
            "prediction_s_per_case": predict.get("seconds", float("nan")) / n,
            "graph_inference_s_per_case": predict.get("reported_seconds", float("nan")) / n,
            **storage}


def run_sizes(sizes: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each size in a fresh process of this script (``--single``), collected from its JSON."""
    results = []
    for n in tqdm(sizes, desc="sizes", leave=False):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--single", str(n), "--batch-size", str(args.batch_size),
                       "--compile", args.compile, "--json", out.name]
            command += ["--data-dir", args.data_dir] if args.data_dir else []
            command += ["--threads", str(args.threads)] if args.threads else []
            subprocess.run(command, check=True)
            results.append(json.loads(Path(out.name).read_text()))
    return results


def report(results: list[dict[str, Any]]) -> str:
    """The figures of all sizes as a table, the output locations, and the memory growth between sizes."""
    lines = [f"{'cases':>6}{'enum s/case':>12}{'predict s/case':>15}{'graph+nn s/case':>16}{'peak RSS MB':>12}"
             f"{'predict peak MB':>16}{'jobs coll kB':>13}{'GridFS MB':>10}{'cases MB':>9}{'predictions MB':>15}"]
    for r in results:
        predict = next((j for j in r["jobs"] if j["name"] == "definet predict"), {})
        lines.append(f"{r['n']:>6}{r['enumeration_s_per_case']:>12.4f}{r['prediction_s_per_case']:>15.4f}"
                     f"{r['graph_inference_s_per_case']:>16.4f}{r['peak_rss_mb']:>12.0f}"
                     f"{predict.get('peak_rss_mb', float('nan')):>16.0f}{r['jobs_collection_bytes'] / 1024:>13.1f}"
                     f"{r['blob_stored_bytes'] / MB:>10.1f}{r['cases_collection_bytes'] / MB:>9.1f}"
                     f"{r['predictions_collection_bytes'] / MB:>15.1f}")
    for r in results:
        lines.append(f"n={r['n']}: where each job's output went")
        for entry in r["jobs"]:
            lines.append(f"  {entry['name']:<18} {entry['seconds']:7.1f} s, RSS {entry['rss_start_mb']:.0f} -> peak "
                         f"{entry['peak_rss_mb']:.0f} MB; output: {entry['output_in']}")
    if len(results) > 1:
        small, large = min(results, key=lambda r: r["n"]), max(results, key=lambda r: r["n"])
        cases = large["n"] / small["n"]
        base = small["rss_before_run_mb"]
        growth = (large["peak_rss_mb"] - base) / (small["peak_rss_mb"] - base)
        lines.append(f"{cases:.0f}x the cases: peak RSS x{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}; "
                     f"above the RSS before the run x{growth:.2f}; "
                     f"{(large['peak_rss_mb'] - small['peak_rss_mb']) / (large['n'] - small['n']) * 1024:.0f} kB "
                     "per extra case")
    return "\n".join(lines)


def main() -> None:
    """Run the sizes (or one size with ``--single``) and print or write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="cases to enumerate and predict")
    parser.add_argument("--baseline", type=int, default=500, help="smaller size for the memory growth (0: none)")
    parser.add_argument("--batch-size", type=int, default=DefiNetPredictMaker.batch_size)
    parser.add_argument("--data-dir", default=None, help="embedded server data directory (default: temporary)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", choices=COMPILE_POLICIES, default="auto",
                        help="torch.compile in the prediction job (auto: from 1,000 cases, as the flows do)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.single is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        result: Any = run_single(args.single, args.batch_size, args.data_dir, args.compile)
    else:
        sizes = sorted({args.n, args.baseline} - {0})
        result = {"sizes": run_sizes(sizes, args)}
        print(report(result["sizes"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
