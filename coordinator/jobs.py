"""Job state in SQLite, shared by the API and the ServerApp process; its state machine; restart recovery.

States: queued -> running -> succeeded | failed | cancelled | interrupted (queued may also end in any of the
last three). A final state is final. Every change is one BEGIN IMMEDIATE transaction that re-reads the state
it changes, so two writers (the API cancelling, the ServerApp finishing) cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import TypeAdapter, ValidationError

from contracts.fields import describe_validation_error, utc_text
from contracts.job_grants import JobId
from coordinator.database import create_schema, reading, transaction
from coordinator.job_spec import ACTIVE_STATES, JobRecord, JobSpec, JobState, RoundRecord
from coordinator.model_files import check_weights, write_partial

_STATES = ", ".join(f"'{state.value}'" for state in JobState)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    grants_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({_STATES})),
    reason TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    model_file TEXT,
    model_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_org ON jobs (org, created_at);
CREATE TABLE IF NOT EXISTS rounds (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    round INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    epsilon_json TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (job_id, round)
);
"""

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
}
# A job that did not succeed must say why, so nobody has to guess from logs.
REASON_REQUIRED = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED})
_JOB_ID: TypeAdapter[str] = TypeAdapter(JobId)


class JobStoreError(Exception):
    """Base of the store's refusals; ``reason`` is written for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownJob(JobStoreError, LookupError):
    """No job has this id."""


class JobExists(JobStoreError):
    """A job with this id was already submitted."""


class InvalidTransition(JobStoreError):
    """The job's current state does not allow the change asked for."""


class InvalidRound(JobStoreError, ValueError):
    """A round report out of order, beyond the job's rounds, or with non-finite values."""


class JobRunner(Protocol):
    """What the coordinator needs from whatever runs jobs (the Flower runner)."""

    def start(self, job_id: str) -> None: ...

    def cancel(self, job_id: str) -> None: ...

    def is_alive(self, job_id: str) -> bool: ...


