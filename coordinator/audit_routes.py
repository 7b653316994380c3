"""The regulator's read-only view of the data space's audit logs, over the coordinator's verified index.

- GET  /audit/status   every log (each node's, the coordinator's own): verified up to which head, or failed
                       at which first bad entry and why, or unreachable; with the alerts raised against it
- POST /audit/sync     index new entries of every log now (otherwise every ``audit_sync_interval_s``)
- GET  /audit/entries  who accessed what: filter by log, dataset, org, agreement, purpose, decision, method
                       and time; a denial carries its reason
- GET  /audit/usage    per agreement: epsilon spent, match queries and revealed records used, against the
                       agreement's limits, and its revocation

All regulator-only. ``POST /audit/sync`` changes only the index and is recorded in the coordinator's log.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict

from audit import AuditLog
from coordinator.audit_index import AuditIndex, EntryQuery, IndexedEntry, LogStatus, normal_time
from coordinator.audit_usage import AgreementUsage, agreement_usage
from coordinator.auth import require_roles
from coordinator.events import audited
from coordinator.gossip_routes import TreeHeadBody
from coordinator.head_gossip import HeadGossip
from coordinator.job_routes import UNRECORDED, Problem, Shared
from coordinator.settings import CoordinatorSettings
from crypto import Identity, Principal, Role

log = logging.getLogger(__name__)

AuditReader = Annotated[Principal, Depends(require_roles(Role.REGULATOR))]
AuditSyncer = Annotated[Principal, Depends(require_roles(Role.REGULATOR, audit_action="audit.sync"))]
MAX_PAGE = 500
_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$"


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogStatusView(_View):
    log: str
    kind: Literal["node", "coordinator"]
    state: Literal["verified", "failed", "unreachable"]
    verified_size: int
    head: TreeHeadBody | None
    first_bad_index: int | None
    reason: str
    checked_at: str
    alerts: int

    @classmethod
    def of(cls, status: LogStatus, alerts: int) -> LogStatusView:
        head = TreeHeadBody.of(status.head) if status.head is not None else None
        return cls(**{**status.__dict__, "head": head, "alerts": alerts})


class EntryView(_View):
    log: str
    index: int
    time: str
    actor: str
    org: str
    role: str
    method: str
    decision: str
    status: str
    reason: str
    dataset: str | None
    agreement_id: str | None
    purpose: str | None
    target: str | None
    charges: dict[str, int]

    @classmethod
    def of(cls, entry: IndexedEntry) -> EntryView:
        return cls(**entry.__dict__)


class EntryPage(_View):
    total: int
    offset: int
    entries: list[EntryView]


class UsageView(_View):
    """One agreement's use against its limits (a null limit: none set, or the agreement is unknown here)."""

    agreement_id: str
    provider_org: str | None
    consumer_org: str | None
    dataset: str | None
    purpose: str | None
    actions: list[str]
    epsilon_limit: float | None
    delta: float | None
    epsilon_spent: float | None
    training_rounds: int
    match_queries: int
    match_queries_limit: int | None
    match_queries_per_day_limit: int | None
    reveal_records: int
    reveal_records_limit: int | None
    allowed: int
    denied: int
    revoked_at: str | None

    @classmethod
    def of(cls, usage: AgreementUsage) -> UsageView:
        return cls(**usage.__dict__)


class BackgroundSync:
    """Syncs the index every ``interval_s`` seconds on its own thread, until stopped."""

    def __init__(self, app: FastAPI, interval_s: float) -> None:
        self._app = app
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                sync_now(self._app)
            except Exception:  # a failed sync is retried at the next tick; the API keeps serving
                log.exception("the audit index could not be synced")


def install_audit_index(app: FastAPI, settings: CoordinatorSettings, identity: Identity) -> BackgroundSync:
    """Keep the index in the coordinator's database and serve the regulator's routes; returns the background
    sync, which the app's lifespan starts and stops."""
    app.state.audit_index = AuditIndex(settings.database)
    app.state.audit_sync_config = (settings, identity)
    app.include_router(audit_router)
    return BackgroundSync(app, settings.audit_sync_interval_s)


