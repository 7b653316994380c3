"""What the gate costs: the full gate against bare gRPC, durable audit appends, and verifying a large log.

    .venv/bin/python -m bench.gate [--quick] [--json PATH] [--profile] [--profile-dir DIR] [--strict]

1. ListDatasets over mTLS against two servers, each in its own process: the real node (authenticate ->
   decide -> record -> handle) and a bare gRPC server doing the same handler work with no interceptor.
   One sequential client gives latency; several client processes give throughput, and the server's CPU
   clock (/proc/<pid>/stat) gives calls per server CPU-second, i.e. calls per second per core.
2. Durable audit appends per second from 1, 8 and 16 threads (WAL, synchronous=FULL, group commit), beside
   the latency of one plain write+fsync on the same disk.
3. Export and verification time of a 100,000-entry log (10,000 with --quick).
With --profile, the concurrent phase runs again against a server answering a precomputed response (the
floor gRPC and TLS set), then against each server under cProfile, to show where the CPU goes.

Exit status: 0 when every call and check succeeded; 1 when any call failed or a check did not hold; 2 with
--strict when a goal was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console

from bench import BenchFailed
from bench._audit import fsync_probe, measure_appends, measure_verify
from bench._load import LoadResult, LoadSpec, merge_rounds, run_load
from bench._profile import cpu_breakdown
from bench._report import environment, goals, render, render_profile
from bench._servers import BARE, GATED, STATIC, ServerProcess
from bench._space import BenchSpace, build_space
from contracts.v1 import catalog_pb2, catalog_pb2_grpc
from crypto import Identity, channel_credentials
from ipspace.cli_identity import read_token


@dataclass(frozen=True)
class Settings:
    name: str
    rounds: int  # each gRPC phase alternates bare and gated this many times; the calls below are per round
    sequential_calls: int
    loaded_processes: int
    loaded_threads: int
    loaded_calls_per_thread: int
    phase_deadline_s: float
    warmup_calls: int
    append_total: int
    append_deadline_s: float
    append_threads: tuple[int, ...]
    verify_entries: int
    verify_deadline_s: float


_LOAD_SHAPE = {
    "loaded_processes": 2,
    "loaded_threads": 4,
    "append_threads": (1, 8, 16),
}  # 16: the node's pool
FULL = Settings(
    name="full",
    rounds=4,
    sequential_calls=500,
    loaded_calls_per_thread=375,
    phase_deadline_s=15.0,
    warmup_calls=30,
    append_total=20_000,
    append_deadline_s=15.0,
    verify_entries=100_000,
    verify_deadline_s=180.0,
    **_LOAD_SHAPE,
)
QUICK = Settings(
    name="quick",
    rounds=1,
    sequential_calls=300,
    loaded_calls_per_thread=150,
    phase_deadline_s=4.0,
    warmup_calls=10,
    append_total=3_000,
    append_deadline_s=3.0,
    verify_entries=10_000,
    verify_deadline_s=30.0,
    **_LOAD_SHAPE,
)
FSYNC_PROBES = 200
BUILD_THREADS = 16


def _specs(address: str, space: BenchSpace, settings: Settings) -> tuple[LoadSpec, LoadSpec]:
    common = {"address": address, "member_dir": str(space.consumer_dir), "expected_datasets": 1}
    sequential = LoadSpec(
        processes=1,
        threads=1,
        calls_per_thread=settings.sequential_calls,
        warmup_calls=settings.warmup_calls,
        deadline_s=settings.phase_deadline_s,
        **common,
    )
    loaded = LoadSpec(
        processes=settings.loaded_processes,
        threads=settings.loaded_threads,
        calls_per_thread=settings.loaded_calls_per_thread,
        warmup_calls=settings.warmup_calls,
        deadline_s=settings.phase_deadline_s,
        **common,
    )
    return sequential, loaded


def _served(result: LoadResult, spec: LoadSpec) -> int:
    """Calls the server answered in a phase, warm-up included."""
    return result.calls + spec.processes * spec.threads * spec.warmup_calls


def _same_response(space: BenchSpace, servers: list[ServerProcess]) -> bytes:
    """Both servers must answer ListDatasets with the same bytes, or the comparison is not like for like."""
    identity = Identity.load(space.consumer_dir)
    metadata = (("authorization", f"Bearer {read_token(space.consumer_dir)}"),)
    answers = []
    for server in servers:
        with grpc.secure_channel(server.address, channel_credentials(identity)) as channel:
            try:
                response = catalog_pb2_grpc.CatalogStub(channel).ListDatasets(
                    catalog_pb2.ListDatasetsRequest(), metadata=metadata, timeout=30
                )
            except grpc.RpcError as error:
                raise BenchFailed(
                    f"the {server.kind} server refused: {error.code().name}: {error.details()}"
                ) from None
        answers.append(response.SerializeToString(deterministic=True))
    if len(set(answers)) != 1:
        raise BenchFailed("the bare servicer's ListDatasets response differs from the node's")
    return answers[0]


def _audit_decisions(node_dir: Path) -> tuple[int, int]:
    """(allowed, denied) entries in the node's audit log, read from its file (read-only)."""
    uri = (node_dir / "node.db").resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        allowed, denied = connection.execute(
            'SELECT SUM(CAST(leaf AS TEXT) LIKE \'%"decision":"allow"%\'),'
            ' SUM(CAST(leaf AS TEXT) LIKE \'%"decision":"deny"%\') FROM entries'
        ).fetchone()
    return allowed or 0, denied or 0