class JobStore:
    """Jobs and their rounds in the SQLite file at ``path``; saved models under ``models_dir``."""

    def __init__(self, path: Path, models_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.models_dir = Path(models_dir) if models_dir is not None else self.path.parent / "models"
        create_schema(self.path, SCHEMA)

    def create(
        self, *, job_id: str, org: str, submitted_by: str, spec: JobSpec, grants: Mapping[str, str]
    ) -> JobRecord:
        """Store a new queued job. Raises JobExists if the id is taken, ValueError for a malformed id."""
        try:
            _JOB_ID.validate_python(job_id)
        except ValidationError:
            raise ValueError(
                f"job id {job_id!r} is not allowed: use up to 128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            ) from None
        now = _now()
        try:
            with transaction(self.path) as db:
                db.execute(
                    "INSERT INTO jobs (job_id, org, submitted_by, spec_json, grants_json, state, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        org,
                        submitted_by,
                        spec.model_dump_json(),
                        json.dumps(dict(grants)),
                        JobState.QUEUED.value,
                        now,
                        now,
                    ),
                )
        except sqlite3.IntegrityError:
            raise JobExists(
                f"a job with the id {job_id!r} already exists; sign new grants for a new id"
            ) from None
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        """The job with its rounds; raises UnknownJob."""
        with reading(self.path) as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJob(f"no job {job_id!r}")
            rounds = db.execute("SELECT * FROM rounds WHERE job_id = ? ORDER BY round", (job_id,)).fetchall()
        return _record(row, rounds)

    def list_jobs(self, *, org: str | None = None) -> list[JobRecord]:
        """Every job (of ``org`` when given), oldest first."""
        with reading(self.path) as db:
            jobs = db.execute(
                "SELECT * FROM jobs WHERE ?1 IS NULL OR org = ?1 ORDER BY created_at, job_id", (org,)
            ).fetchall()
            rounds = db.execute(
                "SELECT rounds.* FROM rounds JOIN jobs USING (job_id) WHERE ?1 IS NULL OR org = ?1 "
                "ORDER BY job_id, round",
                (org,),
            ).fetchall()
        by_job: dict[str, list[sqlite3.Row]] = {}
        for row in rounds:
            by_job.setdefault(row["job_id"], []).append(row)
        return [_record(row, by_job.get(row["job_id"], [])) for row in jobs]

    def active_jobs(self) -> list[JobRecord]:
        return [job for job in self.list_jobs() if job.state in ACTIVE_STATES]

    def set_state(self, job_id: str, state: JobState | str, reason: str = "") -> JobRecord:
        """Move the job to ``state``.

        Raises UnknownJob, InvalidTransition when the current state does not lead to ``state`` (a final
        state leads nowhere; succeeded needs a saved model), ValueError for an unknown state or a missing
        reason for failed, cancelled or interrupted.
        """
        target = JobState(state)
        if target in REASON_REQUIRED and not reason.strip():
            raise ValueError(f"a job moved to {target.value} needs a reason")
        with transaction(self.path) as db:
            row = _row(db, job_id)
            current = JobState(row["state"])
            if target not in TRANSITIONS.get(current, frozenset()):
                raise InvalidTransition(f"job {job_id!r} is {current.value}; it cannot become {target.value}")
            if target == JobState.SUCCEEDED and row["model_file"] is None:
                raise InvalidTransition(f"job {job_id!r} cannot succeed before its model is saved")
            db.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE job_id = ?",
                (target.value, reason, _now(), job_id),
            )
        return self.get(job_id)

    def cancel(self, job_id: str, reason: str) -> JobRecord:
        """A queued job becomes cancelled at once; a running one is flagged for the runner to stop at its
        next round boundary. Raises UnknownJob, or InvalidTransition when the job already ended."""
        with transaction(self.path) as db:
            current = JobState(_row(db, job_id)["state"])
            if current == JobState.QUEUED:
                db.execute(
                    "UPDATE jobs SET state = ?, reason = ?, cancel_requested = 1, updated_at = ? "
                    "WHERE job_id = ?",
                    (JobState.CANCELLED.value, reason, _now(), job_id),
                )
            elif current == JobState.RUNNING:
                db.execute(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE job_id = ?", (_now(), job_id)
                )
            else:
                raise InvalidTransition(f"job {job_id!r} already ended ({current.value}); nothing to cancel")
        return self.get(job_id)

    def is_cancel_requested(self, job_id: str) -> bool:
        with reading(self.path) as db:
            return bool(_row(db, job_id)["cancel_requested"])

    def record_round(
        self, job_id: str, round: int, metrics: Mapping[str, float], epsilon_by_node: Mapping[str, float]
    ) -> None:
        """Append the metrics and per-node ε of a completed round.

        Rounds arrive in order (1, 2, ...) while the job runs, each once. Raises UnknownJob,
        InvalidTransition if the job is not running, InvalidRound for a round out of order or beyond the
        spec, or a non-finite value.
        """
        try:
            report = RoundRecord(
                round=round, metrics=dict(metrics), epsilon_by_node=dict(epsilon_by_node), recorded_at=_now()
            )
        except ValidationError as error:
            raise InvalidRound(
                f"round {round} of job {job_id!r}: {describe_validation_error(error)}"
            ) from None
        with transaction(self.path) as db:
            row = _row(db, job_id)
            if row["state"] != JobState.RUNNING.value:
                raise InvalidTransition(
                    f"job {job_id!r} is {row['state']}; only a running job records rounds"
                )
            done = db.execute("SELECT COUNT(*) FROM rounds WHERE job_id = ?", (job_id,)).fetchone()[0]
            planned = JobSpec.model_validate_json(row["spec_json"]).rounds
            if round != done + 1 or round > planned:
                raise InvalidRound(
                    f"job {job_id!r} has completed {done} of {planned} rounds; round {round} cannot come next"
                )
            db.execute(
                "INSERT INTO rounds (job_id, round, metrics_json, epsilon_json, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    job_id,
                    round,
                    json.dumps(report.metrics),
                    json.dumps(report.epsilon_by_node),
                    utc_text(report.recorded_at),
                ),
            )

    def save_model(self, job_id: str, weights: Sequence[np.ndarray]) -> Path:
        """Write the final weights (float32 arrays in wire-format order) as ``<job_id>.npz`` and record them.

        The file is written beside, then renamed into place (``coordinator.model_files``). Raises
        UnknownJob, InvalidTransition if the job is not running, ValueError for weights that are not finite
        float32 arrays.
        """
        check_weights(weights)
        self.get(job_id)  # UnknownJob before touching the disk
        path = self.models_dir / f"{job_id}.npz"
        partial, sha256 = write_partial(path, weights)
        with transaction(self.path) as db:
            if _row(db, job_id)["state"] != JobState.RUNNING.value:
                partial.unlink()
                raise InvalidTransition(f"job {job_id!r} is not running; its model can no longer change")
            partial.replace(path)
            db.execute(
                "UPDATE jobs SET model_file = ?, model_sha256 = ?, updated_at = ? WHERE job_id = ?",
                (path.name, sha256, _now(), job_id),
            )
        return path

    def model_path(self, record: JobRecord) -> Path | None:
        return self.models_dir / record.model_file if record.model_file else None


def recover_jobs(store: JobStore, runner: JobRunner) -> list[JobRecord]:
    """At coordinator start: every queued or running job whose run is gone becomes interrupted, with why.

    A job the runner still runs (``is_alive``) is left as it is. Returns the jobs marked interrupted.
    """
    interrupted = []
    for job in store.active_jobs():
        if runner.is_alive(job.job_id):
            continue
        done = job.rounds_completed
        progress = f"last completed round {done}" if done else "no round had completed"
        reason = f"the coordinator restarted while the job was {job.state.value}; {progress}"
        try:
            interrupted.append(store.set_state(job.job_id, JobState.INTERRUPTED, reason))
        except InvalidTransition:
            continue  # it ended on its own while we looked: its own final state stands
    return interrupted


def _row(db: sqlite3.Connection, job_id: str) -> sqlite3.Row:
    row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise UnknownJob(f"no job {job_id!r}")
    return row


def _record(row: sqlite3.Row, rounds: Sequence[sqlite3.Row]) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"],
        org=row["org"],
        submitted_by=row["submitted_by"],
        spec=JobSpec.model_validate_json(row["spec_json"]),
        grants=json.loads(row["grants_json"]),
        state=JobState(row["state"]),
        reason=row["reason"],
        cancel_requested=bool(row["cancel_requested"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        rounds=tuple(
            RoundRecord(
                round=r["round"],
                metrics=json.loads(r["metrics_json"]),
                epsilon_by_node=json.loads(r["epsilon_json"]),
                recorded_at=datetime.fromisoformat(r["recorded_at"]),
            )
            for r in rounds
        ),
        model_file=row["model_file"],
        model_sha256=row["model_sha256"],
    )


def _now() -> str:
    return utc_text(datetime.now(UTC))
