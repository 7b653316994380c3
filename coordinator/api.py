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
- GET  /jobs/{id}/provenance     builder of the job's org or regulator: the model's signed provenance
- GET  /audit/log/...            regulator: the coordinator's own signed log (``own_log_routes``)
- /audit/heads, /audit/alerts    nodes push signed tree heads; regulators read them (``gossip_routes``)
- /audit/status, sync, entries, usage   regulator: every log verified and indexed (``audit_routes``)
- GET  /me                       anyone: whose token this is (the dashboard's view)
- /dashboard/                    the dashboard's static page: TLS client certificate only, no data in it

Every call that changes state (and every model download) is recorded in the coordinator's own signed log,
allowed or refused (``coordinator.own_log``); a call whose record cannot be written fails with 503.
At start-up (the lifespan) every queued or running job whose run is gone is marked interrupted with why;
at shutdown the own log signs a closing head.
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

from audit import AuditWriteError
from contracts.agreements import Agreement
from coordinator.agreements import AgreementRegistry, InvalidAgreement, NotAParty, RegisteredAgreement
from coordinator.audit_routes import install_audit_index
from coordinator.auth import (
    AgreementParty,
    AuthenticateFirst,
    Caller,
    CallerAuthenticator,
    QuerySender,
    authenticated_caller,
)
from coordinator.catalog import FederatedCatalog, FederatedCatalogView
from coordinator.dashboard import install_dashboard
from coordinator.events import audited, joined_ids
from coordinator.gossip_routes import install_gossip
from coordinator.job_routes import UNRECORDED, Problem, Services, Shared, job_router
from coordinator.jobs import JobRunner, JobStore, recover_jobs
from coordinator.match_fanout import MatchFanOut, MatchQueryRequest, MatchQueryResult, UnroutableQuery
from coordinator.own_log import CoordinatorLog
from coordinator.own_log_routes import own_log_router
from coordinator.provenance_routes import install_provenance
from coordinator.response_headers import NoStoreByDefault
from coordinator.settings import CoordinatorSettings, SettingsError
from coordinator.valuation_budget import ValuationBudget
from coordinator.valuation_routes import VALUATE_ACTION, valuation_router
from coordinator.valuation_service import ValuationService
from crypto import Identity

log = logging.getLogger(__name__)
API_VERSION = "1"
OPEN_PREFIXES = ("/dashboard/",)  # the dashboard's page: static, no data; TLS still demands a member's cert
# Audited routes whose body FastAPI validates before the route runs: a malformed request is on record too.
# Keyed by the route's path template, so a route with a path parameter is found whatever the id.
_AUDITED_BODIES = {
    ("POST", "/agreements"): "agreement.register",
    ("POST", "/jobs"): "job.submit",
    ("POST", "/queries/match"): "query.match",
    ("POST", "/jobs/{job_id}/valuations"): VALUATE_ACTION,
}
AUDIT_UNAVAILABLE = (
    "the coordinator's audit log is unavailable: this call could not be recorded, so it is not answered "
    "(a job it would have started is withdrawn); try again later"
)


def create_app(settings: CoordinatorSettings, runner: JobRunner) -> FastAPI:
    """The coordinator app over ``settings.database``; ``runner`` starts, cancels and watches job runs.

    Opens the coordinator's own log at ``settings.own_log_file``; the app's lifespan closes it at shutdown
    (an app that is never served must close ``app.state.own_log`` itself). Raises SettingsError if the
    settings' identity is unusable or not a coordinator's, and audit.AuditCorrupted if the own log's file
    contradicts its own signed heads (an entry edited while the coordinator was down).
    """
    identity = settings.load_identity()
    store = JobStore(settings.database, settings.models_dir)
    registry = AgreementRegistry(settings.database, identity.ca_cert_pem)
    own_log = CoordinatorLog(settings.own_log_file, identity)
    try:
        return _assemble(settings, runner, identity=identity, store=store, registry=registry, own_log=own_log)
    except BaseException:
        own_log.close()
        raise


def _assemble(
    settings: CoordinatorSettings,
    runner: JobRunner,
    *,
    identity: Identity,
    store: JobStore,
    registry: AgreementRegistry,
    own_log: CoordinatorLog,
) -> FastAPI:
    shared = Services(
        store=store,
        registry=registry,
        catalog=FederatedCatalog(
            settings.nodes, identity, settings.read_token, timeout_s=settings.node_timeout_s
        ),
        runner=runner,
        events=own_log,
        matcher=MatchFanOut(settings.nodes, identity, settings.read_token, registry),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            for job in recover_jobs(store, runner):
                log.warning("job %s marked interrupted: %s", job.job_id, job.reason)
            audit_sync.start()
            yield
        finally:
            await run_in_threadpool(audit_sync.stop)
            try:
                await run_in_threadpool(own_log.close)  # signs a closing head: a write and an fsync
            except AuditWriteError:
                log.exception("the coordinator's own log did not close cleanly")

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
    app.add_middleware(AuthenticateFirst, authenticator=app.state.authenticator, open_prefixes=OPEN_PREFIXES)
    app.add_middleware(NoStoreByDefault)  # outermost: a 401 from the authentication step gets it too
    app.state.events = shared.events
    app.state.own_log = own_log
    app.state.services = shared
    app.state.valuations = ValuationService(store, registry, ValuationBudget(settings.database))
    app.include_router(router)
    app.include_router(job_router)
    app.include_router(valuation_router)
    app.include_router(own_log_router)
    install_gossip(app, settings, identity)
    install_provenance(app, settings, identity)
    audit_sync = install_audit_index(app, settings, identity)
    install_dashboard(app)
    app.add_exception_handler(RequestValidationError, _record_malformed_submission)
    app.add_exception_handler(AuditWriteError, _audit_unavailable)
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
    responses={**_REFUSALS, 200: {"model": RegisteredAgreement}, 400: {"model": Problem}, **UNRECORDED},
)
def register_agreement(
    agreement: Agreement, caller: AgreementParty, shared: Shared, response: Response
) -> RegisteredAgreement:
    """Register a signed agreement (201; 200 if it was already registered). Only its parties may."""
    agreement_id = agreement.agreement_id
    with audited(shared.events, caller, "agreement.register", agreement_id) as outcome:
        terms = agreement.terms
        outcome.about(dataset=terms.dataset, purpose=terms.purpose, agreement_ids=[agreement_id])
        try:
            entry, created = shared.registry.register(agreement, caller)
        except NotAParty as refused:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refused.reason) from None
        except InvalidAgreement as invalid:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=invalid.reason) from None
        outcome.status = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        outcome.reason = "registered" if created else "already registered"
    response.status_code = outcome.status
    return entry


