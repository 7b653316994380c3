"""The figures of one job configuration across its jobs: round times, the mean breakdown, once-per-job costs,
process costs, the floor set by Flower's fixed waits, and the goal."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench._fl_breakdown import FIXED_WAITS, SEGMENTS, SPAWN, STARTUP, JobTiming, RoundTiming, floor_per_round
from bench._fl_local import LocalCompute
from bench._fl_procs import KINDS

GOAL_PLAIN_S = 4.0
GOAL_SECAGG_S = 10.0


@dataclass(frozen=True)
class JobConfig:
    key: str
    label: str  # a column heading
    description: str
    secagg: bool
    poll_interval: float | None  # the ServerApp's reply poll; None: as shipped (deploy/flower_app)
    superexec_poll: float | None = (
        None  # FLWR_SUPEREXEC_TASK_POLL_INTERVAL for the SuperNodes; None: Flower's 1 s
    )

    @property
    def goal_s(self) -> float:
        return GOAL_SECAGG_S if self.secagg else GOAL_PLAIN_S


@dataclass
class ConfigResult:
    config: JobConfig
    jobs: list[JobTiming] = field(default_factory=list)
    round_cpu: list[dict[str, float]] = field(default_factory=list)  # per round: CPU seconds by kind

    @property
    def rounds(self) -> list[RoundTiming]:
        return [round_ for job in self.jobs for round_ in job.rounds]

    @property
    def round_seconds(self) -> list[float]:
        return [round_.seconds for round_ in self.rounds]

    @property
    def mean_round_s(self) -> float:
        return _mean(self.round_seconds)

    @property
    def exchanges_per_round(self) -> float:
        return _mean([len(round_.exchanges) for round_ in self.rounds])

    @property
    def floor_s(self) -> float:
        return floor_per_round(self.exchanges_per_round)

    @property
    def goal_met(self) -> bool:
        return self.mean_round_s <= self.config.goal_s

    def segments(self) -> dict[str, float]:
        """Mean seconds per round of each segment (they add up to the mean round time)."""
        per_round = [round_.segments() for round_ in self.rounds]
        return {name: _mean([segments[name] for segments in per_round]) for name in SEGMENTS}

    def fixed_wait_s(self) -> float:
        segments = self.segments()
        return sum(segments[name] for name in FIXED_WAITS)

    def process_per_message_s(self) -> float:
        segments = self.segments()
        return segments[SPAWN] + segments[STARTUP]

    def stage_seconds(self) -> dict[str, float]:
        """Mean seconds of each exchange, by stage (SecAgg+'s four, or plain's one)."""
        by_stage: dict[str, list[float]] = {}
        for round_ in self.rounds:
            for exchange in round_.exchanges:
                by_stage.setdefault(exchange.stage, []).append(exchange.seconds)
        return {stage: _mean(values) for stage, values in by_stage.items()}

    def cpu_floor_s(self, cores: int) -> float:
        """The wall time a round's CPU demand alone needs on `cores` cores, however it were scheduled."""
        return sum(self.cpu_per_round().values()) / cores

    def cpu_per_round(self) -> dict[str, float]:
        return {kind: _mean([used[kind] for used in self.round_cpu]) for kind in KINDS}

    def once_per_job(self) -> dict[str, float]:
        return {
            "serverapp_startup_s": _mean([job.serverapp_startup_s for job in self.jobs]),
            "start_run_s": _mean([job.run_created - job.submitted for job in self.jobs]),
            "serverapp_process_s": _mean([job.serverapp_started - job.run_created for job in self.jobs]),
            "first_push_s": _mean([job.first_push - job.serverapp_started for job in self.jobs]),
            "evaluation_s": _mean([job.evaluation.seconds for job in self.jobs if job.evaluation]),
            "serverapp_end_s": _mean([job.serverapp_finished - job.last_recorded for job in self.jobs]),
            "job_total_s": _mean([job.finished - job.submitted for job in self.jobs]),
        }

    def clientapp(self) -> dict[str, float]:
        startup = [value for job in self.jobs for value in job.clientapp_startup_s]
        cpu = [value for job in self.jobs for value in job.clientapp_cpu_s]
        return {
            "startup_s_median": _median(startup),
            "cpu_s_median": _median(cpu),
            "processes": float(len(startup)),
        }

    def as_json(self, local: LocalCompute) -> dict[str, Any]:
        return {
            "config": self.config.__dict__,
            "goal_s": self.config.goal_s,
            "round_seconds": self.round_seconds,
            "mean_round_s": self.mean_round_s,
            "exchanges_per_round": self.exchanges_per_round,
            "floor_s": self.floor_s,
            "goal_met": self.goal_met,
            "round_over_dp_step": self.mean_round_s / local.step_s,
            "round_over_train_call": self.mean_round_s / local.call_s,
            "segments_mean_s": self.segments(),
            "stage_seconds": self.stage_seconds(),
            "cpu_per_round_s": self.cpu_per_round(),
            "once_per_job": self.once_per_job(),
            "clientapp": self.clientapp(),
            "jobs": [_job_json(job) for job in self.jobs],
        }


def _job_json(job: JobTiming) -> dict[str, Any]:
    return {
        "serverapp_startup_s": job.serverapp_startup_s,
        "rounds": [
            {
                "round": round_.round,
                "seconds": round_.seconds,
                "exchanges": [
                    {
                        "stage": exchange.stage,
                        "seconds": exchange.seconds,
                        "last_node": exchange.last_node,
                        "replies": len(exchange.messages),
                        "segments": exchange.segments,
                    }
                    for exchange in round_.exchanges
                ],
            }
            for round_ in job.rounds
        ],
        "evaluation_s": job.evaluation.seconds if job.evaluation else None,
        "job_total_s": job.finished - job.submitted,
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