def sync_now(app: FastAPI, *, full: bool = False) -> list[LogStatus]:
    settings, identity = app.state.audit_sync_config
    own: AuditLog | None = getattr(app.state.events, "log", None)
    return app.state.audit_index.sync_all(settings, identity, app.state.gossip, own, full=full)


def _index(request: Request) -> AuditIndex:
    return request.app.state.audit_index


def _gossip(request: Request) -> HeadGossip:
    return request.app.state.gossip


Index = Annotated[AuditIndex, Depends(_index)]
Gossip = Annotated[HeadGossip, Depends(_gossip)]
_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "no valid token bound to the client certificate"},
    403: {"model": Problem, "description": "only a regulator reads the data space's audit logs"},
}
audit_router = APIRouter(prefix="/audit", tags=["audit"])


@audit_router.get("/status", response_model=list[LogStatusView], responses=_REFUSALS)
def audit_status(_caller: AuditReader, index: Index, gossip: Gossip) -> list[LogStatusView]:
    """Every log's verification state at the last sync, with the alerts raised against it."""
    return _views(index.statuses(), gossip)


@audit_router.post("/sync", response_model=list[LogStatusView], responses={**_REFUSALS, **UNRECORDED})
def audit_sync(
    request: Request, caller: AuditSyncer, shared: Shared, gossip: Gossip, full: bool = False
) -> list[LogStatusView]:
    """Pull and verify every log's new entries now (with ``full``, every entry again, each of which must be
    the one indexed before); returns every log's state after it."""
    with audited(shared.events, caller, "audit.sync", "all logs, in full" if full else "all logs") as outcome:
        statuses = sync_now(request.app, full=full)
        failing = [status.log for status in statuses if status.state != "verified"]
        outcome.reason = f"not verified: {', '.join(failing)}" if failing else "every log verified"
    return _views(statuses, gossip)


@audit_router.get("/entries", response_model=EntryPage, responses={**_REFUSALS, 400: {"model": Problem}})
def audit_entries(  # noqa: PLR0917 - one query parameter per filter
    _caller: AuditReader,
    index: Index,
    log_name: Annotated[str | None, Query(alias="log", max_length=64)] = None,
    dataset: Annotated[str | None, Query(max_length=128)] = None,
    org: Annotated[str | None, Query(max_length=64)] = None,
    agreement: Annotated[str | None, Query(max_length=128)] = None,
    purpose: Annotated[str | None, Query(max_length=64)] = None,
    decision: Literal["allow", "deny"] | None = None,
    method: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query(pattern=_TIME, description="RFC 3339 UTC, inclusive")] = None,
    until: Annotated[str | None, Query(pattern=_TIME, description="RFC 3339 UTC, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> EntryPage:
    """Indexed entries matching every filter given, newest first."""
    bounds = [normal_time(value) if value is not None else None for value in (since, until)]
    if any(value is not None and bound is None for value, bound in zip((since, until), bounds, strict=True)):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="since and until must be RFC 3339 times")
    query = EntryQuery(log_name, dataset, org, agreement, purpose, decision, method, *bounds)
    total, entries = index.entries(query, limit=limit, offset=offset)
    return EntryPage(total=total, offset=offset, entries=[EntryView.of(entry) for entry in entries])


@audit_router.get("/usage", response_model=list[UsageView], responses=_REFUSALS)
def audit_usage(_caller: AuditReader, index: Index, shared: Shared) -> list[UsageView]:
    """Each agreement's epsilon, match queries and revealed records against its limits, and its revocation."""
    registered = [entry.agreement for entry in shared.registry.all()]
    return [UsageView.of(item) for item in agreement_usage(index.agreement_entries(), registered)]


def _views(statuses: list[LogStatus], gossip: HeadGossip) -> list[LogStatusView]:
    alerts: dict[str, int] = {}
    for alert in gossip.alerts():
        alerts[alert.node] = alerts.get(alert.node, 0) + 1
    return [LogStatusView.of(status, alerts.get(status.log, 0)) for status in statuses]