@router.post(
    "/queries/match",
    response_model=MatchQueryResult,
    responses={**_REFUSALS, 400: {"model": Problem}, **UNRECORDED},
    tags=["queries"],
)
def match_query(request: MatchQueryRequest, caller: QuerySender, shared: Shared) -> MatchQueryResult:
    """Forward an encrypted match query to the node of each agreement it carries a grant for; every node's
    encrypted answer, or its refusal, comes back. The coordinator holds no key that decrypts either."""
    target = joined_ids(request.grants)
    with audited(shared.events, caller, "query.match", target) as outcome:
        outcome.agreement_id = target
        try:
            result = shared.matcher.send(caller, request)
        except UnroutableQuery as unroutable:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(unroutable)) from None
        refused = sum(1 for answer in result.results if answer.error is not None)
        outcome.reason = f"forwarded to {len(result.results)} nodes; {refused} refused"
    return result


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
        try:
            await run_in_threadpool(  # the sink writes and syncs a file: not on the event loop
                request.app.state.events.record,
                actor=caller,
                action=action,
                target=request.url.path,
                outcome="refused",
                status=status.HTTP_422_UNPROCESSABLE_CONTENT,
                reason=f"malformed request: {problems}",
            )
        except AuditWriteError as failed:
            return await _audit_unavailable(request, failed)
    return await request_validation_exception_handler(request, error)


async def _audit_unavailable(_request: Request, error: Exception) -> JSONResponse:
    """503 with a fixed reason when the own log fails: no call is answered that it could not record."""
    log.error("the coordinator's own log failed: %s", error)
    return JSONResponse({"detail": AUDIT_UNAVAILABLE}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
