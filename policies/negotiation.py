"""Decisions about agreements themselves: proposing one, following a request, deciding it, revoking one.

Like `decide`, each function here is pure and total and denies by default. Signatures are not checked here:
the node's policy point verifies them first (that needs the CA certificate and costs a signature check), and
these rules then judge what the verified documents say.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts.agreements import Agreement
from contracts.errors import AgreementError
from contracts.fields import utc_text
from contracts.offers import Offer, offer_digest
from contracts.revocations import Revocation
from contracts.terms import check_terms_match_offer
from crypto import Principal, Role
from policies.decision import Decision
from policies.rules import Refusal

CONSUMER_ROLES = frozenset({Role.CONSUMER, Role.BUILDER})
# A proposal is a fresh statement of intent: one made long ago (or in the future) is refused, so an old signed
# proposal cannot be replayed into a new agreement after the consumer changed its mind.
PROPOSAL_MAX_AGE = timedelta(hours=24)
CLOCK_SKEW = timedelta(minutes=5)


def decide_proposal(
    principal: Principal, proposal: Agreement, offer: Offer | None, provider_org: str, *, now: datetime
) -> Decision:
    """May this node countersign (or hold for approval) ``proposal`` from ``principal``?

    The proposal must come from its own signer's org and name, be addressed to this provider, accept the offer
    exactly as published (same digest, same constraints, a subset of its actions) and be recent.
    """
    refusal = _proposal_refusal(principal, proposal, offer, provider_org, now)
    if refusal is not None:
        return Decision.deny(refusal)
    terms = proposal.terms
    return Decision.allow(
        f"offer {terms.offer_id!r} is open to org {terms.consumer_org!r} for the purpose {terms.purpose!r}"
    )


def _proposal_refusal(
    principal: Principal, proposal: Agreement, offer: Offer | None, provider_org: str, now: datetime
) -> Refusal | None:
    terms = proposal.terms
    if principal.role not in CONSUMER_ROLES:
        return Refusal(
            f"agreements are made with consumers and model builders; {principal.name!r} holds the "
            f"role {str(principal.role)!r}"
        )
    if (terms.consumer_org, terms.consumer_name) != (principal.org, principal.name):
        return Refusal(
            f"the proposal is made out to {terms.consumer_name!r} of {terms.consumer_org!r}; the "
            f"caller is {principal.name!r} of {principal.org!r}"
        )
    if terms.provider_org != provider_org:
        return Refusal(
            f"the proposal is addressed to provider {terms.provider_org!r}; this node is {provider_org!r}"
        )
    if offer is None:
        return Refusal(f"this node has no offer {terms.offer_id!r}")
    if terms.offer_digest != offer_digest(offer):
        return Refusal(
            f"offer {offer.offer_id!r} changed since the proposal was made (it is now version "
            f"{offer.version}); read the offers again and propose anew"
        )
    try:  # the rest of "accepts this very offer" is the schema's own check, kept in one place
        check_terms_match_offer(terms, offer, now=now)
    except AgreementError as mismatch:
        return Refusal(mismatch.reason)
    return _timing_refusal(proposal, offer, now)


def _timing_refusal(proposal: Agreement, offer: Offer, now: datetime) -> Refusal | None:
    terms = proposal.terms
    if terms.created_at > now + CLOCK_SKEW:
        return Refusal(f"the proposal is dated {utc_text(terms.created_at)}, in the future; check the clock")
    if now - terms.created_at > PROPOSAL_MAX_AGE:
        return Refusal(
            f"the proposal was made at {utc_text(terms.created_at)}, more than "
            f"{PROPOSAL_MAX_AGE.total_seconds() / 3600:.0f} h ago; make a new one"
        )
    offer_expiry = offer.constraints.expires_at
    if offer_expiry is not None and (terms.expires_at is None or terms.expires_at > offer_expiry):
        return Refusal(f"the agreement must expire no later than its offer, at {utc_text(offer_expiry)}")
    return None


def decide_request_read(
    principal: Principal, request_consumer_org: str | None, provider_org: str
) -> Decision:
    """May ``principal`` see an agreement request? Its consumer's org and the provider may; nobody else."""
    if request_consumer_org is None:
        return Decision.deny(Refusal("this node has no such agreement request"))
    if principal.org in (request_consumer_org, provider_org):
        return Decision.allow(f"the request is org {principal.org!r}'s own")
    # Same words as an unknown request: whether another org asked for an agreement is not ours to tell.
    return Decision.deny(Refusal("this node has no such agreement request"))


def decide_provider_admin(principal: Principal, provider_org: str) -> Decision:
    """May ``principal`` administer this node's agreement requests? Only the provider itself."""
    if principal.org == provider_org and principal.role == Role.PROVIDER:
        return Decision.allow(f"{principal.name!r} is the provider {provider_org!r}")
    return Decision.deny(
        Refusal(
            f"only the provider {provider_org!r} decides on its agreement requests; "
            f"{principal.name!r} is {str(principal.role)!r} of {principal.org!r}"
        )
    )


def decide_revocation(
    principal: Principal, revocation: Revocation, agreement: Agreement | None, already_revoked: bool
) -> Decision:
    """May ``principal`` revoke this agreement with this (already signature-checked) revocation?"""
    if agreement is None:
        return Decision.deny(Refusal(f"no agreement {revocation.agreement_id!r} at this node"))
    parties = (agreement.terms.consumer_org, agreement.terms.provider_org)
    if principal.org not in parties:
        return Decision.deny(
            Refusal(
                f"only the parties {parties[0]!r} and {parties[1]!r} may revoke agreement "
                f"{revocation.agreement_id!r}"
            )
        )
    if revocation.revoked_by_org != principal.org:
        return Decision.deny(
            Refusal(
                f"the revocation is signed for org {revocation.revoked_by_org!r}; the caller "
                f"is of {principal.org!r}"
            )
        )
    if already_revoked:
        return Decision.deny(Refusal(f"agreement {revocation.agreement_id!r} is revoked already"))
    return Decision.allow(f"org {principal.org!r} is a party to agreement {revocation.agreement_id!r}")


def decide_tree_head(principal: Principal) -> Decision:
    """Signed tree heads are for every member: the more parties keep them, the harder a rewrite hides."""
    return Decision.allow(f"tree heads are public to members; {principal.name!r} of {principal.org!r} is one")
