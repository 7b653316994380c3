"""Tree-head gossip over REST: nodes push their signed heads, regulators read them, report what they saw at a
node, and ask the coordinator to pull fresh heads now.

- POST /audit/heads           a provider node: its own latest head (and the consistency proof asked for)
- POST /audit/heads/observed  a regulator: a head it fetched from a node itself, judged the same way
- POST /audit/heads/collect   a regulator: the coordinator pulls a fresh head from every node it knows, now
- GET  /audit/heads           a regulator: each node's latest kept head, how many are kept, open alerts
- GET  /audit/heads/{node}    a regulator: every head kept of one node
- GET  /audit/alerts          a regulator: every alert, with both signed heads as evidence

A posted head is answered 201 (kept), 200 (known), 428 (a consistency proof between two named sizes decides:
post again with it) or 409 (it contradicts a kept head: the alert's id is in the answer). The three POSTs are
recorded in the coordinator's own log.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit import SignedTreeHead
from audit.gossip import ConsistencyEvidence, Verdict
from coordinator.auth import require_roles
from coordinator.events import audited
from coordinator.head_collect import collect_heads
from coordinator.head_gossip import HeadAlert, HeadGossip, HeadRefused, KeptHead, NotTheSigner, Receipt
from coordinator.job_routes import UNRECORDED, Problem, Shared
from coordinator.settings import CoordinatorSettings
from crypto import Identity, Principal, Role

_MAX_TREE_SIZE = 2**53 - 1
_MAX_PROOF_HASHES = 128  # a consistency proof between trees of up to 2**63 leaves has fewer
_HEX32 = re.compile(r"[0-9a-f]{64}")

HeadPusher = Annotated[Principal, Depends(require_roles(Role.PROVIDER, audit_action="audit.head.push"))]
HeadObserver = Annotated[
    Principal, Depends(require_roles(Role.REGULATOR, audit_action="audit.head.observed"))
]
HeadCollector = Annotated[
    Principal, Depends(require_roles(Role.REGULATOR, audit_action="audit.head.collect"))
]
HeadReader = Annotated[Principal, Depends(require_roles(Role.REGULATOR))]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TreeHeadBody(_Body):
    """A node's signed tree head, as ``audit.SignedTreeHead.to_dict()`` writes it."""

    node: str = Field(min_length=1, max_length=64)
    tree_size: int = Field(ge=0, le=_MAX_TREE_SIZE)
    root_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    timestamp: str = Field(max_length=40)
    signature: str = Field(max_length=200, description="base64 Ed25519 signature")
    certificate_pem: str = Field(max_length=8192, description="the node's signing certificate")

    @classmethod
    def of(cls, head: SignedTreeHead) -> TreeHeadBody:
        return cls(**head.to_dict())

    def head(self) -> SignedTreeHead:
        return SignedTreeHead(**self.model_dump())


class ConsistencyBody(_Body):
    first: int = Field(ge=0, le=_MAX_TREE_SIZE)
    second: int = Field(ge=0, le=_MAX_TREE_SIZE)
    proof: list[str] = Field(max_length=_MAX_PROOF_HASHES, description="hex SHA-256 hashes, RFC 9162")

    @field_validator("proof")
    @classmethod
    def _hex_hashes(cls, proof: list[str]) -> list[str]:
        for position, value in enumerate(proof):
            if not _HEX32.fullmatch(value):
                raise ValueError(f"proof hash #{position} is not 64 lowercase hex digits")
        return proof

    def evidence(self) -> ConsistencyEvidence:
        return ConsistencyEvidence(self.first, self.second, tuple(bytes.fromhex(h) for h in self.proof))


class HeadReport(_Body):
    """A head, and the consistency proof a 428 asked for (omit it the first time)."""

    head: TreeHeadBody
    consistency: ConsistencyBody | None = None


class ProofNeeded(_Body):
    first: int
    second: int


