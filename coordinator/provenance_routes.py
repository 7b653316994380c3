"""``GET /jobs/{job_id}/provenance``: a succeeded job's model provenance, signed by the coordinator.

Open to a builder of the job's org and to regulators; a job of another org answers 404 exactly like a job
that does not exist (as every job route does), and a job that has not succeeded answers 409. The document is
served exactly as it was kept, byte for byte what `coordinator.provenance.verify_provenance` checks.

`install_provenance` keeps the records in the coordinator's database, serves the route and, when the app's
job runner tells of succeeded jobs (`on_success`, the Flower runner does), issues each record as its job
succeeds. A job that succeeded while no runner was listening gets its record on the first request for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol, runtime_checkable

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status

from coordinator.auth import require_roles
from coordinator.job_routes import Problem, Shared
from coordinator.job_spec import JobState
from coordinator.jobs import UnknownJob
from coordinator.provenance import ProvenanceDocument, ProvenanceUnavailable
from coordinator.provenance_issuer import ProvenanceIssuer, ProvenanceStore
from coordinator.settings import CoordinatorSettings
from crypto import Identity, Principal, Role

MEDIA_TYPE = "application/json"

ProvenanceReader = Annotated[Principal, Depends(require_roles(Role.BUILDER, Role.REGULATOR))]


@runtime_checkable
class SuccessNotifier(Protocol):
    """A job runner that tells when a job succeeded (`coordinator.flower.runner.FlowerRunner`)."""

    def on_success(self, listener: Callable[[str], object]) -> Callable[[], None]: ...


def install_provenance(app: FastAPI, settings: CoordinatorSettings, identity: Identity) -> ProvenanceIssuer:
    """Keep provenance records in ``settings.database``, serve the route, and issue a record whenever the
    app's runner reports a succeeded job. Call it after ``app.state.services`` is set and the head gossip is
    installed (its kept heads judge the pulled ones). Installing twice returns the first issuer.
    """
    existing = getattr(app.state, "provenance", None)
    if isinstance(existing, ProvenanceIssuer):
        return existing
    services = app.state.services
    issuer = ProvenanceIssuer(
        jobs=services.store,
        registry=services.registry,
        records=ProvenanceStore(settings.database),
        gossip=app.state.gossip,
        identity=identity,
        nodes=settings.nodes,
        read_token=settings.read_token,
        timeout_s=settings.node_timeout_s,
        events=services.events,
    )
    app.state.provenance = issuer
    app.include_router(provenance_router)
    if isinstance(services.runner, SuccessNotifier):
        services.runner.on_success(issuer.issue)
    return issuer


def _issuer(request: Request) -> ProvenanceIssuer:
    return request.app.state.provenance


Issuer = Annotated[ProvenanceIssuer, Depends(_issuer)]
provenance_router = APIRouter(prefix="/jobs", tags=["jobs"])


@provenance_router.get(
    "/{job_id}/provenance",
    response_model=ProvenanceDocument,
    responses={
        401: {"model": Problem, "description": "no valid token bound to the client certificate"},
        403: {"model": Problem, "description": "the caller's role may not do this"},
        404: {"model": Problem, "description": "no such job among those the caller may see"},
        409: {"model": Problem, "description": "the job has not succeeded, so its model has no provenance"},
        503: {"model": Problem, "description": "the coordinator's audit log could not record the issue"},
    },
)
def read_provenance(job_id: str, caller: ProvenanceReader, shared: Shared, issuer: Issuer) -> Response:
    """The job's model provenance: the model's digest, the job spec, its agreements and each node's signed
    tree head at the end of training, signed by the coordinator. Verify it with
    ``ipspace model provenance verify``."""
    try:
        record = shared.store.get(job_id)
    except UnknownJob:
        record = None
    if record is None or (caller.role != Role.REGULATOR and record.org != caller.org):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} among the jobs you may see")
    if record.state != JobState.SUCCEEDED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id!r} has no model provenance: it is {record.state.value}"
        )
    text = issuer.records.get_json(job_id)
    if text is None:  # it succeeded while no runner listened: issue it now
        try:
            issuer.issue(job_id)
        except ProvenanceUnavailable as unavailable:
            raise HTTPException(status.HTTP_409_CONFLICT, unavailable.reason) from None
        text = issuer.records.get_json(job_id)
    return Response(text, media_type=MEDIA_TYPE)
