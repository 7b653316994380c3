"""The negotiation rules: proposals, following requests, the provider's own decisions, revocations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.agreements import Agreement
from contracts.offers import Action, Constraints, Offer, offer_digest
from contracts.revocations import Revocation
from contracts.signing import Signature
from contracts.terms import AgreementTerms
from crypto import Principal, Role
from policies.negotiation import (
    PROPOSAL_MAX_AGE,
    decide_proposal,
    decide_provider_admin,
    decide_request_read,
    decide_revocation,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OFFER = Offer(
    offer_id="offer-1",
    provider_org="acme",
    dataset="patents",
    actions=(Action.REVEAL,),
    constraints=Constraints(
        purposes=("research",), reveal_fields=("title",), expires_at=NOW + timedelta(days=30)
    ),
)
ALICE = Principal("alice", "globex", Role.CONSUMER, "t1")


def _proposal(offer: Offer = OFFER, **changes: object) -> Agreement:
    fields: dict[str, object] = {
        "offer_id": offer.offer_id,
        "offer_digest": offer_digest(offer),
        "provider_org": offer.provider_org,
        "consumer_org": "globex",
        "consumer_name": "alice",
        "dataset": offer.dataset,
        "actions": offer.actions,
        "constraints": offer.constraints,
        "purpose": "research",
        "created_at": NOW - timedelta(minutes=1),
        "expires_at": NOW + timedelta(days=10),
    }
    return Agreement(terms=AgreementTerms.model_validate(fields | changes))


def _reason(
    principal: Principal = ALICE,
    proposal: Agreement | None = None,
    offer: Offer | None = OFFER,
    now: datetime = NOW,
) -> str:
    decision = decide_proposal(principal, proposal or _proposal(), offer, "acme", now=now)
    assert not decision.allowed
    return decision.reason


def test_a_fresh_proposal_accepting_the_offer_as_published_is_allowed() -> None:
    decision = decide_proposal(ALICE, _proposal(), OFFER, "acme", now=NOW)
    assert decision.allowed and "'research'" in decision.reason


@pytest.mark.parametrize(
    ("proposal", "offer", "principal", "now", "phrase"),
    [
        (
            None,
            OFFER,
            Principal("reg", "authority", Role.REGULATOR, "t"),
            NOW,
            "consumers and model builders",
        ),
        (None, OFFER, Principal("bob", "globex", Role.CONSUMER, "t"), NOW, "made out to 'alice'"),
        (_proposal(provider_org="initech"), OFFER, ALICE, NOW, "addressed to provider 'initech'"),
        (None, None, ALICE, NOW, "no offer 'offer-1'"),
        (None, OFFER.model_copy(update={"version": 2}), ALICE, NOW, "changed since the proposal was made"),
        (_proposal(dataset="other"), OFFER, ALICE, NOW, "differ"),
        (
            _proposal(
                constraints=OFFER.constraints.model_copy(update={"reveal_fields": ("title", "inventors")})
            ),
            OFFER,
            ALICE,
            NOW,
            "differ",
        ),
        (_proposal(actions=(Action.REVEAL, Action.TRAIN)), OFFER, ALICE, NOW, "does not offer train"),
        (None, OFFER, ALICE, NOW - timedelta(hours=1), "in the future"),
        (None, OFFER, ALICE, NOW + PROPOSAL_MAX_AGE + timedelta(minutes=2), "make a new one"),
        (_proposal(expires_at=NOW + timedelta(days=60)), OFFER, ALICE, NOW, "no later than its offer"),
        (_proposal(expires_at=None), OFFER, ALICE, NOW, "no later than its offer"),
    ],
)
def test_a_proposal_that_does_not_accept_the_offer_as_published_is_refused(
    proposal: Agreement | None, offer: Offer | None, principal: Principal, now: datetime, phrase: str
) -> None:
    assert phrase in _reason(principal, proposal, offer, now)


def test_a_proposal_for_an_expired_offer_is_refused() -> None:
    expiry = OFFER.constraints.expires_at
    proposal = _proposal(created_at=expiry - timedelta(minutes=1), expires_at=expiry)
    assert "offer expired" in _reason(proposal=proposal, now=expiry + timedelta(seconds=1))


@given(
    name=st.text(max_size=20),
    org=st.text(max_size=20),
    role=st.sampled_from(list(Role)),
    minutes=st.integers(min_value=-(10**6), max_value=10**6),
)
def test_decide_proposal_never_raises(name: str, org: str, role: Role, minutes: int) -> None:
    decision = decide_proposal(
        Principal(name, org, role, "t"), _proposal(), OFFER, "acme", now=NOW + timedelta(minutes=minutes)
    )
    if decision.allowed:  # only alice herself, as a consumer, in the proposal's freshness window
        assert (name, org, role) == ("alice", "globex", Role.CONSUMER) and -6 <= minutes <= 24 * 60 - 1


def test_a_request_is_seen_by_its_consumer_and_the_provider_only() -> None:
    assert decide_request_read(ALICE, "globex", "acme").allowed
    assert decide_request_read(Principal("ops", "acme", Role.PROVIDER, "t"), "globex", "acme").allowed
    stranger, unknown = (
        decide_request_read(Principal("eve", "initech", Role.CONSUMER, "t"), "globex", "acme"),
        decide_request_read(ALICE, None, "acme"),
    )
    assert not stranger.allowed and stranger.reason == unknown.reason  # no hint that the request exists


def test_only_the_provider_itself_administers_requests() -> None:
    assert decide_provider_admin(Principal("ops", "acme", Role.PROVIDER, "t"), "acme").allowed
    assert not decide_provider_admin(Principal("ops", "initech", Role.PROVIDER, "t"), "acme").allowed
    assert not decide_provider_admin(Principal("b", "acme", Role.BUILDER, "t"), "acme").allowed


def _revocation(agreement: Agreement, org: str) -> Revocation:
    signature = Signature(signer_org=org, role="consumer", certificate_pem="PEM", value="c2ln")
    return Revocation(
        agreement_id=agreement.agreement_id,
        revoked_by_org=org,
        reason="done",
        revoked_at=NOW,
        signature=signature,
    )


def test_revocations_by_a_party_are_allowed_once() -> None:
    agreement = _proposal()
    revocation = _revocation(agreement, "globex")
    assert decide_revocation(ALICE, revocation, agreement, already_revoked=False).allowed
    assert "revoked already" in decide_revocation(ALICE, revocation, agreement, already_revoked=True).reason
    assert "no agreement" in decide_revocation(ALICE, revocation, None, already_revoked=False).reason
    eve = Principal("eve", "initech", Role.CONSUMER, "t")
    assert (
        "only the parties"
        in decide_revocation(eve, _revocation(agreement, "initech"), agreement, False).reason
    )
    assert (
        "signed for org"
        in decide_revocation(
            Principal("ops", "acme", Role.PROVIDER, "t"), revocation, agreement, False
        ).reason
    )
