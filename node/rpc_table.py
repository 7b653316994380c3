"""The gate's fail-closed table: every RPC a node serves, the action it asks for and how to read its request.

A method that is not in this table is refused by the gate; ``tests/node/test_rpc_table.py`` checks that the
table covers exactly the methods of the services in ``contracts/v1``. Health checking and server reflection
carry no data: they are listed apart, pass the TLS client-certificate check like every call, and are not
recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from google.protobuf.message import Message
from pydantic import ValidationError

from contracts.agreements import Agreement
from contracts.errors import ContractError
from contracts.job_grants import JobGrant, load_job_grant
from contracts.query_grants import QueryGrant, load_query_grant, match_query_digest
from contracts.revocations import Revocation
from contracts.v1 import audit_pb2, catalog_pb2, matching_pb2, negotiation_pb2, reveal_pb2, training_pb2


class GateAction(StrEnum):
    """What a call asks to do; the decision function takes it from here, never from the caller."""

    CATALOG_READ = "catalog.read"
    NEGOTIATE = "negotiate"  # propose an agreement or follow one's own proposal
    PROVIDER_ADMIN = "provider.admin"  # the provider deciding on its own node's requests
    REVOKE = "revoke"
    REVEAL = "reveal"
    TRAIN = "train"  # one local training step under a job grant
    EVALUATE = "train.evaluate"  # aggregate error on held-out rows, under the same grant
    MATCH = "match"  # encrypted scores of every record, for a query encrypted under the consumer's key
    AUDIT_HEAD = "audit.head"  # signed tree heads and consistency proofs between them are open to members
    AUDIT_READ = "audit.read"


class MalformedRequest(Exception):
    """The request parsed as protobuf but says something that cannot be acted on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RequestFacts:
    """What a request asks for, as the decision function needs to see it."""

    dataset: str | None = None
    agreement_id: str | None = None
    purpose: str | None = None
    fields: tuple[str, ...] = ()
    record_ids: tuple[str, ...] = ()
    request_id: str | None = None
    proposal: Agreement | None = None
    revocation: Revocation | None = None
    approve: bool | None = None
    job_grant: JobGrant | None = None
    round: int = 0
    cohort_size: int = 0
    query_grant: QueryGrant | None = None
    query_digest: str | None = None  # of the match query the request carries, for its grant to name


@dataclass(frozen=True)
class MethodRule:
    action: GateAction
    read: Callable[[Message], RequestFacts] = field(default=lambda _request: RequestFacts())
    max_request_bytes: int = 16 * 1024


KIB = 1024
MAX_RECORDS_PER_CALL = 1000


def _read_describe(request: catalog_pb2.DescribeDatasetRequest) -> RequestFacts:
    return RequestFacts(dataset=_name(request.dataset, "dataset"))


def _read_list_offers(request: negotiation_pb2.ListOffersRequest) -> RequestFacts:
    return RequestFacts(dataset=request.dataset or None)


def _read_proposal(request: negotiation_pb2.RequestAgreementRequest) -> RequestFacts:
    try:
        proposal = Agreement.model_validate_json(request.proposal_json)
    except ValidationError as error:
        raise MalformedRequest(f"proposal_json is not an agreement proposal: {_first_error(error)}") from None
    terms = proposal.terms
    return RequestFacts(
        dataset=terms.dataset, purpose=terms.purpose, proposal=proposal, request_id=proposal.agreement_id
    )


def _read_request_id(request: negotiation_pb2.GetAgreementRequestRequest) -> RequestFacts:
    return RequestFacts(request_id=_name(request.request_id, "request_id"))


def _read_decision(request: negotiation_pb2.DecideAgreementRequestRequest) -> RequestFacts:
    return RequestFacts(request_id=_name(request.request_id, "request_id"), approve=request.approve)


def _read_revocation(request: negotiation_pb2.RevokeAgreementRequest) -> RequestFacts:
    try:
        revocation = Revocation.model_validate_json(request.revocation_json)
    except ValidationError as error:
        raise MalformedRequest(f"revocation_json is not a revocation: {_first_error(error)}") from None
    return RequestFacts(agreement_id=revocation.agreement_id, revocation=revocation)


def _read_reveal(request: reveal_pb2.RevealRequest) -> RequestFacts:
    if not request.record_ids:
        raise MalformedRequest("record_ids is empty: name the records to reveal")
    if len(request.record_ids) > MAX_RECORDS_PER_CALL:
        raise MalformedRequest(
            f"{len(request.record_ids)} record ids in one call; at most {MAX_RECORDS_PER_CALL}"
        )
    if not request.fields:
        raise MalformedRequest("fields is empty: name the fields to reveal")
    if len(set(request.record_ids)) != len(request.record_ids):
        raise MalformedRequest("record_ids repeats an id")
    return RequestFacts(
        dataset=_name(request.dataset, "dataset"),
        agreement_id=_name(request.agreement_id, "agreement_id"),
        purpose=_name(request.purpose, "purpose"),
        fields=tuple(request.fields),
        record_ids=tuple(request.record_ids),
    )


