"""Where a federated round spends its time, on the project's real stack, beside the local compute it carries.

    .venv/bin/python -m bench.fl_rounds [--quick] [--json PATH] [--keep DIR] [--strict]

Three real nodes (each `NodeServer` in its own process), a SuperLink and three SuperNodes started by
`ipspace.flower_processes`, jobs submitted through the coordinator's `JobStore` and `FlowerRunner`, the tiny
valuation MLP with 5 local steps of batch 64. Jobs (interleaved, so that other load hits each alike):
- plain FedAvg, the ServerApp polling for replies every 0.1 s (as shipped);
- the same with a 3.0 s poll, what Flower's own `Grid.send_and_receive` does: what our poll buys;
- SecAgg+ with DP (epsilon 1 per job), as the demo runs it;
and in full mode, once each between the two blocks of jobs, plain and SecAgg+ again with the SuperNodes'
SuperExec claiming tasks every 0.1 s instead of 1 s (`FLWR_SUPEREXEC_TASK_POLL_INTERVAL`, a public Flower
setting the product could pass); the SuperNodes are restarted (by PID) for it and again after it.

Every figure is read from the outside: Flower's own timestamped logs (`FLWR_LOG_LEVEL=DEBUG`), the job
store's rounds, the nodes' audit entries, and /proc (process start times and CPU). The breakdown follows,
in each message exchange, the node that replied last. Full: 2 jobs x 3 rounds per configuration; --quick: 1
job x 2 rounds, no variant. Exit status 1 when a job fails or a check does not hold; 2 with --strict when a
goal is missed. Every process started is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from bench import BenchFailed
from bench._fl_breakdown import analyse
from bench._fl_evidence import gather, sampler_roots
from bench._fl_local import LocalCompute, measure
from bench._fl_procs import ProcessSampler, cpu_by_kind, still_running, supernode_component
from bench._fl_report import foreign_flower_processes, render
from bench._fl_space import DP_OFFER, OPEN_OFFER, FlSpace, federated_space
from bench._fl_summary import ConfigResult, JobConfig
from coordinator.job_spec import JobState

DP_JOB_EPSILON = 1.0
SUPEREXEC_POLL_VARIABLE = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
FAST_SUPEREXEC_POLL_S = 0.1
ROUND_TIMEOUT_S = 90.0  # per round, on top of JOB_TIMEOUT_S: a job that takes longer has failed

CONFIGS = (
    JobConfig("plain", "plain", "plain FedAvg, ServerApp poll 0.1 s (as shipped)", False, None),
    JobConfig("plain-poll3", "plain 3s", "the same with a 3.0 s poll (Flower's own Grid)", False, 3.0),
    JobConfig("secagg", "SecAgg+", "SecAgg+ with DP (epsilon 1), poll 0.1 s (as the demo)", True, None),
)
VARIANTS = (
    JobConfig(
        "plain-exec", "plain ex", "plain, SuperExec task poll 0.1 s", False, None, FAST_SUPEREXEC_POLL_S
    ),
    JobConfig(
        "secagg-exec", "SecAgg+ ex", "SecAgg+, SuperExec task poll 0.1 s", True, None, FAST_SUPEREXEC_POLL_S
    ),
)
JOB_TIMEOUT_S = 120.0


def run_job(
    space: FlSpace,
    sampler: ProcessSampler,
    config: JobConfig,
    result: ConfigResult,
    *,
    rounds: int,
    local: LocalCompute,
) -> None:
    """Submit one job of `config`, wait for it, and add its timing to `result`. Raises BenchFailed."""
    offer, epsilon = (DP_OFFER, DP_JOB_EPSILON) if config.secagg else (OPEN_OFFER, None)
    agreements = space.agreements(offer)
    job_id, submitted = space.submit(
        agreements, rounds=rounds, epsilon=epsilon, secagg=config.secagg, poll_interval=config.poll_interval
    )
    record = space.wait(job_id, JOB_TIMEOUT_S + rounds * ROUND_TIMEOUT_S)
    if record.state != JobState.SUCCEEDED:
        raise BenchFailed(f"{config.description} job {job_id} ended {record.state}: {record.reason}")
    evidence, decisions = gather(space, sampler, record, submitted=submitted, handler_s=local.train_call_s)
    expected = [*(["Train:allow"] * rounds), "Evaluate:allow"]
    for org, seen in decisions.items():
        if seen != expected:
            raise BenchFailed(f"{org}'s audit log holds {seen} for job {job_id}, expected {expected}")
    try:
        timing = analyse(evidence, secagg=config.secagg)
    except ValueError as error:
        raise BenchFailed(f"{config.description} job {job_id}: {error}") from None
    if [round_.round for round_ in timing.rounds] != list(range(1, rounds + 1)):
        raise BenchFailed(f"job {job_id}: the logs show rounds {[r.round for r in timing.rounds]}")
    for round_ in timing.rounds:
        for exchange in round_.exchanges:
            if len(exchange.messages) != len(space.nodes):
                raise BenchFailed(f"job {job_id} round {round_.round}: {len(exchange.messages)} replies")
        result.round_cpu.append(cpu_by_kind(evidence.traces, round_.start, round_.end))
    result.jobs.append(timing)


def _restart_supernodes(
    space: FlSpace, sampler: ProcessSampler, environment: dict[str, str], console: Console
) -> None:
    console.print(f"restarting the SuperNodes with {environment or 'Flower defaults'} ...")
    space.restart_supernodes(environment)
    for org, node in space.nodes.items():
        assert node.supernode is not None
        sampler.set_root(supernode_component(org), node.supernode.pid)


def run(args: argparse.Namespace, work: Path, console: Console) -> dict:
    rounds, jobs = (2, 1) if args.quick else (3, 2)
    results = {config.key: ConfigResult(config) for config in (*CONFIGS, *([] if args.quick else VARIANTS))}
    started = time.time()
    facts: dict = {
        "mode": "quick" if args.quick else "full",
        "rounds_per_job": rounds,
        "jobs_per_config": jobs,
        "nproc": len(os.sched_getaffinity(0)),
        "load_at_start": [round(value, 2) for value in os.getloadavg()],
        "foreign_flower_processes_at_start": foreign_flower_processes(),
    }
    with ExitStack() as stack:
        console.print("starting 3 nodes, a SuperLink and 3 SuperNodes ...")
        space = stack.enter_context(federated_space(work))
        sampler = stack.enter_context(ProcessSampler(sampler_roots(space)))
        console.print("measuring the local compute alone ...")
        local: LocalCompute = measure(space, space.agreements(OPEN_OFFER), repeats=3 if args.quick else 5)
        for number in range(jobs):
            for config in CONFIGS:
                console.print(f"job {number + 1}/{jobs}: {config.description}, {rounds} rounds ...")
                run_job(space, sampler, config, results[config.key], rounds=rounds, local=local)
            if number == 0 and not args.quick:  # between the two blocks, so that load drifts hit both
                _restart_supernodes(
                    space, sampler, {SUPEREXEC_POLL_VARIABLE: str(FAST_SUPEREXEC_POLL_S)}, console
                )
                for config in VARIANTS:
                    console.print(f"variant: {config.description}, {rounds} rounds ...")
                    run_job(space, sampler, config, results[config.key], rounds=rounds, local=local)
                _restart_supernodes(space, sampler, {}, console)
        facts["load_at_end"] = [round(value, 2) for value in os.getloadavg()]
    facts["foreign_flower_processes_at_end"] = foreign_flower_processes()  # ours are all stopped now
    left = still_running(sampler.traces())
    if left:
        raise BenchFailed(f"processes left running after the teardown: {[(t.pid, t.program) for t in left]}")
    facts["wall_s"] = time.time() - started
    return {"facts": facts, "local": local, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fl_rounds", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 job x 2 rounds per configuration, no variant")
    parser.add_argument("--json", type=Path, help="also write every figure (per round, per exchange) here")
    parser.add_argument("--keep", type=Path, help="run in this new directory and keep its logs")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a goal is missed")
    args = parser.parse_args(argv)
    console = Console(width=140)
    try:
        with ExitStack() as stack:
            if args.keep:
                args.keep.mkdir(parents=True)
                work = args.keep
            else:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fl-rounds-")))
            outcome = run(args, work, console)
    except BenchFailed as failed:
        console.print(f"[bold red]BENCHMARK FAILED:[/bold red] {failed}")
        return 1
    render(outcome, console)
    if args.json:
        args.json.write_text(json.dumps(_as_json(outcome), indent=2, default=float) + "\n")
    missed = [result for result in outcome["results"].values() if not result.goal_met]
    return 2 if args.strict and missed else 0


def _as_json(outcome: dict) -> dict:
    local: LocalCompute = outcome["local"]
    return {
        "facts": outcome["facts"],
        "local_compute": local.__dict__,
        "results": {key: result.as_json(local) for key, result in outcome["results"].items()},
    }


if __name__ == "__main__":
    sys.exit(main())
