"""The coordinator's REST API: ``create_app(settings, runner)`` builds it; ``coordinator.server`` serves it.

Routes (every one authenticated, see ``coordinator.auth``; the job routes live in ``coordinator.job_routes``):

- GET  /catalog                  anyone: every node's datasets and offers, live
- GET  /agreements               anyone: the agreements their org is a party of
- POST /agreements               a party: register a signed agreement
- POST /jobs                     builder: submit a job for its org
- GET  /jobs, /jobs/{id}         builder (its org's jobs) or regulator (all)
- POST /jobs/{id}/cancel         builder of the job's org
- GET  /jobs/{id}/model          builder of the job's org, when every agreement allows export
- POST /queries/match            a consumer: its encrypted match query, to every node it names an agreement of
- GET  /jobs/{id}/valuation      a consumer or builder of the job's org: what an encrypted valuation needs
- POST /jobs/{id}/valuations     the same: encrypted features in, the model's encrypted value out

At start-up (the lifespan) every queued or running job whose run is gone is marked interrupted with why.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.agreements import Agreement
from coordinator.agreements import AgreementRegistry, InvalidAgreement, NotAParty, RegisteredAgreement
from coordinator.auth import AgreementParty, Caller, CallerAuthenticator, QuerySender, authenticated_caller
from coordinator.catalog import FederatedCatalog, FederatedCatalogView
from coordinator.events import EventSink, JsonlEventLog, audited
from coordinator.job_routes import Problem, Services, Shared, job_router
from coordinator.jobs import JobRunner, JobStore, recover_jobs
from coordinator.match_fanout import MatchFanOut, MatchQueryRequest, MatchQueryResult, UnroutableQuery
from coordinator.settings import CoordinatorSettings, SettingsError
from coordinator.valuation_budget import ValuationBudget
from coordinator.valuation_routes import VALUATE_ACTION, valuation_router
from coordinator.valuation_service import ValuationService

log = logging.getLogger(__name__)
API_VERSION = "1"
# Audited routes whose body FastAPI validates before the route runs: a malformed submission is on record too.
# Keyed by the route's path template, so a route with a path parameter is found whatever the id.
_AUDITED_BODIES = {("POST", "/jobs"): "job.submit", ("POST", "/jobs/{job_id}/valuations"): VALUATE_ACTION}


def create_app(
    settings: CoordinatorSettings, runner: JobRunner, *, events: EventSink | None = None
) -> FastAPI:
    """The coordinator app over ``settings.database``; ``runner`` starts, cancels and watches job runs.

    Raises SettingsError if the settings' identity is unusable or not a coordinator's.
    """
    identity = settings.load_identity()
    store = JobStore(settings.database, settings.models_dir)
    registry = AgreementRegistry(settings.database, identity.ca_cert_pem)
    shared = Services(
        store=store,
        registry=registry,
        catalog=FederatedCatalog(
            settings.nodes, identity, settings.read_token, timeout_s=settings.node_timeout_s
        ),
        runner=runner,
        events=events or JsonlEventLog(settings.events_file),
        matcher=MatchFanOut(settings.nodes, identity, settings.read_token, registry),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for job in recover_jobs(store, runner):
            log.warning("job %s marked interrupted: %s", job.job_id, job.reason)
        yield

    app = FastAPI(
        title="ipspace coordinator",
        version=API_VERSION,
        lifespan=lifespan,
        dependencies=[Depends(authenticated_caller)],  # the choke point: no route is unauthenticated
        # The Swagger and ReDoc pages load scripts from a CDN; the schema itself stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.authenticator = CallerAuthenticator(identity.ca_cert_pem)
    app.state.events = shared.events
    app.state.services = shared
    app.state.valuations = ValuationService(store, registry, ValuationBudget(settings.database))
    app.include_router(router)
    app.include_router(job_router)
    app.include_router(valuation_router)
    app.add_exception_handler(RequestValidationError, _record_malformed_submission)
    return app


_REFUSALS = {
    401: {"model": Problem, "description": "no valid token bound to the client certificate"},
    403: {"model": Problem, "description": "the caller's role (or org) may not do this"},
}


router = APIRouter()


@router.get("/catalog", response_model=FederatedCatalogView, responses={**_REFUSALS, 503: {"model": Problem}})
def read_catalog(_caller: Caller, shared: Shared) -> FederatedCatalogView:
    """Every configured node's datasets (statistics and synthetic mock rows) and offers, fetched live."""
    try:
        return shared.catalog.fetch()
    except SettingsError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None


@router.get("/agreements", response_model=list[RegisteredAgreement], responses=_REFUSALS)
def list_agreements(caller: Caller, shared: Shared) -> list[RegisteredAgreement]:
    """The registered agreements the caller's org is a party of."""
    return shared.registry.for_org(caller.org)


@router.post(
    "/agreements",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisteredAgreement,
    responses={**_REFUSALS, 200: {"model": RegisteredAgreement}, 400: {"model": Problem}},
)
def register_agreement(
    agreement: Agreement, caller: AgreementParty, shared: Shared, response: Response
) -> RegisteredAgreement:
    """Register a signed agreement (201; 200 if it was already registered). Only its parties may."""
    try:
        entry, created = shared.registry.register(agreement, caller)
    except NotAParty as refused:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refused.reason) from None
    except InvalidAgreement as invalid:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=invalid.reason) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    return entry


@router.post(
    "/queries/match",
    response_model=MatchQueryResult,
    responses={**_REFUSALS, 400: {"model": Problem}},
    tags=["queries"],
)
def match_query(request: MatchQueryRequest, caller: QuerySender, shared: Shared) -> MatchQueryResult:
    """Forward an encrypted match query to the node of each agreement it carries a grant for; every node's
    encrypted answer, or its refusal, comes back. The coordinator holds no key that decrypts either."""
    target = ",".join(sorted(request.grants))
    with audited(shared.events, caller, "query.match", target):
        try:
            return shared.matcher.send(caller, request)
        except UnroutableQuery as unroutable:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(unroutable)) from None


async def _record_malformed_submission(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, after recording it when the route is audited and the caller is known."""
    route = request.scope.get("route")
    action = _AUDITED_BODIES.get((request.method, getattr(route, "path", request.url.path)))
    caller = getattr(request.state, "caller", None)
    if action is not None and caller is not None:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        await run_in_threadpool(  # the sink writes and syncs a file: not on the event loop
            request.app.state.events.record,
            actor=caller,
            action=action,
            target=request.url.path,
            outcome="refused",
            status=status.HTTP_422_UNPROCESSABLE_CONTENT,
            reason=f"malformed request: {problems}",
        )
    return await request_validation_exception_handler(request, error)