def _read_grant(request: training_pb2.TrainRequest | training_pb2.EvaluateRequest) -> RequestFacts:
    try:
        grant = load_job_grant(_name(request.job_grant_json, "job_grant_json", limit=32 * KIB))
    except ContractError as error:
        raise MalformedRequest(f"job_grant_json: {error}") from None
    return RequestFacts(
        dataset=_name(request.dataset, "dataset"),
        agreement_id=_name(request.agreement_id, "agreement_id"),
        purpose=_name(request.purpose, "purpose"),
        job_grant=grant,
    )


def _read_train(request: training_pb2.TrainRequest) -> RequestFacts:
    facts = _read_grant(request)
    if not 1 <= request.round <= facts.job_grant.body.rounds:
        raise MalformedRequest(
            f"round {request.round} is outside the job's rounds 1..{facts.job_grant.body.rounds}"
        )
    if request.cohort_size < 1:
        raise MalformedRequest("cohort_size is 0: say how many nodes this round aggregates")
    return replace(facts, round=request.round, cohort_size=request.cohort_size)


def _read_match(request: matching_pb2.MatchRequest) -> RequestFacts:
    for what, value in (
        ("query", request.query),
        ("evaluation_keys", request.evaluation_keys),
        ("projection", request.projection),
    ):
        if not value:
            raise MalformedRequest(f"{what} is empty")
    if not request.HasField("parameters"):
        raise MalformedRequest("parameters is empty: name the CKKS parameters the query was encrypted with")
    try:
        grant = load_query_grant(_name(request.query_grant_json, "query_grant_json", limit=8 * KIB))
    except ContractError as error:
        raise MalformedRequest(f"query_grant_json: {error}") from None
    parameters = request.parameters
    digest = match_query_digest(
        (parameters.poly_modulus_degree, *parameters.coeff_modulus_bits, parameters.scale_bits),
        request.evaluation_keys,
        request.query,
        request.projection,
    )
    return RequestFacts(
        dataset=_name(request.dataset, "dataset"),
        agreement_id=_name(request.agreement_id, "agreement_id"),
        purpose=_name(request.purpose, "purpose"),
        query_grant=grant,
        query_digest=digest,
    )


def _read_range(request: audit_pb2.GetEntriesRequest) -> RequestFacts:
    if request.start < 0 or request.end < request.start:
        raise MalformedRequest(f"entry range [{request.start}, {request.end}) is not a range")
    return RequestFacts()


# The largest model's weights (the matching head: 128 x 384 float32, 192 KiB) and a grant (at most 32 KiB).
_TRAINING_LIMIT = 256 * KIB


def _name(value: str, what: str, *, limit: int = 256) -> str:
    if not value:
        raise MalformedRequest(f"{what} is empty")
    if len(value) > limit:
        raise MalformedRequest(f"{what} is {len(value)} characters long; at most {limit}")
    return value


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{location}: {first['msg']}"


RULES: dict[str, MethodRule] = {
    "/ipspace.v1.Catalog/ListDatasets": MethodRule(GateAction.CATALOG_READ),
    "/ipspace.v1.Catalog/DescribeDataset": MethodRule(GateAction.CATALOG_READ, _read_describe),
    "/ipspace.v1.Negotiation/ListOffers": MethodRule(GateAction.CATALOG_READ, _read_list_offers),
    "/ipspace.v1.Negotiation/RequestAgreement": MethodRule(GateAction.NEGOTIATE, _read_proposal, 64 * KIB),
    "/ipspace.v1.Negotiation/GetAgreementRequest": MethodRule(GateAction.NEGOTIATE, _read_request_id),
    "/ipspace.v1.Negotiation/ListAgreementRequests": MethodRule(GateAction.PROVIDER_ADMIN),
    "/ipspace.v1.Negotiation/DecideAgreementRequest": MethodRule(GateAction.PROVIDER_ADMIN, _read_decision),
    "/ipspace.v1.Negotiation/RevokeAgreement": MethodRule(GateAction.REVOKE, _read_revocation, 32 * KIB),
    "/ipspace.v1.Reveal/Reveal": MethodRule(GateAction.REVEAL, _read_reveal, 128 * KIB),
    "/ipspace.v1.Training/Train": MethodRule(GateAction.TRAIN, _read_train, _TRAINING_LIMIT),
    "/ipspace.v1.Training/Evaluate": MethodRule(GateAction.EVALUATE, _read_grant, _TRAINING_LIMIT),
    # Rotation keys (about 2 MB), the query ciphertext and the projection; under gRPC's 4 MiB ceiling.
    "/ipspace.v1.Matching/Match": MethodRule(GateAction.MATCH, _read_match, 3 * 1024 * KIB),
    "/ipspace.v1.Audit/GetTreeHead": MethodRule(GateAction.AUDIT_HEAD),
    "/ipspace.v1.Audit/GetEntries": MethodRule(GateAction.AUDIT_READ, _read_range),
    "/ipspace.v1.Audit/GetInclusionProof": MethodRule(GateAction.AUDIT_READ),
    # Hashes only, and what anyone who keeps heads needs to check two of them: open like the heads themselves.
    "/ipspace.v1.Audit/GetConsistencyProof": MethodRule(GateAction.AUDIT_HEAD),
}

# Carry no data; TLS client authentication still applies. Not recorded, so that probes do not flood the log.
INFRASTRUCTURE: frozenset[str] = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
