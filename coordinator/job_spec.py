"""What a job is, in three shapes kept apart: the input a builder sends, the record the store keeps, and the
views the API answers with.

The views are built field by field from the record (`JobSummary.of`, `JobStatus.of`), never by dumping it,
so an internal field (the consumers' signed grants, the model's file on disk) cannot reach a response by
being added to the record.
"""

from __future__ import annotations

import math
import secrets
from enum import StrEnum
from typing import Annotated, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from contracts.fields import Digest, FrozenModel, Name, UtcDatetime, distinct
from contracts.job_grants import MAX_ROUNDS, JobId, TaskName, TrainingSettings, default_settings

MAX_AGREEMENTS = 64
MAX_GRANT_CHARS = 64 * 1024

GrantText = Annotated[str, Field(min_length=2, max_length=MAX_GRANT_CHARS, description="a JobGrant's JSON")]
Epsilon = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]  # as a JobGrant allows


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


def new_job_id() -> str:
    """A fresh job id for a client to sign its grants with (e.g. ``job-3f9c2a61d0b47e15``)."""
    return f"job-{secrets.token_hex(8)}"


# --- input -------------------------------------------------------------------------------------------------


class JobSpec(FrozenModel):
    """A job spec (the JSON file of ``ipspace job submit SPEC``); ``epsilon`` must be given, null: no DP.
    Without ``model`` the task's default settings apply (`contracts.job_grants.default_settings`)."""

    task: TaskName
    dataset: Name
    purpose: Name
    agreements: Annotated[
        tuple[Digest, ...], Field(min_length=1, max_length=MAX_AGREEMENTS), AfterValidator(distinct)
    ]
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    epsilon: Epsilon | None = Field(description="the most the job may spend per node; null: no DP")
    model: TrainingSettings = TrainingSettings()
    secagg: bool = True

    @model_validator(mode="before")
    @classmethod
    def _task_settings(cls, data: object) -> object:
        # Filled in before validation, so a matching job without settings does not get the valuation ones.
        if isinstance(data, dict) and data.get("model") is None and data.get("task") in get_args(TaskName):
            return {**data, "model": default_settings(data["task"])}
        return data


class JobSubmission(JobSpec):
    """The body of POST /jobs: a spec, the job id the grants were signed for, and one grant per agreement."""

    job_id: JobId = Field(description="chosen by the client, since the grants it signs name it")
    grants: dict[Digest, GrantText] = Field(description="agreement id -> the consumer's signed JobGrant JSON")

    def spec(self) -> JobSpec:
        return JobSpec.model_validate(self.model_dump(exclude={"job_id", "grants"}))


# --- stored record -----------------------------------------------------------------------------------------


def _finite_values(values: dict[str, float]) -> dict[str, float]:
    bad = sorted(key for key, value in values.items() if not math.isfinite(value))
    if bad:
        raise ValueError(f"values must be finite numbers; {', '.join(bad)} is not")
    return values


FiniteMap = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=128)], float], AfterValidator(_finite_values)
]


class RoundRecord(FrozenModel):
    round: int = Field(ge=1, le=MAX_ROUNDS)
    metrics: FiniteMap
    epsilon_by_node: FiniteMap
    recorded_at: UtcDatetime


class JobRecord(FrozenModel):
    """A job as the store keeps it. Internal: never returned by the API as such."""

    job_id: str
    org: str
    submitted_by: str
    spec: JobSpec
    grants: dict[str, str]
    state: JobState
    reason: str
    cancel_requested: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime
    rounds: tuple[RoundRecord, ...] = ()
    model_file: str | None = None
    model_sha256: str | None = None

    @property
    def rounds_completed(self) -> int:
        return len(self.rounds)


# --- views -------------------------------------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoundView(_View):
    round: int
    metrics: dict[str, float]
    epsilon_by_node: dict[str, float] = Field(description="each node's ε spent on its agreement so far")
    recorded_at: UtcDatetime


class JobSummary(_View):
    job_id: str
    org: str
    submitted_by: str
    task: str
    dataset: str
    purpose: str
    state: JobState
    reason: str
    rounds_planned: int
    rounds_completed: int
    cancel_requested: bool
    model_available: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, record: JobRecord) -> JobSummary:
        return cls(**_summary_fields(record))


class JobStatus(JobSummary):
    spec: JobSpec
    rounds: list[RoundView]
    epsilon_spent_by_node: dict[str, float] = Field(description="latest ε each node reported spent")
    model_sha256: str | None

    @classmethod
    def of(cls, record: JobRecord) -> JobStatus:
        rounds = [
            RoundView(
                round=r.round,
                metrics=dict(r.metrics),
                epsilon_by_node=dict(r.epsilon_by_node),
                recorded_at=r.recorded_at,
            )
            for r in record.rounds
        ]
        spent: dict[str, float] = {}
        for past in record.rounds:  # in round order, so each node keeps its latest report
            spent.update(past.epsilon_by_node)
        return cls(
            **_summary_fields(record),
            spec=record.spec,
            rounds=rounds,
            epsilon_spent_by_node=spent,
            model_sha256=record.model_sha256,
        )


class JobCreated(_View):
    job_id: str
    state: JobState
    status_path: str


def _summary_fields(record: JobRecord) -> dict[str, object]:
    return {
        "job_id": record.job_id,
        "org": record.org,
        "submitted_by": record.submitted_by,
        "task": record.spec.task,
        "dataset": record.spec.dataset,
        "purpose": record.spec.purpose,
        "state": record.state,
        "reason": record.reason,
        "rounds_planned": record.spec.rounds,
        "rounds_completed": record.rounds_completed,
        "cancel_requested": record.cancel_requested,
        "model_available": record.model_file is not None,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
