"""Negotiation: offers, proposals countersigned or held for the provider, decisions, revocations."""

from __future__ import annotations

import grpc

from contracts.v1 import negotiation_pb2, negotiation_pb2_grpc
from node.gate import current_grant
from node.grants import AdminGrant, CatalogGrant, HandlerError, NegotiationGrant, RevokeGrant, require
from node.handlers.catalog import offer_message
from node.state import AgreementRequestRecord

State = negotiation_pb2.AgreementRequestState
_STATES = {
    "pending": State.AGREEMENT_REQUEST_STATE_PENDING,
    "approved": State.AGREEMENT_REQUEST_STATE_APPROVED,
    "rejected": State.AGREEMENT_REQUEST_STATE_REJECTED,
}


def _status(
    record: AgreementRequestRecord, agreement_json: bytes = b""
) -> negotiation_pb2.AgreementRequestStatus:
    return negotiation_pb2.AgreementRequestStatus(
        request_id=record.request_id,
        state=_STATES[record.state],
        agreement_id=record.agreement_id or "",
        agreement_json=agreement_json,
        reason=record.reason,
        consumer_org=record.consumer_org,
        offer_id=record.offer_id,
        purpose=record.purpose,
    )


class NegotiationHandler(negotiation_pb2_grpc.NegotiationServicer):
    def ListOffers(self, request, context):
        grant = require(current_grant(), CatalogGrant)
        return negotiation_pb2.ListOffersResponse(offers=[offer_message(o) for o in grant.offers()])

    def RequestAgreement(self, request, context):
        grant = require(current_grant(), NegotiationGrant)
        proposal = grant.facts.proposal
        terms = proposal.terms
        common = {
            "request_id": proposal.agreement_id,
            "consumer_org": terms.consumer_org,
            "offer_id": terms.offer_id,
            "purpose": terms.purpose,
        }
        existing = grant.request()
        if existing is not None:  # a proposal sent twice gets the same answer, not a second request
            agreement = grant.agreement(existing.request_id)
            return _status(existing, agreement.model_dump_json().encode() if agreement else b"")
        if grant.manual_approval:
            grant.hold_for_approval(proposal)
            return negotiation_pb2.AgreementRequestStatus(
                **common,
                state=State.AGREEMENT_REQUEST_STATE_PENDING,
                reason="the offer requires the provider's approval; ask again for this request's state",
            )
        agreement = grant.countersign_and_store(proposal)
        return negotiation_pb2.AgreementRequestStatus(
            **common,
            state=State.AGREEMENT_REQUEST_STATE_APPROVED,
            agreement_id=agreement.agreement_id,
            agreement_json=agreement.model_dump_json().encode(),
            reason=grant.decision.reason,
        )

    def GetAgreementRequest(self, request, context):
        grant = require(current_grant(), NegotiationGrant)
        record = grant.request()
        if record is None:  # the decision already refused unknown requests; a vanished one is a bug
            raise HandlerError(grpc.StatusCode.NOT_FOUND, f"no agreement request {request.request_id}")
        agreement = grant.agreement(record.request_id) if record.state == "approved" else None
        return _status(record, agreement.model_dump_json().encode() if agreement else b"")

    def ListAgreementRequests(self, request, context):
        grant = require(current_grant(), AdminGrant)
        return negotiation_pb2.ListAgreementRequestsResponse(requests=[_status(r) for r in grant.pending()])

    def DecideAgreementRequest(self, request, context):
        grant = require(current_grant(), AdminGrant)
        record = grant.request()
        if record is None:
            raise HandlerError(grpc.StatusCode.NOT_FOUND, f"no agreement request {request.request_id}")
        if record.state != "pending":
            raise HandlerError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"agreement request {record.request_id} was already {record.state}",
            )
        reason = request.reason or (
            "approved by the provider" if request.approve else "rejected by the provider"
        )
        if request.approve:
            agreement = grant.approve(record, reason)
            return negotiation_pb2.AgreementRequestStatus(
                request_id=record.request_id,
                state=State.AGREEMENT_REQUEST_STATE_APPROVED,
                agreement_id=agreement.agreement_id,
                agreement_json=agreement.model_dump_json().encode(),
                reason=reason,
                consumer_org=record.consumer_org,
                offer_id=record.offer_id,
                purpose=record.purpose,
            )
        grant.reject(record, reason)
        return negotiation_pb2.AgreementRequestStatus(
            request_id=record.request_id,
            state=State.AGREEMENT_REQUEST_STATE_REJECTED,
            reason=reason,
            consumer_org=record.consumer_org,
            offer_id=record.offer_id,
            purpose=record.purpose,
        )

    def RevokeAgreement(self, request, context):
        grant = require(current_grant(), RevokeGrant)
        grant.revoke()
        revocation = grant.facts.revocation
        return negotiation_pb2.RevokeAgreementResponse(
            agreement_id=revocation.agreement_id, revoked_at=revocation.revoked_at.isoformat()
        )
