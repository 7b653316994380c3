"""The job routes: submit, list, status, cancel, model download.

A builder sees and acts on its own org's jobs only; a regulator reads every job but downloads no model. A
job of another org answers 404 exactly like a job that does not exist, so ids of other orgs' jobs cannot be
probed. Submissions, cancels and downloads are recorded in the coordinator's own log (the app's event
sink), refused ones too, with the job's dataset, purpose and agreements once the job is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from coordinator.admission import export_refusal, job_refusals
from coordinator.agreements import AgreementRegistry
from coordinator.auth import JobCanceller, JobReader, JobSubmitter, ModelDownloader
from coordinator.catalog import FederatedCatalog
from coordinator.events import EventSink, Outcome, audited
from coordinator.job_spec import (
    JobCreated,
    JobRecord,
    JobSpec,
    JobState,
    JobStatus,
    JobSubmission,
    JobSummary,
)
from coordinator.jobs import InvalidTransition, JobExists, JobRunner, JobStore, UnknownJob
from coordinator.match_fanout import MatchFanOut
from crypto import Principal, Role

MODEL_MEDIA_TYPE = "application/octet-stream"


class Problem(BaseModel):
    """Every refusal: ``detail`` says why, for a person."""

    detail: str


@dataclass(frozen=True)
class Services:
    """What the routes work with, built once by `create_app`."""

    store: JobStore
    registry: AgreementRegistry
    catalog: FederatedCatalog
    runner: JobRunner
    events: EventSink
    matcher: MatchFanOut


def services(request: Request) -> Services:
    return request.app.state.services


Shared = Annotated[Services, Depends(services)]
# Every recorded route may answer this (coordinator.api's handler of audit.AuditWriteError).
UNRECORDED: dict[int | str, dict[str, object]] = {
    503: {"model": Problem, "description": "the coordinator's audit log could not record the call"}
}
_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "no valid token bound to the client certificate"},
    403: {"model": Problem, "description": "the caller's role may not do this"},
    404: {"model": Problem, "description": "no such job among those the caller may see"},
}
job_router = APIRouter(prefix="/jobs", tags=["jobs"])


@job_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    responses={**_REFUSALS, 400: {"model": Problem}, 409: {"model": Problem}, **UNRECORDED},
)
def submit_job(submission: JobSubmission, caller: JobSubmitter, shared: Shared) -> JobCreated:
    """Admit a job for the caller's org and hand it to the runner. 400 lists every reason it cannot run."""
    with audited(shared.events, caller, "job.submit", submission.job_id) as outcome:
        _about(outcome, submission)
        problems = job_refusals(submission, caller.org, shared.registry, now=datetime.now(UTC))
        if problems:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "the job cannot be admitted: " + "; ".join(problems)
            )
        try:
            record = shared.store.create(
                job_id=submission.job_id,
                org=caller.org,
                submitted_by=caller.name,
                spec=submission.spec(),
                grants=submission.grants,
            )
        except JobExists as exists:
            raise HTTPException(status.HTTP_409_CONFLICT, exists.reason) from None
        _start(shared, record.job_id)
        outcome.status = status.HTTP_201_CREATED
        outcome.undo = lambda: _withdraw(shared, record.job_id)  # no job runs that the log does not hold
    return JobCreated(job_id=record.job_id, state=record.state, status_path=f"/jobs/{record.job_id}")


@job_router.get("", response_model=list[JobSummary], responses=_REFUSALS)
def list_jobs(caller: JobReader, shared: Shared) -> list[JobSummary]:
    """A builder's org's jobs; every job for a regulator. Oldest first."""
    org = None if caller.role == Role.REGULATOR else caller.org
    return [JobSummary.of(record) for record in shared.store.list_jobs(org=org)]


@job_router.get("/{job_id}", response_model=JobStatus, responses=_REFUSALS)
def job_status(job_id: str, caller: JobReader, shared: Shared) -> JobStatus:
    """State, per-round metrics and the ε each node reported spent."""
    return JobStatus.of(_visible_job(shared, caller, job_id))


@job_router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobStatus,
    responses={**_REFUSALS, 409: {"model": Problem}, **UNRECORDED},
)
def cancel_job(job_id: str, caller: JobCanceller, shared: Shared) -> JobStatus:
    """A queued job is cancelled at once; a running one stops at its next round boundary. 409 if it ended."""
    with audited(shared.events, caller, "job.cancel", job_id) as outcome:
        _about(outcome, _visible_job(shared, caller, job_id).spec)
        try:
            record = shared.store.cancel(job_id, reason=f"cancelled by {caller.org}/{caller.name}")
        except InvalidTransition as ended:
            raise HTTPException(status.HTTP_409_CONFLICT, ended.reason) from None
        shared.runner.cancel(job_id)
        outcome.status = status.HTTP_202_ACCEPTED
        outcome.reason = (
            "cancelled" if record.state == JobState.CANCELLED else "cancel requested; stops after this round"
        )
    return JobStatus.of(record)


@job_router.get(
    "/{job_id}/model",
    response_class=FileResponse,
    responses={
        200: {
            "content": {MODEL_MEDIA_TYPE: {}},
            "description": "the final weights: .npz of float32 arrays arr_0, arr_1, ... in wire-format order",
        },
        **_REFUSALS,
        409: {"model": Problem, "description": "the job has no final model (yet)"},
        **UNRECORDED,
    },
)
def download_model(job_id: str, caller: ModelDownloader, shared: Shared) -> FileResponse:
    """The final model, only when every agreement of the job allows export (else 403 with the reason)."""
    with audited(shared.events, caller, "model.download", job_id) as outcome:
        record = _visible_job(shared, caller, job_id)
        _about(outcome, record.spec)
        refusal = export_refusal(record.spec.agreements, shared.registry)
        if refusal is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, refusal)
        path = shared.store.model_path(record)
        if record.state != JobState.SUCCEEDED or path is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"job {job_id!r} has no final model: it is {record.state.value}"
            )
    return FileResponse(
        path,
        media_type=MODEL_MEDIA_TYPE,
        filename=f"{job_id}.npz",
        headers={"X-Model-SHA256": record.model_sha256 or ""},
    )


def _visible_job(shared: Services, caller: Principal, job_id: str) -> JobRecord:
    """The job if the caller may see it (a regulator: any; others: their org's); else 404, same words."""
    try:
        record = shared.store.get(job_id)
    except UnknownJob:
        record = None
    if record is None or (caller.role != Role.REGULATOR and record.org != caller.org):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} among the jobs you may see")
    return record


def _about(outcome: Outcome, spec: JobSpec) -> None:
    outcome.about(dataset=spec.dataset, purpose=spec.purpose, agreement_ids=spec.agreements)


def _withdraw(shared: Services, job_id: str) -> None:
    """Cancel a job just started whose submission could not be recorded (a queued one ends at once)."""
    try:
        shared.store.cancel(job_id, reason="withdrawn: the coordinator's audit log could not record it")
    except InvalidTransition:
        return  # it ended already
    shared.runner.cancel(job_id)


def _start(shared: Services, job_id: str) -> None:
    """Hand the job to the runner; if that fails the job is marked failed, never left queued for nobody."""
    try:
        shared.runner.start(job_id)
    except Exception as error:
        shared.store.set_state(
            job_id, JobState.FAILED, f"the job runner could not start it ({type(error).__name__})"
        )
        raise