class HeadReceipt(_Body):
    """The verdict on a posted head. ``detail`` says why, for a person."""

    node: str
    tree_size: int
    verdict: Verdict
    detail: str
    alert_id: int | None = None
    proof_needed: ProofNeeded | None = None

    @classmethod
    def of(cls, receipt: Receipt) -> HeadReceipt:
        needed = receipt.judgement.proof_needed
        return cls(
            node=receipt.node,
            tree_size=receipt.tree_size,
            verdict=receipt.judgement.verdict,
            detail=receipt.judgement.reason,
            alert_id=receipt.alert_id,
            proof_needed=ProofNeeded(first=needed[0], second=needed[1]) if needed else None,
        )


class KeptHeadView(_Body):
    head: TreeHeadBody
    source: str
    received_at: str

    @classmethod
    def of(cls, kept: KeptHead) -> KeptHeadView:
        return cls(head=TreeHeadBody.of(kept.head), source=kept.source, received_at=kept.received_at)


class NodeHeadsView(_Body):
    node: str
    heads: int
    latest: KeptHeadView | None
    alerts: int


class AlertView(_Body):
    alert_id: int
    node: str
    kind: Verdict
    detail: str
    head: TreeHeadBody
    conflicting: TreeHeadBody
    proof: list[str] | None
    source: str
    raised_at: str

    @classmethod
    def of(cls, alert: HeadAlert) -> AlertView:
        return cls(
            alert_id=alert.alert_id,
            node=alert.node,
            kind=Verdict(alert.kind),
            detail=alert.reason,
            head=TreeHeadBody.of(alert.head),
            conflicting=TreeHeadBody.of(alert.conflicting),
            proof=alert.proof,
            source=alert.source,
            raised_at=alert.raised_at,
        )


class CollectedHead(_Body):
    """One node's answer to a pull: a receipt, or why no head came back."""

    node: str
    receipt: HeadReceipt | None = None
    error: str | None = None


def install_gossip(app: FastAPI, settings: CoordinatorSettings, identity: Identity) -> None:
    """Keep heads in the coordinator's database and serve the gossip routes."""
    app.state.gossip = HeadGossip(settings.database, identity.ca_cert_pem)
    app.state.gossip_pull = (settings, identity)
    app.include_router(gossip_router)


def _gossip(request: Request) -> HeadGossip:
    return request.app.state.gossip


Gossip = Annotated[HeadGossip, Depends(_gossip)]
_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "no valid token bound to the client certificate"},
    403: {"model": Problem, "description": "the caller's role may not do this"},
}
_POSTED = {
    **_REFUSALS,
    **UNRECORDED,
    200: {"model": HeadReceipt, "description": "the head was kept before"},
    201: {"model": HeadReceipt, "description": "the head is consistent and now kept"},
    400: {"model": Problem, "description": "the head does not verify against the data space's CA"},
    409: {"model": HeadReceipt, "description": "the head contradicts a kept one: an alert was raised"},
    428: {"model": HeadReceipt, "description": "post again with a consistency proof between the sizes named"},
}
_STATUS = {
    Verdict.KNOWN: status.HTTP_200_OK,
    Verdict.CONSISTENT: status.HTTP_201_CREATED,
    Verdict.NEEDS_PROOF: status.HTTP_428_PRECONDITION_REQUIRED,
    Verdict.EQUIVOCATION: status.HTTP_409_CONFLICT,
    Verdict.ROLLBACK: status.HTTP_409_CONFLICT,
    Verdict.FORK: status.HTTP_409_CONFLICT,
}
gossip_router = APIRouter(prefix="/audit", tags=["audit"])


@gossip_router.post("/heads", response_model=HeadReceipt, status_code=201, responses=_POSTED)
def push_head(report: HeadReport, caller: HeadPusher, shared: Shared, gossip: Gossip) -> JSONResponse:
    """A node's own latest signed tree head."""
    return _receive(
        report, caller, shared, gossip, action="audit.head.push", source=f"pushed by {caller.name}"
    )


