"""Client load on one server: processes of threads, each with its own mTLS channel, calling ListDatasets.

Clients run in spawned processes of their own, so that their Python does not compete with the server's for
one GIL. Each thread connects and warms up (TLS handshake, the gate's verified-token cache) before the
parent says go; the parent reads the server's CPU clock just before go and just after the last result.
Every loop is bounded by a call count and a deadline. A call that fails stops its thread and is reported.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import BenchFailed
from bench._servers import ServerProcess
from contracts.v1 import catalog_pb2, catalog_pb2_grpc
from crypto import Identity, channel_credentials
from ipspace.cli_identity import read_token

CALL_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LoadSpec:
    address: str
    member_dir: str
    processes: int
    threads: int
    calls_per_thread: int
    warmup_calls: int
    deadline_s: float
    expected_datasets: int


@dataclass
class ThreadOutcome:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    ended: float = 0.0


def _call_loop(spec: LoadSpec, ready: threading.Barrier, go: Any, outcome: ThreadOutcome) -> None:
    directory = Path(spec.member_dir)
    identity = Identity.load(directory)
    metadata = (("authorization", f"Bearer {read_token(directory)}"),)
    # A pool of its own, so that every thread holds its own connection rather than sharing one subchannel.
    channel = grpc.secure_channel(
        spec.address, channel_credentials(identity), options=[("grpc.use_local_subchannel_pool", 1)]
    )
    stub = catalog_pb2_grpc.CatalogStub(channel)
    request = catalog_pb2.ListDatasetsRequest()

    def one_call() -> float | None:
        began = time.perf_counter()
        try:
            response = stub.ListDatasets(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            outcome.errors += 1
            outcome.first_error = outcome.first_error or f"{error.code().name}: {error.details()}"
            return None
        elapsed = time.perf_counter() - began
        if len(response.datasets) != spec.expected_datasets:
            outcome.errors += 1
            outcome.first_error = outcome.first_error or f"{len(response.datasets)} datasets listed"
            return None
        return elapsed

    try:
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
        for _ in range(spec.warmup_calls):
            if one_call() is None:
                break
        ready.wait(START_TIMEOUT_S)
        if outcome.errors or not go.wait(START_TIMEOUT_S):
            return
        outcome.started = time.monotonic()  # system-wide clock: comparable across processes
        stop_at = outcome.started + spec.deadline_s
        for _ in range(spec.calls_per_thread):
            latency = one_call()
            if latency is None:
                break
            outcome.latencies_s.append(latency)
            if time.monotonic() >= stop_at:
                break
        outcome.ended = time.monotonic()
    except grpc.FutureTimeoutError:
        outcome.errors += 1
        outcome.first_error = f"could not connect to {spec.address} within {START_TIMEOUT_S:g}s"
    except threading.BrokenBarrierError:
        outcome.errors += 1
        outcome.first_error = outcome.first_error or "another client thread failed to start"
    finally:
        channel.close()


def client_process(spec: LoadSpec, go: Any, results: Any) -> None:
    """Process entry point: report ("ready",) once warmed up, then ("done", outcomes, CPU-s of the load)."""
    outcomes = [ThreadOutcome() for _ in range(spec.threads)]
    ready = threading.Barrier(spec.threads + 1)
    threads = [
        threading.Thread(target=_call_loop, args=(spec, ready, go, outcome), daemon=True)
        for outcome in outcomes
    ]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed; its outcome says why
        ready.wait(START_TIMEOUT_S + 5)
    cpu_at_ready = time.process_time()
    results.put(("ready",))
    for thread in threads:
        thread.join(START_TIMEOUT_S + spec.deadline_s + CALL_TIMEOUT_S)
    results.put(("done", outcomes, time.process_time() - cpu_at_ready))


@dataclass
class LoadResult:
    """One load phase against one server: what the clients saw and what the server spent."""

    server: str
    clients: str
    calls: int
    errors: int
    first_error: str
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float
    latencies_s: list[float] = field(repr=False)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def calls_per_server_cpu_s(self) -> float:
        """Calls per CPU-second of the server process: calls per second one core could serve."""
        return self.calls / self.server_cpu_s if self.server_cpu_s > 0 else 0.0

    def latency_ms(self, quantile: float) -> float:
        return percentile(self.latencies_s, quantile) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "clients": self.clients,
            "calls_ok": self.calls,
            "errors": self.errors,
            "first_error": self.first_error,
            "wall_s": round(self.wall_s, 3),
            "calls_per_s": round(self.calls_per_s, 1),
            "p50_ms": round(self.latency_ms(0.50), 3),
            "p99_ms": round(self.latency_ms(0.99), 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "calls_per_server_cpu_s": round(self.calls_per_server_cpu_s, 1),
            "client_cpu_s": round(self.client_cpu_s, 3),
        }


def merge_rounds(rounds: list[LoadResult]) -> LoadResult:
    """Several rounds of one phase against one server, as one result (times and CPU add up)."""
    first = rounds[0]
    return LoadResult(
        server=first.server,
        clients=first.clients,
        calls=sum(r.calls for r in rounds),
        errors=sum(r.errors for r in rounds),
        first_error=next((r.first_error for r in rounds if r.first_error), ""),
        wall_s=sum(r.wall_s for r in rounds),
        server_cpu_s=sum(r.server_cpu_s for r in rounds),
        client_cpu_s=sum(r.client_cpu_s for r in rounds),
        latencies_s=[latency for r in rounds for latency in r.latencies_s],
    )


def percentile(values: list[float], quantile: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(quantile * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_load(server: ServerProcess, spec: LoadSpec) -> LoadResult:
    """Run ``spec`` against ``server``; every client process is stopped (by its PID) before returning."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    results = context.Queue()
    clients = [
        context.Process(target=client_process, args=(spec, go, results), name="bench-client", daemon=True)
        for _ in range(spec.processes)
    ]
    outcomes: list[ThreadOutcome] = []
    client_cpu = 0.0
    try:
        for client in clients:
            client.start()
        early: list[tuple[Any, ...]] = []
        _expect(results, "ready", spec.processes, START_TIMEOUT_S * 2, early)
        cpu_before = server.cpu_seconds()
        go.set()
        for message in _expect(results, "done", spec.processes, spec.deadline_s + START_TIMEOUT_S, early):
            outcomes += message[1]
            client_cpu += message[2]
        cpu_after = server.cpu_seconds()
    finally:
        go.set()
        for client in clients:
            client.join(10.0)
            if client.is_alive():
                client.terminate()
                client.join(5.0)
    latencies = [latency for outcome in outcomes for latency in outcome.latencies_s]
    timed = [outcome for outcome in outcomes if outcome.ended]
    wall = max(o.ended for o in timed) - min(o.started for o in timed) if timed else 0.0
    return LoadResult(
        server=server.kind,
        clients=f"{spec.processes} proc x {spec.threads} thr",
        calls=len(latencies),
        errors=sum(outcome.errors for outcome in outcomes),
        first_error=next((outcome.first_error for outcome in outcomes if outcome.first_error), ""),
        wall_s=wall,
        server_cpu_s=cpu_after - cpu_before,
        client_cpu_s=client_cpu,
        latencies_s=latencies,
    )


def _expect(results: Any, kind: str, count: int, timeout_s: float, early: list[tuple[Any, ...]]) -> list[Any]:
    """Wait for ``count`` messages of ``kind``; a "done" that comes early (its threads failed at once) is
    kept in ``early`` and counts when "done" is awaited."""
    messages = [message for message in early if message[0] == kind]
    deadline = time.monotonic() + timeout_s
    while len(messages) < count:
        try:
            message = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise BenchFailed(f"{count - len(messages)} client processes did not report {kind!r}") from None
        if message[0] == kind:
            messages.append(message)
        elif message[0] == "done":
            early.append(message)
        else:
            raise BenchFailed(f"a client process reported {message[0]!r} while {kind!r} was awaited")
    return messages
