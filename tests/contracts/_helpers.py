"""Shared test data for the contracts tests: a fixed clock and valid agreement terms to vary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.offers import Action, Constraints
from contracts.terms import AgreementTerms

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sample_terms(**changes: object) -> AgreementTerms:
    """Valid terms (acme's patents, revealed to alice of globex for research), with `changes` applied."""
    fields: dict[str, object] = {
        "offer_id": "offer-1",
        "offer_digest": "sha256:" + "0" * 64,
        "provider_org": "acme",
        "consumer_org": "globex",
        "consumer_name": "alice",
        "dataset": "patents",
        "actions": (Action.REVEAL,),
        "constraints": Constraints(purposes=("research", "teaching"), reveal_fields=("title",)),
        "purpose": "research",
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=365),
    }
    return AgreementTerms.model_validate(fields | changes)