@gossip_router.post("/heads/observed", response_model=HeadReceipt, status_code=201, responses=_POSTED)
def report_observed_head(
    report: HeadReport, caller: HeadObserver, shared: Shared, gossip: Gossip
) -> JSONResponse:
    """A head the regulator fetched from a node itself: judged against the heads the coordinator kept, so a
    node that shows the regulator another log than the coordinator raises an alert."""
    source = f"observed by {caller.org}/{caller.name}"
    return _receive(report, caller, shared, gossip, action="audit.head.observed", source=source, own=False)


@gossip_router.post(
    "/heads/collect", response_model=list[CollectedHead], responses={**_REFUSALS, **UNRECORDED}
)
def collect(request: Request, caller: HeadCollector, shared: Shared, gossip: Gossip) -> list[CollectedHead]:
    """Pull a fresh signed head from every node the coordinator knows, now, and judge each."""
    settings, identity = request.app.state.gossip_pull
    with audited(shared.events, caller, "audit.head.collect", "all nodes") as outcome:
        results = collect_heads(gossip, settings, identity)
        outcome.reason = "; ".join(f"{node}: {text}" for node, text in _collect_summary(results))
    return [
        CollectedHead(
            node=node,
            receipt=HeadReceipt.of(result) if isinstance(result, Receipt) else None,
            error=result if isinstance(result, str) else None,
        )
        for node, result in results
    ]


@gossip_router.get("/heads", response_model=list[NodeHeadsView], responses=_REFUSALS)
def list_heads(_caller: HeadReader, gossip: Gossip) -> list[NodeHeadsView]:
    """Each node's latest kept head, how many heads are kept and how many alerts it raised."""
    views = []
    for node in gossip.nodes():
        kept = gossip.kept(node)
        views.append(
            NodeHeadsView(
                node=node,
                heads=len(kept),
                latest=KeptHeadView.of(kept[-1]) if kept else None,
                alerts=len(gossip.alerts(node)),
            )
        )
    return views


@gossip_router.get(
    "/heads/{node}",
    response_model=list[KeptHeadView],
    responses={**_REFUSALS, 404: {"model": Problem, "description": "no head of this node is kept"}},
)
def node_heads(node: str, _caller: HeadReader, gossip: Gossip) -> list[KeptHeadView]:
    """Every head kept of ``node``, by increasing size."""
    kept = gossip.kept(node)
    if not kept:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no tree head of node {node!r} is kept")
    return [KeptHeadView.of(item) for item in kept]


@gossip_router.get("/alerts", response_model=list[AlertView], responses=_REFUSALS)
def list_alerts(_caller: HeadReader, gossip: Gossip) -> list[AlertView]:
    """Every alert raised by a contradicting head, oldest first."""
    return [AlertView.of(alert) for alert in gossip.alerts()]


def _receive(
    report: HeadReport,
    caller: Principal,
    shared: Shared,
    gossip: HeadGossip,
    *,
    action: str,
    source: str,
    own: bool = True,
) -> JSONResponse:
    head = report.head.head()
    evidence = report.consistency.evidence() if report.consistency is not None else None
    with audited(shared.events, caller, action, head.node) as outcome:
        try:
            receipt = gossip.receive(head, evidence, source=source, sender=caller if own else None)
        except NotTheSigner as refused:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refused.reason) from None
        except HeadRefused as refused:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=refused.reason) from None
        answer = HeadReceipt.of(receipt)
        outcome.status = _STATUS[receipt.judgement.verdict]
        outcome.reason = f"size {head.tree_size}: {answer.verdict.value}: {answer.detail}"
    return JSONResponse(answer.model_dump(mode="json"), status_code=outcome.status)


def _collect_summary(results: list[tuple[str, Receipt | str]]) -> list[tuple[str, str]]:
    return [
        (node, result.judgement.verdict.value if isinstance(result, Receipt) else "unreachable")
        for node, result in results
    ]