def run_grpc(space: BenchSpace, settings: Settings, checks: list[str]) -> dict[str, Any]:
    """Both phases against both servers, in alternating rounds so that a noisy neighbour hits both alike."""
    rounds: dict[str, dict[str, list[LoadResult]]] = {
        "sequential": {BARE: [], GATED: []},
        "loaded": {BARE: [], GATED: []},
    }
    served_by_gate = 1  # the response comparison below
    with ServerProcess(BARE, space.node_dir) as bare, ServerProcess(GATED, space.node_dir) as gated:
        response = _same_response(space, [bare, gated])
        checks.append(f"bare and gated ListDatasets responses are identical ({len(response):,} bytes)")
        for phase, index in (("sequential", 0), ("loaded", 1)):
            for _round in range(settings.rounds):
                for server in (bare, gated):
                    spec = _specs(server.address, space, settings)[index]
                    result = run_load(server, spec)
                    if result.errors or result.calls == 0:
                        raise BenchFailed(
                            f"{server.kind} {phase}: {result.errors} failed calls, {result.calls} OK; "
                            f"first failure: {result.first_error or 'none recorded'}"
                        )
                    rounds[phase][server.kind].append(result)
                    if server is gated:
                        served_by_gate += _served(result, spec)
    allowed, denied = _audit_decisions(space.node_dir)
    if (allowed, denied) != (served_by_gate, 0):
        raise BenchFailed(
            f"the gate served {served_by_gate:,} calls but its log holds {allowed:,} allowed and {denied:,} "
            "denied entries"
        )
    checks.append(f"every gated call was allowed and recorded: {allowed:,} allow entries, 0 deny")
    return {
        phase: {kind: merge_rounds(results).summary() for kind, results in by_kind.items()}
        for phase, by_kind in rounds.items()
    }


def run_profile(space: BenchSpace, settings: Settings, directory: Path) -> dict[str, Any]:
    """The loaded phase again, against each server under cProfile; CPU per call by part and function.

    First, unprofiled, a server answering with a precomputed response: the floor that gRPC, TLS and
    protobuf set on this machine before any handler or gate work.
    """
    directory.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, Any] = {}
    with ServerProcess(STATIC, space.node_dir) as server:
        floor = run_load(server, _specs(server.address, space, settings)[1])
    if floor.errors:
        raise BenchFailed(f"the static server failed {floor.errors} calls: {floor.first_error}")
    profiles["grpc_floor"] = floor.summary()
    for kind in (BARE, GATED):
        path = directory / f"{kind}.pstats"
        with ServerProcess(kind, space.node_dir, profile_path=path) as server:
            spec = _specs(server.address, space, settings)[1]
            result = run_load(server, spec)
        if result.errors:
            raise BenchFailed(f"profiled {kind} run: {result.errors} failed calls: {result.first_error}")
        profiles[kind] = cpu_breakdown(path, _served(result, spec))
        profiles[kind]["pstats"] = str(path)
    return profiles


def run(settings: Settings, *, profile: bool, profile_dir: Path | None, console: Console) -> dict[str, Any]:
    checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ipspace-bench-") as temp:
        work = Path(temp)
        results: dict[str, Any] = {"mode": settings.name, "environment": environment(work)}
        results["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        console.print(f"building a data space in {work} ...")
        space = build_space(work / "space")
        fsync_before = fsync_probe(work, count=FSYNC_PROBES, deadline_s=5.0)
        console.print(f"node holds {space.row_count} Lens rows; gRPC phases ({settings.rounds} rounds) ...")
        results["grpc"] = run_grpc(space, settings, checks)
        results["fsync"] = [fsync_before, fsync_probe(work, count=FSYNC_PROBES, deadline_s=5.0)]
        signer = Identity.load(space.provider_dir)
        appends = []
        for threads in settings.append_threads:
            console.print(f"durable audit appends, {threads} thread(s) ...")
            outcome = measure_appends(
                work,
                signer,
                threads=threads,
                total=settings.append_total,
                deadline_s=settings.append_deadline_s,
            )
            if outcome.errors:
                raise BenchFailed(f"audit appends with {threads} thread(s) failed: {outcome.errors[0]}")
            appends.append(outcome.summary())
        results["audit_appends"] = appends
        console.print(f"building, exporting and verifying a {settings.verify_entries:,}-entry log ...")
        verify = measure_verify(
            work,
            signer,
            space.ca_cert_pem,
            entries=settings.verify_entries,
            threads=BUILD_THREADS,
            deadline_s=settings.verify_deadline_s,
        )
        checks.append(f"verify_bundle proved all {verify.entries:,} entries, {verify.heads} signed heads")
        results["verify"] = verify.summary()
        results["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        results["goals"] = goals(results)
        results["checks"] = checks
        if profile:
            console.print("profiling both servers under the concurrent load (cProfile, thread CPU time) ...")
            results["profile"] = run_profile(space, settings, profile_dir or work / "profiles")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run of a few seconds per phase")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--profile", action="store_true", help="profile both servers under load afterwards")
    parser.add_argument("--profile-dir", type=Path, help="keep the .pstats files here (default: discarded)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a goal is missed")
    args = parser.parse_args(argv)
    # A pipe or a file gets rich's 80 columns, too narrow for the table: give it room.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    settings = QUICK if args.quick else FULL
    try:
        results = run(settings, profile=args.profile, profile_dir=args.profile_dir, console=console)
    except BenchFailed as failure:
        console.print(f"[bold red]BENCHMARK FAILED:[/bold red] {failure}")
        return 1
    render(results, console)
    if "profile" in results:
        render_profile(results["profile"], console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"results written to {args.json}")
    if args.strict and not all(goal["met"] for goal in results["goals"]):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
