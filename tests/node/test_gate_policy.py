"""The decide step over real sockets: roles, agreements, purposes, fields and limits.

Every refusal must carry the right status and a reason a person understands, be recorded as a denial, and
return no data; every allowed call must return only what the agreement allows and be recorded with its charge.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from contracts.agreements import propose
from contracts.client import NodeRefused
from contracts.offers import Constraints, offer_digest
from contracts.revocations import revoke
from contracts.terms import AgreementTerms, terms_from_offer
from contracts.v1 import negotiation_pb2, reveal_pb2
from tests.node.conftest import PER_REQUEST, REVEAL_FIELDS, TOTAL, Space


def _refused(space: Space, member: str, call) -> NodeRefused:
    before = len(space.entries())
    with space.client(member) as client, pytest.raises(NodeRefused) as raised:
        call(client)
    entries = space.entries()
    assert len(entries) == before + 1, "a refusal must add exactly one entry"
    assert entries[-1]["decision"] == "deny"
    assert entries[-1]["reason"] == raised.value.reason
    assert entries[-1]["response_digest"] in (None, "")
    return raised.value


def test_allowed_reveal_returns_only_the_allowed_fields_and_is_charged(space: Space) -> None:
    agreement = space.agreement("alice")
    ids = space.record_ids[:3]
    with space.client("alice") as client:
        rows, missing = client.reveal(agreement, ids, ["title", "jurisdiction"])
    assert missing == []
    assert [row["publication_number"] for row in rows] == ids
    assert all(set(row) == {"publication_number", "title", "jurisdiction"} for row in rows)
    entry = space.entries()[-1]
    assert (entry["decision"], entry["status"], entry["charges"]) == ("allow", "OK", {"reveal.records": 3})
    assert entry["agreement_id"] == agreement.agreement_id and entry["response_digest"].startswith("sha256:")


def test_field_outside_the_offer_is_refused(space: Space) -> None:
    agreement = space.agreement("alice")
    refused = _refused(
        space, "alice", lambda c: c.reveal(agreement, space.record_ids[:1], ["title", "inventors"])
    )
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "'inventors'" in refused.reason and "title" in refused.reason


def test_reveal_over_the_per_request_limit_is_refused(space: Space) -> None:
    agreement = space.agreement("alice")
    refused = _refused(
        space, "alice", lambda c: c.reveal(agreement, space.record_ids[: PER_REQUEST + 1], ["title"])
    )
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert f"at most {PER_REQUEST} records per request" in refused.reason


def test_reveal_past_the_total_limit_is_exhausted_and_says_what_remains(space: Space) -> None:
    agreement = space.agreement("alice")
    ids = iter(space.record_ids[50:])
    with space.client("alice") as client:
        for _ in range(TOTAL // PER_REQUEST):
            client.reveal(agreement, [next(ids) for _ in range(PER_REQUEST)], ["title"])
    remaining = TOTAL % PER_REQUEST
    refused = _refused(
        space, "alice", lambda c: c.reveal(agreement, [next(ids) for _ in range(PER_REQUEST)], ["title"])
    )
    assert refused.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{remaining} of {TOTAL} records remain" in refused.reason


def test_unknown_agreement_is_refused(space: Space) -> None:
    agreement = space.agreement("alice")
    forged = agreement.model_copy(
        update={"terms": agreement.terms.model_copy(update={"purpose": "research2"})}
    )
    refused = _refused(space, "alice", lambda c: c.reveal(forged, space.record_ids[:1], ["title"]))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "no agreement" in refused.reason


def test_expired_agreement_is_refused(space: Space) -> None:
    agreement = space.agreement("alice", valid_for=timedelta(seconds=1))
    time.sleep(1.1)
    refused = _refused(space, "alice", lambda c: c.reveal(agreement, space.record_ids[:1], ["title"]))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "expired" in refused.reason


def test_revoked_agreement_is_refused_on_the_next_call(space: Space) -> None:
    agreement = space.agreement("alice")
    revocation = revoke(agreement.agreement_id, space.identity("alice"), "project ended")
    with space.client("alice") as client:
        client.revoke(revocation.model_dump_json().encode())
    refused = _refused(space, "alice", lambda c: c.reveal(agreement, space.record_ids[:1], ["title"]))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED and "revoked" in refused.reason
    again = _refused(space, "alice", lambda c: c.revoke(revocation.model_dump_json().encode()))
    assert "revoked already" in again.reason


def test_revocation_by_a_stranger_is_refused(space: Space) -> None:
    agreement = space.agreement("alice")
    revocation = revoke(agreement.agreement_id, space.identity("bob"), "not mine to end")
    refused = _refused(space, "bob", lambda c: c.revoke(revocation.model_dump_json().encode()))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED


def test_another_orgs_agreement_is_refused(space: Space) -> None:
    agreement = space.agreement("alice")
    refused = _refused(space, "bob", lambda c: c.reveal(agreement, space.record_ids[:1], ["title"]))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "'acme'" in refused.reason and "'globex'" in refused.reason


def test_a_purpose_other_than_the_agreements_is_refused(space: Space) -> None:
    agreement = space.agreement("alice")
    other = agreement.model_copy(
        update={"terms": agreement.terms.model_copy(update={"purpose": "marketing"})}
    )
    with space.client("alice") as client:
        request = reveal_pb2.RevealRequest(
            agreement_id=agreement.agreement_id,
            dataset="families",
            purpose="marketing",
            record_ids=space.record_ids[:1],
            fields=["title"],
        )
        before = len(space.entries())
        with pytest.raises(NodeRefused) as raised:
            client.call(client.reveal_stub.Reveal, request)
    assert other.terms.purpose == "marketing"
    assert raised.value.status == grpc.StatusCode.PERMISSION_DENIED
    assert "'research'" in raised.value.reason and "'marketing'" in raised.value.reason
    assert space.entries()[before]["decision"] == "deny"


def test_a_proposal_for_a_purpose_the_offer_does_not_allow_is_refused(space: Space) -> None:
    with space.client("alice") as client:
        offer = client.offer("families-research")
    widened = offer.constraints.model_copy(update={"purposes": ("research", "marketing")})
    alice = space.identity("alice")
    terms = AgreementTerms(
        offer_id=offer.offer_id,
        offer_digest=offer_digest(offer),
        provider_org=offer.provider_org,
        consumer_org="acme",
        consumer_name="alice",
        dataset=offer.dataset,
        actions=offer.actions,
        constraints=widened,
        purpose="marketing",
        created_at=datetime.now(UTC),
    )
    proposal = propose(terms, alice)
    request = negotiation_pb2.RequestAgreementRequest(proposal_json=proposal.model_dump_json().encode())
    refused = _refused(space, "alice", lambda c: c.call(c.negotiation.RequestAgreement, request))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "constraints" in refused.reason


def _proposal_request(space: Space, member: str) -> negotiation_pb2.RequestAgreementRequest:
    identity = space.identity(member)
    with space.client(member) as client:
        offer = client.offer("families-research")
    terms = terms_from_offer(
        offer, consumer_org=identity.org, consumer_name=identity.name, purpose="research"
    )
    proposal = propose(terms, identity)
    return negotiation_pb2.RequestAgreementRequest(proposal_json=proposal.model_dump_json().encode())


def test_a_proposal_signed_by_someone_else_is_refused(space: Space) -> None:
    bobs_proposal = _proposal_request(space, "bob")  # bob's proposal, sent over alice's connection
    refused = _refused(space, "alice", lambda c: c.call(c.negotiation.RequestAgreement, bobs_proposal))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert "'bob'" in refused.reason


# Every RPC that some roles may not call, called by one of them. The catalog (ListDatasets, DescribeDataset,
# ListOffers), GetTreeHead and GetConsistencyProof are open to every member by design.
WRONG_ROLE_CALLS = {
    "Reveal by a regulator": ("regulator", lambda s, c, a, p: c.reveal(a, s.record_ids[:1], ["title"])),
    # alice's own, validly signed proposal, sent over the regulator's connection
    "RequestAgreement by a regulator": (
        "regulator",
        lambda s, c, a, p: c.call(c.negotiation.RequestAgreement, p),
    ),
    "GetAgreementRequest by another org": ("bob", lambda s, c, a, p: c.request_status(a.agreement_id)),
    "ListAgreementRequests by a consumer": ("alice", lambda s, c, a, p: c.pending_requests()),
    "DecideAgreementRequest by a builder": (
        "builder",
        lambda s, c, a, p: c.decide_request(a.agreement_id, approve=True),
    ),
    "RevokeAgreement by a stranger": (
        "bob",
        lambda s, c, a, p: c.revoke(
            revoke(a.agreement_id, s.identity("bob"), "x").model_dump_json().encode()
        ),
    ),
    "GetEntries by a consumer": ("alice", lambda s, c, a, p: c.entries(0, 1)),
    "GetInclusionProof by a consumer": ("alice", lambda s, c, a, p: c.inclusion_proof(0, 1)),
}


@pytest.mark.parametrize("case", sorted(WRONG_ROLE_CALLS))
def test_the_wrong_role_is_refused(space: Space, case: str) -> None:
    member, call = WRONG_ROLE_CALLS[case]
    agreement = space.agreement("alice")
    prepared = _proposal_request(space, "alice")
    refused = _refused(space, member, lambda client: call(space, client, agreement, prepared))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED


def test_any_member_may_check_two_tree_heads_but_not_read_the_entries(space: Space) -> None:
    with space.client("alice") as client:
        head = client.tree_head(fresh=True)
        assert head.tree_size > 1
        assert len(client.consistency_proof(1, head.tree_size)) > 0
        with pytest.raises(NodeRefused) as refused:
            client.entries(0, 1)
    assert refused.value.status == grpc.StatusCode.PERMISSION_DENIED


def test_manual_approval_waits_for_the_provider_and_is_logged(space: Space) -> None:
    with space.client("alice") as client:
        offer = client.offer("families-licensing")
        pending = client.request_agreement(offer, "licensing")
        assert pending.state == "pending" and pending.agreement is None
        assert client.request_status(pending.request_id).state == "pending"
    with space.client("provider") as provider:
        assert pending.request_id in [r.request_id for r in provider.pending_requests()]
        approved = provider.decide_request(pending.request_id, approve=True, reason="known licensee")
    assert approved.state == "approved"
    approved.agreement.verify(space.local.ca.cert_pem)
    with space.client("alice") as client:
        status = client.request_status(pending.request_id)
        assert status.state == "approved" and status.agreement == approved.agreement
        rows, _ = client.reveal(status.agreement, space.record_ids[:1], ["title"])
    assert set(rows[0]) == {"publication_number", "title"}
    decided = [
        e
        for e in space.entries()
        if e["method"].endswith("DecideAgreementRequest") and e["decision"] == "allow"
    ]
    assert decided and decided[-1]["org"] == "office-a"
    with space.client("provider") as provider, pytest.raises(NodeRefused) as again:
        provider.decide_request(pending.request_id, approve=False)
    assert again.value.status == grpc.StatusCode.FAILED_PRECONDITION


def test_manual_rejection_is_told_to_the_consumer(space: Space) -> None:
    with space.client("alice") as client:
        offer = client.offer("families-licensing")
        pending = client.request_agreement(offer, "licensing", valid_for=timedelta(days=30))
    with space.client("provider") as provider:
        provider.decide_request(pending.request_id, approve=False, reason="not this quarter")
    with space.client("alice") as client:
        status = client.request_status(pending.request_id)
    assert (status.state, status.reason, status.agreement) == ("rejected", "not this quarter", None)


def test_an_offer_closed_to_an_org_refuses_it(space: Space) -> None:
    with space.client("bob") as client:
        offer = client.offer("families-licensing")
    with pytest.raises(ValueError, match="not one the offer is open to"):
        AgreementTerms(
            offer_id=offer.offer_id,
            offer_digest=offer_digest(offer),
            provider_org=offer.provider_org,
            consumer_org="globex",
            consumer_name="bob",
            dataset=offer.dataset,
            actions=offer.actions,
            constraints=offer.constraints,
            purpose="licensing",
            created_at=datetime.now(UTC),
        )


def test_another_orgs_request_is_not_disclosed(space: Space) -> None:
    with space.client("alice") as client:
        offer = client.offer("families-licensing")
        pending = client.request_agreement(offer, "licensing", valid_for=timedelta(days=31))
    refused = _refused(space, "bob", lambda c: c.request_status(pending.request_id))
    assert refused.status == grpc.StatusCode.PERMISSION_DENIED
    assert refused.reason == "this node has no such agreement request"


def test_catalog_shows_statistics_and_mock_rows_but_no_real_row(space: Space) -> None:
    with space.client("builder") as client:
        listing = client.list_datasets()
        description = client.describe("families")
    assert [d.name for d in listing.datasets] == ["families"] and listing.datasets[0].row_count == 200
    mock_ids = {row["publication_number"] for row in description["mock_rows"]}
    assert mock_ids and not mock_ids & set(space.record_ids)
    assert any(stat["name"] == "cited_count" and "mean" in stat for stat in description["statistics"])


def test_describing_an_unknown_dataset_is_not_found_and_recorded(space: Space) -> None:
    refused = _refused(space, "alice", lambda c: c.describe("secret_dataset"))
    assert refused.status == grpc.StatusCode.NOT_FOUND
    assert "secret_dataset" in refused.reason


def test_constraints_are_what_the_test_offer_says() -> None:
    # Guards the numbers the tests above rely on.
    assert PER_REQUEST < TOTAL and TOTAL % PER_REQUEST
    assert "inventors" not in REVEAL_FIELDS
    assert Constraints(reveal_fields=REVEAL_FIELDS).reveal_fields == REVEAL_FIELDS
