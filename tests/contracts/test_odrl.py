"""ODRL JSON-LD export and import: exact round trips, ODRL vocabulary, and refusal of documents not ours."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.agreements import Agreement
from contracts.errors import OdrlError
from contracts.odrl import (
    ODRL_CONTEXT_URL,
    agreement_from_odrl,
    agreement_to_odrl,
    offer_from_odrl,
    offer_to_odrl,
)
from contracts.offers import Action, Constraints, Offer, offer_digest
from contracts.signing import Signature
from tests.contracts._helpers import NOW, sample_terms
from tests.contracts._strategies import agreement_terms, names, offers

signatures = st.builds(
    Signature,
    signer_org=names,
    role=st.sampled_from(["consumer", "provider"]),
    certificate_pem=st.text(st.characters(max_codepoint=127), min_size=1, max_size=40),
    value=st.text(min_size=1, max_size=20),
)


@st.composite
def agreements(draw: st.DrawFn) -> Agreement:
    terms = draw(agreement_terms(expiry_step=timedelta(hours=1), max_expiry_steps=10**5))
    return Agreement(terms=terms, signatures=tuple(draw(st.lists(signatures, max_size=2))))


@settings(max_examples=80, deadline=None)
@given(offers())
def test_offer_round_trip_is_exact(offer: Offer) -> None:
    document = offer_to_odrl(offer)
    assert offer_from_odrl(document) == offer
    through_text = json.loads(json.dumps(document))
    assert offer_from_odrl(through_text) == offer
    assert offer_to_odrl(offer_from_odrl(through_text)) == document


@settings(max_examples=80, deadline=None)
@given(agreements())
def test_agreement_round_trip_is_exact(agreement: Agreement) -> None:
    document = agreement_to_odrl(agreement)
    back = agreement_from_odrl(json.loads(json.dumps(document)))
    assert back == agreement
    assert back.agreement_id == agreement.agreement_id
    assert document["uid"] == "urn:ipspace:agreement:" + agreement.agreement_id


def _offer() -> Offer:
    return Offer(
        offer_id="offer-1",
        provider_org="acme",
        dataset="patents",
        actions=(Action.REVEAL, Action.MATCH),
        constraints=Constraints(
            purposes=("research",),
            reveal_fields=("title", "abstract"),
            reveal_max_records_per_request=10,
            reveal_max_records_total=100,
            expires_at=datetime(2027, 1, 1, tzinfo=UTC),
        ),
    )


def _agreement() -> Agreement:
    offer = _offer()
    terms = sample_terms(
        offer_digest=offer_digest(offer), constraints=offer.constraints, expires_at=NOW + timedelta(days=30)
    )
    return Agreement(terms=terms)


def test_offer_uses_the_odrl_vocabulary() -> None:
    document = offer_to_odrl(_offer())
    assert document["@context"][0] == ODRL_CONTEXT_URL
    assert document["@type"] == "Offer"
    assert document["assigner"] == "urn:ipspace:org:acme"
    assert document["target"] == "urn:ipspace:dataset:patents"
    assert [permission["action"] for permission in document["permission"]] == [
        "ipspace:reveal",
        "ipspace:match",
    ]
    constraints = {
        (c["leftOperand"], c["operator"]): c["rightOperand"] for c in document["permission"][0]["constraint"]
    }
    assert constraints[("purpose", "isAnyOf")] == ["research"]
    assert constraints[("count", "lteq")] == 100
    assert constraints[("ipspace:revealRecordsPerRequest", "lteq")] == 10
    assert constraints[("ipspace:revealField", "isAnyOf")] == ["title", "abstract"]
    assert constraints[("dateTime", "lt")] == {
        "@value": "2027-01-01T00:00:00.000000Z",
        "@type": "xsd:dateTime",
    }


def test_agreement_names_both_parties_and_fixes_the_purpose() -> None:
    document = agreement_to_odrl(_agreement())
    assert document["@type"] == "Agreement"
    assert (document["assigner"], document["assignee"]) == ("urn:ipspace:org:acme", "urn:ipspace:org:globex")
    assert {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"} in document["permission"][
        0
    ]["constraint"]


def _mutated(document: dict[str, Any], change) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    change(copied)
    return copied


OFFER_MUTATIONS = {
    "foreign context": (lambda d: d.update({"@context": "http://www.w3.org/ns/odrl.jsonld"}), "@context"),
    "wrong type": (lambda d: d.update({"@type": "Set"}), "expected an ODRL Offer"),
    "extra property": (lambda d: d.update({"profile": "x"}), "does not write: profile"),
    "missing property": (lambda d: d.pop("ipspace:version"), "lacks ipspace:version"),
    "no permission": (lambda d: d.update({"permission": []}), "non-empty list"),
    "unknown action": (lambda d: d["permission"][0].update({"action": "odrl:use"}), "action 'odrl:use'"),
    "unhashable action": (lambda d: d["permission"][0].update({"action": ["x"]}), "has the action"),
    "rule with a duty": (
        lambda d: d["permission"][0].update({"duty": []}),
        "exactly 'action' and 'constraint'",
    ),
    "unequal constraints": (lambda d: d["permission"][1]["constraint"].pop(), "other constraints"),
    "unknown constraint": (
        lambda d: [
            p["constraint"].append({"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"})
            for p in d["permission"]
        ],
        "'spatial' 'eq'",
    ),
    "repeated constraint": (
        lambda d: [p["constraint"].append(p["constraint"][0]) for p in d["permission"]],
        "repeats",
    ),
    "boolean count": (
        lambda d: [
            c.update({"rightOperand": True})
            for p in d["permission"]
            for c in p["constraint"]
            if c["leftOperand"] == "count"
        ],
        "must be an integer",
    ),
    "plain date": (
        lambda d: [
            c.update({"rightOperand": "2027-01-01"})
            for p in d["permission"]
            for c in p["constraint"]
            if c["leftOperand"] == "dateTime"
        ],
        "typed literal",
    ),
    "purpose eq in an offer": (
        lambda d: [
            p["constraint"].append({"leftOperand": "purpose", "operator": "eq", "rightOperand": "x"})
            for p in d["permission"]
        ],
        "must not fix one purpose",
    ),
    "bad uid": (lambda d: d.update({"uid": "http://example.com/offer"}), "'uid' must be a string starting"),
    "invalid value": (lambda d: d.update({"ipspace:approval": "never"}), "field 'approval'"),
}


@pytest.mark.parametrize("name", sorted(OFFER_MUTATIONS))
def test_offer_from_odrl_refuses_documents_it_did_not_write(name: str) -> None:
    change, words = OFFER_MUTATIONS[name]
    document = _mutated(offer_to_odrl(_offer()), change)
    with pytest.raises(OdrlError) as caught:
        offer_from_odrl(document)
    assert words in caught.value.reason


@pytest.mark.parametrize("document", [None, [], "offer", 3])
def test_non_objects_are_refused(document: object) -> None:
    with pytest.raises(OdrlError, match="must be a JSON object"):
        offer_from_odrl(document)
    with pytest.raises(OdrlError, match="must be a JSON object"):
        agreement_from_odrl(document)


def test_an_offer_is_not_an_agreement() -> None:
    with pytest.raises(OdrlError, match="expected an ODRL Agreement"):
        agreement_from_odrl(offer_to_odrl(_offer()))
    with pytest.raises(OdrlError, match="expected an ODRL Offer"):
        offer_from_odrl(agreement_to_odrl(_agreement()))


def test_agreement_uid_must_match_its_terms() -> None:
    def change_purpose_everywhere(document: dict[str, Any]) -> None:
        document["ipspace:consumerName"] = "mallory"

    document = _mutated(agreement_to_odrl(_agreement()), change_purpose_everywhere)
    with pytest.raises(OdrlError, match="the terms have the id"):
        agreement_from_odrl(document)


def test_agreement_needs_its_purpose() -> None:
    def drop_purpose(document: dict[str, Any]) -> None:
        for permission in document["permission"]:
            permission["constraint"] = [c for c in permission["constraint"] if c["operator"] != "eq"]

    with pytest.raises(OdrlError, match="purpose eq"):
        agreement_from_odrl(_mutated(agreement_to_odrl(_agreement()), drop_purpose))
