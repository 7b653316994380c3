"""Offers and agreement terms: validation, stable canonical form, and terms that match their offer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from contracts.errors import AgreementError, OfferError
from contracts.offers import Action, Constraints, Offer, load_offer, offer_digest
from contracts.terms import AgreementTerms, check_terms_match_offer, terms_from_offer
from crypto import digest
from tests.contracts._helpers import NOW, sample_terms
from tests.contracts._strategies import agreement_terms

# ---------------------------------------------------------------- canonical form


@settings(max_examples=60, deadline=None)
@given(agreement_terms(expiry_step=timedelta(days=1), max_expiry_steps=999))
def test_terms_digest_survives_json_round_trips(terms: AgreementTerms) -> None:
    original = digest(terms.model_dump(mode="json"))
    from_json_text = AgreementTerms.model_validate_json(terms.model_dump_json())
    from_parsed_json = AgreementTerms.model_validate(json.loads(json.dumps(terms.model_dump(mode="json"))))
    assert from_json_text == terms == from_parsed_json
    assert digest(from_json_text.model_dump(mode="json")) == original
    assert digest(from_parsed_json.model_dump(mode="json")) == original


def test_times_are_normalised_to_utc_in_one_format() -> None:
    paris = timezone(timedelta(hours=1))
    constraint = Constraints(expires_at=datetime(2026, 1, 31, 13, 0, tzinfo=paris))
    assert constraint.model_dump(mode="json")["expires_at"] == "2026-01-31T12:00:00.000000Z"
    assert constraint.expires_at is not None and constraint.expires_at.tzinfo == UTC


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        Constraints(expires_at=datetime(2026, 1, 31))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "bad_field"),
    [
        ({"actions": []}, "actions"),
        ({"actions": ["reveal", "reveal"]}, "actions"),
        ({"actions": ["export"]}, "actions.0"),
        ({"offer_id": "../etc/passwd"}, "offer_id"),
        ({"provider_org": " acme"}, "provider_org"),
        ({"constraints": {"purposes": []}}, "constraints.purposes"),
        ({"constraints": {"reveal_fields": ["title", "title"]}}, "constraints.reveal_fields"),
        ({"constraints": {"reveal_max_records_total": -1}}, "constraints.reveal_max_records_total"),
        ({"constraints": {"reveal_max_records_total": 2**53}}, "constraints.reveal_max_records_total"),
        ({"constraints": {"revael_fields": ["title"]}}, "constraints.revael_fields"),
        ({"approval": "sometimes"}, "approval"),
    ],
)
def test_load_offer_names_the_file_and_the_bad_field(tmp_path: Path, change: dict, bad_field: str) -> None:
    path = tmp_path / "offer-1.json"
    path.write_text(json.dumps(_offer_document() | change))
    with pytest.raises(OfferError) as caught:
        load_offer(path)
    assert str(path) in caught.value.reason
    assert f"field {bad_field!r}" in caught.value.reason
    assert caught.value.path == path


def test_load_offer_reads_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "offer-1.json"
    path.write_text(json.dumps(_offer_document()))
    offer = load_offer(path)
    assert offer.actions == (Action.REVEAL, Action.MATCH)
    assert offer.constraints.reveal_fields == ("title", "abstract")
    assert offer.constraints.expires_at == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"offer_id": "x",', "not valid JSON"),
        (b'{"offer_id": "a", "offer_id": "b"}', "appears twice"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "valid dictionary"),
    ],
)
def test_load_offer_explains_unusable_files(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "offer.json"
    path.write_bytes(content)
    with pytest.raises(OfferError, match=words) as caught:
        load_offer(path)
    assert str(path) in caught.value.reason


def test_load_offer_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OfferError, match="cannot be read"):
        load_offer(tmp_path / "absent.json")


def test_terms_must_agree_with_their_own_constraints() -> None:
    with pytest.raises(ValidationError, match="purpose 'spam' is not one the offer allows"):
        sample_terms(purpose="spam")
    with pytest.raises(ValidationError, match="not one the offer is open to"):
        sample_terms(
            consumer_org="initech", constraints=Constraints(consumer_orgs=("globex",), purposes=("research",))
        )
    with pytest.raises(ValidationError, match="expire before it is created"):
        sample_terms(expires_at=NOW - timedelta(seconds=1))


def test_terms_from_offer_takes_the_earlier_expiry_and_checks_the_offer() -> None:
    offer = Offer.model_validate(_offer_document())
    terms = terms_from_offer(
        offer,
        consumer_org="globex",
        consumer_name="alice",
        purpose="research",
        now=NOW,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert terms.expires_at == offer.constraints.expires_at
    assert terms.offer_digest == offer_digest(offer)
    check_terms_match_offer(terms, offer, now=NOW)
    with pytest.raises(AgreementError, match="does not offer train"):
        terms_from_offer(
            offer,
            consumer_org="globex",
            consumer_name="a",
            purpose="research",
            actions=(Action.TRAIN,),
            now=NOW,
        )
    with pytest.raises(AgreementError, match="purpose"):
        terms_from_offer(offer, consumer_org="globex", consumer_name="a", purpose="marketing", now=NOW)
    with pytest.raises(AgreementError, match="offer expired"):
        terms_from_offer(
            offer,
            consumer_org="globex",
            consumer_name="a",
            purpose="research",
            now=datetime(2027, 6, 1, tzinfo=UTC),
        )
    changed = offer.model_copy(update={"version": 2})
    with pytest.raises(AgreementError, match="another version"):
        check_terms_match_offer(terms, changed, now=NOW)


# ---------------------------------------------------------------- helpers


def _offer_document() -> dict:
    return {
        "offer_id": "offer-1",
        "provider_org": "acme",
        "dataset": "patents",
        "actions": ["reveal", "match"],
        "constraints": {
            "purposes": ["research"],
            "reveal_fields": ["title", "abstract"],
            "reveal_max_records_per_request": 10,
            "reveal_max_records_total": 100,
            "expires_at": "2027-01-01T00:00:00Z",
        },
    }


def test_a_privacy_budget_needs_both_epsilon_and_delta() -> None:
    for half in ({"epsilon": 4.0}, {"delta": 1e-5}):
        with pytest.raises(ValidationError, match="both epsilon and delta"):
            Constraints(**half)
    assert Constraints(epsilon=4.0, delta=1e-5).epsilon == 4.0


@pytest.mark.parametrize(
    "bad",
    [
        {"epsilon": 0.0, "delta": 1e-5},
        {"epsilon": float("inf"), "delta": 1e-5},
        {"epsilon": 1.0, "delta": 1.0},
        {"min_cohort": 1},
        {"match_queries_per_day": 0},
        {"match_queries_total": 0},
        {"match_score_noise": 0.0},
        {"match_score_noise": float("nan")},
        {"match_score_noise": 2.0},
    ],
)
def test_training_and_match_constraints_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Constraints(**bad)
