"""The audit log on its own: durable appends from one and from many threads, and verifying a large export.

Each measurement uses a fresh log file (WAL, synchronous=FULL: an append returns once its fsync is done;
concurrent appends share one fsync through group commit), signed by the provider node's own identity, with
the node's default tree-head cadence. Entries look like the gate's: digests of a request and a response.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit import AuditEntry, AuditError, AuditLog, verify_bundle
from bench import BenchFailed
from bench._load import percentile
from bench._space import CONSUMER, CONSUMER_ORG, DATASET
from crypto import Identity

METHOD = "/ipspace.v1.Catalog/ListDatasets"


def fsync_probe(directory: Path, *, count: int, deadline_s: float) -> dict[str, float]:
    """Latency of one 4 KiB write + fsync in ``directory``: the floor under a durable append."""
    path = directory / "fsync-probe"
    latencies = []
    stop_at = time.perf_counter() + deadline_s
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(count):
            began = time.perf_counter()
            os.write(descriptor, b"\0" * 4096)
            os.fsync(descriptor)
            latencies.append(time.perf_counter() - began)
            if time.perf_counter() >= stop_at:
                break
    finally:
        os.close(descriptor)
        path.unlink()
    return {
        "fsyncs": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def gate_like_entry(node: str, number: int) -> AuditEntry:
    """An allowed-call entry as the record step writes it (the digests vary, as real ones do)."""
    return AuditEntry(
        time=datetime.now(UTC).isoformat(timespec="microseconds"),
        node=node,
        actor=CONSUMER,
        org=CONSUMER_ORG,
        role="consumer",
        method=METHOD,
        dataset=DATASET,
        agreement_id="",
        purpose="",
        decision="allow",
        status="OK",
        reason="catalog.read is open to consumers",
        request_digest="sha256:" + hashlib.sha256(b"request %d" % number).hexdigest(),
        response_digest="sha256:" + hashlib.sha256(b"response %d" % number).hexdigest(),
        charges={},
    )


@dataclass
class AppendResult:
    threads: int
    appends: int
    wall_s: float
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list, repr=False)

    @property
    def appends_per_s(self) -> float:
        return self.appends / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "appends": self.appends,
            "wall_s": round(self.wall_s, 3),
            "appends_per_s": round(self.appends_per_s, 1),
            "p50_ms": round(percentile(self.latencies_s, 0.50) * 1000, 3),
            "p99_ms": round(percentile(self.latencies_s, 0.99) * 1000, 3),
            "errors": self.errors[:3],
        }


def append_load(log: AuditLog, *, threads: int, total: int, deadline_s: float) -> AppendResult:
    """``threads`` threads append until ``total`` entries are in or ``deadline_s`` has passed."""
    per_thread = max(1, total // threads)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def appender(slot: int) -> None:
        mine = latencies[slot]
        start.wait(30)
        for number in range(slot * per_thread, (slot + 1) * per_thread):
            entry = gate_like_entry(log.node, number)
            began = time.perf_counter()
            try:
                log.append(entry)
            except AuditError as error:  # a failed durable write: reported, and the run fails
                errors.append(f"{type(error).__name__}: {error}")
                return
            mine.append(time.perf_counter() - began)
            if time.perf_counter() >= stop_at[0]:
                return

    workers = [threading.Thread(target=appender, args=(slot,), daemon=True) for slot in range(threads)]
    for worker in workers:
        worker.start()
    stop_at[0] = time.perf_counter() + deadline_s
    began = time.perf_counter()
    start.wait(30)
    for worker in workers:
        worker.join(deadline_s + 60)
    wall = time.perf_counter() - began
    merged = [latency for slot in latencies for latency in slot]
    return AppendResult(threads, len(merged), wall, errors, merged)


def measure_appends(
    directory: Path, signer: Identity, *, threads: int, total: int, deadline_s: float
) -> AppendResult:
    """Durable appends/s into a fresh log under ``directory``."""
    path = directory / f"appends-{threads}t.db"
    with AuditLog(path, signer, signer.name) as log:
        return append_load(log, threads=threads, total=total, deadline_s=deadline_s)


@dataclass
class VerifyResult:
    entries: int
    heads: int
    build_s: float
    build_appends_per_s: float
    export_s: float
    verify_s: float
    bundle_bytes: int

    @property
    def verified_entries_per_s(self) -> float:
        return self.entries / self.verify_s if self.verify_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "heads": self.heads,
            "build_s": round(self.build_s, 3),
            "build_appends_per_s": round(self.build_appends_per_s, 1),
            "export_s": round(self.export_s, 3),
            "verify_s": round(self.verify_s, 3),
            "verified_entries_per_s": round(self.verified_entries_per_s, 1),
            "bundle_bytes": self.bundle_bytes,
        }


def measure_verify(
    directory: Path, signer: Identity, ca_cert_pem: bytes, *, entries: int, threads: int, deadline_s: float
) -> VerifyResult:
    """Build a log of ``entries`` entries, export it, and time ``verify_bundle`` on the export.

    Raises BenchFailed if the log could not be built in full or the bundle does not prove every entry.
    """
    bundle = directory / "bundle"
    with AuditLog(directory / "large.db", signer, signer.name) as log:
        built = append_load(log, threads=threads, total=entries, deadline_s=deadline_s)
        if built.errors:
            raise BenchFailed(f"building the log failed: {built.errors[0]}")
        began = time.perf_counter()
        log.export_bundle(bundle)
        export_s = time.perf_counter() - began
    began = time.perf_counter()
    summary = verify_bundle(bundle, ca_cert_pem)
    verify_s = time.perf_counter() - began
    if summary.entries != built.appends:
        raise BenchFailed(f"the bundle proves {summary.entries} entries; {built.appends} were appended")
    size = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file())
    return VerifyResult(
        summary.entries, summary.heads, built.wall_s, built.appends_per_s, export_s, verify_s, size
    )
