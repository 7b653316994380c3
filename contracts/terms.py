"""Agreement terms: an offer accepted by one consumer for one purpose, and the check that they match it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import ValidationError, model_validator

from contracts.errors import AgreementError
from contracts.fields import (
    Digest,
    FrozenModel,
    Name,
    OfferId,
    UtcDatetime,
    describe_validation_error,
    utc_text,
)
from contracts.offers import Action, ActionList, Constraints, Offer, offer_digest


class AgreementTerms(FrozenModel):
    """An offer accepted by one consumer for one purpose: the part both parties sign."""

    offer_id: OfferId
    offer_digest: Digest
    provider_org: Name
    consumer_org: Name
    consumer_name: Name
    dataset: Name
    actions: ActionList
    constraints: Constraints
    purpose: Name
    created_at: UtcDatetime
    expires_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        purposes, orgs = self.constraints.purposes, self.constraints.consumer_orgs
        if purposes is not None and self.purpose not in purposes:
            raise ValueError(f"purpose {self.purpose!r} is not one the offer allows ({', '.join(purposes)})")
        if orgs is not None and self.consumer_org not in orgs:
            raise ValueError(f"org {self.consumer_org!r} is not one the offer is open to ({', '.join(orgs)})")
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise ValueError("the agreement would expire before it is created")
        return self


def terms_from_offer(
    offer: Offer,
    *,
    consumer_org: str,
    consumer_name: str,
    purpose: str,
    actions: tuple[Action, ...] | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> AgreementTerms:
    """Terms accepting `offer` for one consumer and purpose, expiring at the earlier of the offer's expiry and
    `expires_at`. Raises AgreementError when the offer does not allow them (see `check_terms_match_offer`)."""
    moment = now or datetime.now(UTC)
    if offer.constraints.expires_at is not None and moment >= offer.constraints.expires_at:
        raise AgreementError(f"the offer expired at {utc_text(offer.constraints.expires_at)}")
    expiries = [when for when in (offer.constraints.expires_at, expires_at) if when is not None]
    try:
        terms = AgreementTerms(
            offer_id=offer.offer_id,
            offer_digest=offer_digest(offer),
            provider_org=offer.provider_org,
            consumer_org=consumer_org,
            consumer_name=consumer_name,
            dataset=offer.dataset,
            actions=offer.actions if actions is None else actions,
            constraints=offer.constraints,
            purpose=purpose,
            created_at=moment,
            expires_at=min(expiries) if expiries else None,
        )
    except ValidationError as exc:
        raise AgreementError(describe_validation_error(exc)) from exc
    check_terms_match_offer(terms, offer, now=moment)
    return terms


def check_terms_match_offer(terms: AgreementTerms, offer: Offer, *, now: datetime | None = None) -> None:
    """Check that `terms` accept this very `offer` (same digest, a subset of its actions), unexpired at `now`.

    Purpose and consumer org were checked against the constraints when the terms were built.
    Raises AgreementError.
    """
    if terms.offer_id != offer.offer_id or terms.offer_digest != offer_digest(offer):
        raise AgreementError(f"the terms accept another offer, or another version of {offer.offer_id!r}")
    same = (terms.provider_org, terms.dataset, terms.constraints)
    if same != (offer.provider_org, offer.dataset, offer.constraints):
        raise AgreementError(f"the terms' provider, dataset or constraints differ from {offer.offer_id!r}")
    not_offered = [action.value for action in terms.actions if action not in offer.actions]
    if not_offered:
        raise AgreementError(f"offer {offer.offer_id!r} does not offer {', '.join(not_offered)}")
    moment = now or datetime.now(UTC)
    for label, expiry in (("offer", offer.constraints.expires_at), ("agreement", terms.expires_at)):
        if expiry is not None and moment >= expiry:
            raise AgreementError(f"the {label} expired at {utc_text(expiry)}")
