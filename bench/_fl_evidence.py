"""Gather what one finished job left behind, from the outside: the runner's run id, the job store's rounds,
Flower's logs, the nodes' audit entries and the sampled processes. Nothing here asks the product for timings.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from audit import decode_leaf
from audit.store import connect, iter_entries
from bench import BenchFailed
from bench._fl_breakdown import JobEvidence, epoch
from bench._fl_procs import SUPERLINK_COMPONENT, ProcessSampler, gate_component, supernode_component
from bench._fl_space import RUNNER_DIR_PREFIX, FlSpace
from bench._fl_timeline import read_superlink_log, read_supernode_log
from coordinator.job_spec import JobRecord

RUNS_FILE = "flower-runs.json"  # where FlowerRunner keeps job id -> run id (coordinator/flower/runner.py)
LOG_SETTLE_S = 15.0  # the ServerApp reports its task finished a moment after it set the job's final state
NODE_CALLS = ("/Train", "/Evaluate")
ALL_ENTRIES = 2**62


def run_id_of(space: FlSpace, job_id: str) -> int:
    """The Flower run of `job_id`, as the runner that started it recorded it."""
    for runs_file in (space.root / "coordinator").glob(f"{RUNNER_DIR_PREFIX}*/{RUNS_FILE}"):
        runs = json.loads(runs_file.read_text())
        if job_id in runs:
            return int(runs[job_id])
    raise BenchFailed(f"no runner recorded a Flower run for job {job_id}")


def superlink_log(space: FlSpace) -> Path:
    return space.superlink.log_path


def wait_for_serverapp_end(space: FlSpace, run_id: int) -> None:
    """Wait until the SuperLink logged the end of the run's ServerApp, so the log holds the whole run."""
    deadline = time.monotonic() + LOG_SETTLE_S
    while time.monotonic() < deadline:
        if read_superlink_log(superlink_log(space)).run_window(run_id) is not None:
            return
        time.sleep(0.5)
    raise BenchFailed(f"the SuperLink log shows no end of run {run_id} within {LOG_SETTLE_S:.0f} s")


def node_calls(audit_db: Path, start: float, end: float) -> tuple[list[float], list[str]]:
    """When the node's Train/Evaluate entries between `start` and `end` were written, and their decisions."""
    moments, decisions = [], []
    connection = connect(audit_db, read_only=True)
    try:
        for _index, leaf, _hash in iter_entries(connection, 0, ALL_ENTRIES):
            _, entry = decode_leaf(leaf)
            if not entry.method.endswith(NODE_CALLS):
                continue
            moment = epoch(datetime.fromisoformat(entry.time))
            if start <= moment <= end:
                moments.append(moment)
                decisions.append(f"{entry.method.rsplit('/', 1)[-1]}:{entry.decision}")
    finally:
        connection.close()
    return moments, decisions


def gather(
    space: FlSpace,
    sampler: ProcessSampler,
    record: JobRecord,
    *,
    submitted: float,
    handler_s: dict[str, float],
) -> tuple[JobEvidence, dict[str, list[str]]]:
    """The evidence of a finished job, and each node's audited calls in its window (for the checks)."""
    run_id = run_id_of(space, record.job_id)
    wait_for_serverapp_end(space, run_id)
    finished = epoch(record.updated_at)
    messages = []
    for org, node in space.nodes.items():
        assert node.supernode is not None
        messages += [
            message
            for message in read_supernode_log(node.supernode.log_path, org)
            if message.run_id == run_id
        ]
    calls, decisions = {}, {}
    for org, node in space.nodes.items():
        calls[org], decisions[org] = node_calls(node.audit_db, submitted, finished)
    evidence = JobEvidence(
        run_id=run_id,
        submitted=submitted,
        finished=finished,
        recorded_at={round_.round: epoch(round_.recorded_at) for round_ in record.rounds},
        messages=messages,
        link=read_superlink_log(superlink_log(space)),
        node_calls=calls,
        handler_s=handler_s,
        traces=sampler.traces(),
        component_of={org: supernode_component(org) for org in space.nodes},
    )
    return evidence, decisions


def sampler_roots(space: FlSpace) -> dict[str, int]:
    roots = {SUPERLINK_COMPONENT: space.superlink.pid}
    for org, node in space.nodes.items():
        assert node.supernode is not None
        roots[supernode_component(org)] = node.supernode.pid
        roots[gate_component(org)] = node.server.pid
    return roots
