"""The client SDK for a node's contracts: what a consumer, a model builder, a provider, a regulator or the
coordinator calls. It lives beside the contracts it speaks, so that the CLI and the coordinator can both use
it without importing each other.

A :class:`NodeClient` holds one mTLS channel to one node, authenticated by the caller's identity and its
CA-issued token. Refusals arrive as :class:`NodeRefused` carrying the gRPC status and the node's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from contracts.agreements import Agreement, propose
from contracts.job_grants import load_job_grant
from contracts.offers import Offer, offer_digest
from contracts.terms import AgreementTerms
from contracts.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    matching_pb2,
    matching_pb2_grpc,
    negotiation_pb2,
    negotiation_pb2_grpc,
    reveal_pb2,
    reveal_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)
from crypto import Identity, channel_credentials

DEFAULT_TIMEOUT_S = 30.0


class NodeRefused(Exception):
    """A node refused or failed a call; ``status`` is the gRPC status, ``reason`` the node's words."""

    def __init__(self, status: grpc.StatusCode, reason: str) -> None:
        super().__init__(f"{status.name}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RequestStatus:
    request_id: str
    state: str  # pending | approved | rejected
    reason: str
    agreement: Agreement | None
    consumer_org: str = ""
    offer_id: str = ""
    purpose: str = ""


_STATE_NAMES = {
    negotiation_pb2.AGREEMENT_REQUEST_STATE_PENDING: "pending",
    negotiation_pb2.AGREEMENT_REQUEST_STATE_APPROVED: "approved",
    negotiation_pb2.AGREEMENT_REQUEST_STATE_REJECTED: "rejected",
}


def _request_status(message: negotiation_pb2.AgreementRequestStatus) -> RequestStatus:
    agreement = Agreement.model_validate_json(message.agreement_json) if message.agreement_json else None
    return RequestStatus(
        message.request_id,
        _STATE_NAMES.get(message.state, "unknown"),
        message.reason,
        agreement,
        message.consumer_org,
        message.offer_id,
        message.purpose,
    )


class NodeClient:
    def __init__(
        self,
        address: str,
        identity: Identity,
        token: str,
        *,
        server_name: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        self._channel = grpc.secure_channel(address, channel_credentials(identity), options=options)
        self._identity = identity
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout_s
        self.catalog = catalog_pb2_grpc.CatalogStub(self._channel)
        self.negotiation = negotiation_pb2_grpc.NegotiationStub(self._channel)
        self.reveal_stub = reveal_pb2_grpc.RevealStub(self._channel)
        self.audit = audit_pb2_grpc.AuditStub(self._channel)
        self.training = training_pb2_grpc.TrainingStub(self._channel)
        self.matching = matching_pb2_grpc.MatchingStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def wait_until_ready(self, timeout_s: float) -> None:
        """Connect now (TLS handshake included), so that the next call's time is the call's alone."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def call(self, method: Any, request: Any) -> Any:
        """Invoke one stub method with this client's token; turns gRPC errors into NodeRefused."""
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            raise NodeRefused(error.code(), error.details() or "") from None

    # --- catalog -----------------------------------------------------------------------------------------

    def list_datasets(self) -> catalog_pb2.ListDatasetsResponse:
        return self.call(self.catalog.ListDatasets, catalog_pb2.ListDatasetsRequest())

    def describe(self, dataset: str) -> dict[str, Any]:
        response = self.call(
            self.catalog.DescribeDataset, catalog_pb2.DescribeDatasetRequest(dataset=dataset)
        )
        return MessageToDict(response, preserving_proto_field_name=True)

    def offers(self, dataset: str = "") -> list[Offer]:
        response = self.call(self.negotiation.ListOffers, negotiation_pb2.ListOffersRequest(dataset=dataset))
        return [Offer.model_validate_json(offer.offer_json) for offer in response.offers]

    def offer(self, offer_id: str) -> Offer:
        """One offer of the node by its id; raises ValueError naming it when the node has none."""
        for offer in self.offers():
            if offer.offer_id == offer_id:
                return offer
        raise ValueError(f"the node has no offer {offer_id!r}")

    # --- negotiation -------------------------------------------------------------------------------------

    def request_agreement(
        self,
        offer: Offer,
        purpose: str,
        *,
        valid_for: timedelta | None = timedelta(days=90),
        now: datetime | None = None,
    ) -> RequestStatus:
        """Sign a proposal for ``offer`` and ``purpose`` with this client's identity and send it."""
        now = now or datetime.now(UTC)
        principal = self._identity.principal()
        expires = now + valid_for if valid_for else None
        if offer.constraints.expires_at is not None:
            expires = min(expires, offer.constraints.expires_at) if expires else offer.constraints.expires_at
        terms = AgreementTerms(
            offer_id=offer.offer_id,
            offer_digest=offer_digest(offer),
            provider_org=offer.provider_org,
            consumer_org=principal.org,
            consumer_name=principal.name,
            dataset=offer.dataset,
            actions=offer.actions,
            constraints=offer.constraints,
            purpose=purpose,
            created_at=now,
            expires_at=expires,
        )
        proposal = propose(terms, self._identity)
        request = negotiation_pb2.RequestAgreementRequest(proposal_json=proposal.model_dump_json().encode())
        return _request_status(self.call(self.negotiation.RequestAgreement, request))

    def request_status(self, request_id: str) -> RequestStatus:
        request = negotiation_pb2.GetAgreementRequestRequest(request_id=request_id)
        return _request_status(self.call(self.negotiation.GetAgreementRequest, request))

    def pending_requests(self) -> list[RequestStatus]:
        response = self.call(
            self.negotiation.ListAgreementRequests, negotiation_pb2.ListAgreementRequestsRequest()
        )
        return [_request_status(message) for message in response.requests]

    def decide_request(self, request_id: str, *, approve: bool, reason: str = "") -> RequestStatus:
        request = negotiation_pb2.DecideAgreementRequestRequest(
            request_id=request_id, approve=approve, reason=reason
        )
        return _request_status(self.call(self.negotiation.DecideAgreementRequest, request))

    def revoke(self, revocation_json: bytes) -> str:
        request = negotiation_pb2.RevokeAgreementRequest(revocation_json=revocation_json)
        return self.call(self.negotiation.RevokeAgreement, request).revoked_at

    # --- reveal ------------------------------------------------------------------------------------------

    def reveal(
        self, agreement: Agreement, record_ids: Sequence[str], fields: Sequence[str]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        request = reveal_pb2.RevealRequest(
            agreement_id=agreement.agreement_id,
            dataset=agreement.terms.dataset,
            purpose=agreement.terms.purpose,
            record_ids=list(record_ids),
            fields=list(fields),
        )
        response = self.call(self.reveal_stub.Reveal, request)
        return [MessageToDict(record) for record in response.records], list(response.missing_ids)

    # --- training (the node's own Flower runner calls these) ---------------------------------------------

    def train(
        self, grant_json: str, weights: bytes, *, round_number: int, cohort_size: int
    ) -> training_pb2.TrainResponse:
        """One local training round for the job the grant names, from the global `weights` (wire bytes)."""
        grant = load_job_grant(grant_json).body
        request = training_pb2.TrainRequest(
            agreement_id=grant.agreement_id,
            dataset=grant.dataset,
            purpose=grant.purpose,
            job_grant_json=grant_json,
            round=round_number,
            cohort_size=cohort_size,
            weights=weights,
        )
        return self.call(self.training.Train, request)

    def evaluate(self, grant_json: str, weights: bytes) -> training_pb2.EvaluateResponse:
        grant = load_job_grant(grant_json).body
        request = training_pb2.EvaluateRequest(
            agreement_id=grant.agreement_id,
            dataset=grant.dataset,
            purpose=grant.purpose,
            job_grant_json=grant_json,
            weights=weights,
        )
        return self.call(self.training.Evaluate, request)

    # --- matching ----------------------------------------------------------------------------------------

    def match(
        self,
        agreement: Agreement,
        *,
        parameters: matching_pb2.CkksParameters,
        evaluation_keys: bytes,
        query: bytes,
        projection: bytes,
        query_grant_json: str,
    ) -> matching_pb2.MatchResponse:
        """Encrypted scores of every record the agreement covers (models/matching/encrypted_scores.py builds
        the query and reads the answer; only the holder of the secret key can). The grant is the consumer's
        signature over this query (contracts/query_grants.py)."""
        request = matching_pb2.MatchRequest(
            agreement_id=agreement.agreement_id,
            dataset=agreement.terms.dataset,
            purpose=agreement.terms.purpose,
            parameters=parameters,
            evaluation_keys=evaluation_keys,
            query=query,
            projection=projection,
            query_grant_json=query_grant_json,
        )
        return self.call(self.matching.Match, request)

    # --- audit -------------------------------------------------------------------------------------------

    def tree_head(self, *, fresh: bool = False) -> audit_pb2.SignedTreeHead:
        return self.call(self.audit.GetTreeHead, audit_pb2.GetTreeHeadRequest(fresh=fresh))

    def entries(self, start: int, end: int, *, page: int = 5000) -> list[bytes]:
        leaves: list[bytes] = []
        for page_start in range(start, end, page):
            request = audit_pb2.GetEntriesRequest(start=page_start, end=min(end, page_start + page))
            leaves.extend(self.call(self.audit.GetEntries, request).leaves)
        return leaves

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        request = audit_pb2.GetInclusionProofRequest(index=index, tree_size=tree_size)
        return list(self.call(self.audit.GetInclusionProof, request).hashes)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        request = audit_pb2.GetConsistencyProofRequest(first=first, second=second)
        return list(self.call(self.audit.GetConsistencyProof, request).hashes)
