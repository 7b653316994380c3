"""Offers, agreements and revocations: validation, stable canonical form, signatures by the right parties."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.agreements import (
    Action,
    Agreement,
    AgreementTerms,
    Constraints,
    Offer,
    Signature,
    agreement_message,
    check_terms_match_offer,
    countersign,
    load_offer,
    offer_digest,
    parse_agreement,
    parse_revocation,
    propose,
    revocation_message,
    revoke,
    terms_from_offer,
)
from contracts.errors import AgreementError, OfferError, RevocationError
from crypto import CertificateAuthority, Role, canonical_json, digest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- strategies (shared shape with test_odrl)

names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda text: text == text.strip()
)
field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
offsets = st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23)))
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets)
limits = st.none() | st.integers(min_value=0, max_value=2**53 - 1)
unique_names = st.lists(names, min_size=1, max_size=4, unique=True).map(tuple)


@st.composite
def constraints(draw: st.DrawFn) -> Constraints:
    return Constraints(
        purposes=draw(st.none() | unique_names),
        consumer_orgs=draw(st.none() | unique_names),
        reveal_fields=tuple(draw(st.lists(field_names, max_size=4, unique=True))),
        reveal_max_records_per_request=draw(limits),
        reveal_max_records_total=draw(limits),
        expires_at=draw(st.none() | times),
    )


@st.composite
def offers(draw: st.DrawFn) -> Offer:
    return Offer(
        offer_id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)),
        version=draw(st.integers(min_value=1, max_value=2**53 - 1)),
        provider_org=draw(names),
        dataset=draw(names),
        actions=tuple(draw(st.lists(st.sampled_from(list(Action)), min_size=1, unique=True))),
        constraints=draw(constraints()),
        approval=draw(st.sampled_from(["automatic", "manual"])),
        description=draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=30)),
    )


@st.composite
def agreement_terms(draw: st.DrawFn) -> AgreementTerms:
    offer = draw(offers())
    purposes, orgs = offer.constraints.purposes, offer.constraints.consumer_orgs
    created_at = draw(times)
    return AgreementTerms(
        offer_id=offer.offer_id,
        offer_digest=offer_digest(offer),
        provider_org=offer.provider_org,
        consumer_org=draw(names if orgs is None else st.sampled_from(orgs)),
        consumer_name=draw(names),
        dataset=offer.dataset,
        actions=offer.actions,
        constraints=offer.constraints,
        purpose=draw(names if purposes is None else st.sampled_from(purposes)),
        created_at=created_at,
        expires_at=draw(st.none() | st.just(created_at + timedelta(days=draw(st.integers(1, 999))))),
    )


# ---------------------------------------------------------------- canonical form


@settings(max_examples=60, deadline=None)
@given(agreement_terms())
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


def test_agreement_id_is_the_digest_of_the_terms_and_ignores_signatures(identities) -> None:
    terms = _terms()
    proposal = propose(terms, identities["consumer"])
    assert proposal.agreement_id == digest(terms.model_dump(mode="json"))
    assert proposal.agreement_id == Agreement(terms=terms).agreement_id
    assert Agreement(terms=_terms(purpose="teaching")).agreement_id != proposal.agreement_id


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
        _terms(purpose="spam")
    with pytest.raises(ValidationError, match="not one the offer is open to"):
        _terms(
            consumer_org="initech", constraints=Constraints(consumer_orgs=("globex",), purposes=("research",))
        )
    with pytest.raises(ValidationError, match="expire before it is created"):
        _terms(expires_at=NOW - timedelta(seconds=1))


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


# ---------------------------------------------------------------- signatures


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ca = CertificateAuthority.create(tmp_path_factory.mktemp("ca"), now=NOW)
    other_ca = CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"), now=NOW)
    members = {
        "provider": ("node-a", "acme", Role.PROVIDER),
        "consumer": ("alice", "globex", Role.CONSUMER),
        "builder": ("bob", "globex", Role.BUILDER),
        "regulator": ("reg", "globex", Role.REGULATOR),
        "stranger": ("eve", "initech", Role.CONSUMER),
        "other_provider": ("node-b", "umbrella", Role.PROVIDER),
    }
    issued = {key: ca.issue(*member, days=1000, now=NOW) for key, member in members.items()}
    forged = other_ca.issue("alice", "globex", Role.CONSUMER, now=NOW)
    return {"ca": ca.cert_pem, "forged_consumer": forged, **issued}


def test_propose_countersign_verify(identities) -> None:
    agreement = countersign(propose(_terms(), identities["consumer"]), identities["provider"], now=NOW)
    agreement.verify(identities["ca"], now=NOW)
    assert [signature.role for signature in agreement.signatures] == ["consumer", "provider"]
    parse_agreement(agreement.model_dump_json()).verify(identities["ca"], now=NOW)


def test_a_builder_may_sign_for_the_consumer(identities) -> None:
    agreement = countersign(propose(_terms(), identities["builder"]), identities["provider"], now=NOW)
    agreement.verify(identities["ca"], now=NOW)


@pytest.mark.parametrize(
    ("who", "words"), [("stranger", "of org 'globex'"), ("regulator", "must sign as builder or consumer")]
)
def test_propose_refuses_a_signer_who_is_not_the_consumer(identities, who: str, words: str) -> None:
    with pytest.raises(AgreementError, match=words):
        propose(_terms(), identities[who])


def test_countersign_checks_the_consumer_signature_first(identities) -> None:
    proposal = propose(_terms(), identities["consumer"])
    tampered = proposal.model_copy(update={"terms": _terms(purpose="teaching")})
    with pytest.raises(AgreementError, match="consumer signature does not match"):
        countersign(tampered, identities["provider"], now=NOW)
    forged = propose(_terms(), identities["forged_consumer"])
    with pytest.raises(AgreementError, match="not one this data space's CA issued"):
        countersign(forged, identities["provider"], now=NOW)
    with pytest.raises(AgreementError, match="org 'acme'"):
        countersign(proposal, identities["other_provider"], now=NOW)
    with pytest.raises(AgreementError, match="expired"):
        countersign(proposal, identities["provider"], now=NOW + timedelta(days=400))
    signed = countersign(proposal, identities["provider"], now=NOW)
    with pytest.raises(AgreementError, match="exactly one signature"):
        countersign(signed, identities["provider"], now=NOW)


def _signed(identities) -> Agreement:
    return countersign(propose(_terms(), identities["consumer"]), identities["provider"], now=NOW)


def test_verify_refuses_missing_or_doubled_signatures(identities) -> None:
    agreement = _signed(identities)
    consumer, provider = agreement.signatures
    for signatures in [(), (consumer,), (provider,), (consumer, consumer), (provider, provider)]:
        with pytest.raises(AgreementError, match="consumer and a provider signature"):
            agreement.model_copy(update={"signatures": signatures}).verify(identities["ca"], now=NOW)
    with pytest.raises(ValidationError):
        Agreement(terms=agreement.terms, signatures=(consumer, provider, provider))


def test_verify_refuses_tampered_terms_and_values(identities) -> None:
    agreement = _signed(identities)
    consumer, provider = agreement.signatures
    with pytest.raises(AgreementError, match="does not match"):
        agreement.model_copy(update={"terms": _terms(purpose="teaching")}).verify(identities["ca"], now=NOW)
    flipped = bytearray(base64.b64decode(provider.value))
    flipped[0] ^= 1
    bad_value = provider.model_copy(update={"value": base64.b64encode(bytes(flipped)).decode()})
    with pytest.raises(AgreementError, match="provider signature does not match"):
        agreement.model_copy(update={"signatures": (consumer, bad_value)}).verify(identities["ca"], now=NOW)
    not_base64 = provider.model_copy(update={"value": "***"})
    with pytest.raises(AgreementError, match="not base64"):
        agreement.model_copy(update={"signatures": (consumer, not_base64)}).verify(identities["ca"], now=NOW)


def test_verify_refuses_a_signer_of_the_wrong_org_or_role(identities) -> None:
    terms = _terms()
    agreement = _signed(identities)
    consumer = agreement.signatures[0]
    # The consumer's own certificate presented as the provider's signature: right CA, wrong org and role.
    as_provider = Signature(
        signer_org="acme", role="provider", certificate_pem=consumer.certificate_pem, value=consumer.value
    )
    with pytest.raises(AgreementError, match="provider must be of org 'acme'"):
        Agreement(terms=terms, signatures=(consumer, as_provider)).verify(identities["ca"], now=NOW)
    # A provider of another org signing the provider side.
    foreign = identities["other_provider"]
    value = base64.b64encode(foreign.sign(agreement_message(terms))).decode()
    foreign_signature = Signature(
        signer_org="acme", role="provider", value=value, certificate_pem=foreign.signing_cert_pem.decode()
    )
    with pytest.raises(AgreementError, match="'node-b' is of org 'umbrella'"):
        Agreement(terms=terms, signatures=(consumer, foreign_signature)).verify(identities["ca"], now=NOW)
    lying_org = agreement.signatures[1].model_copy(update={"signer_org": "umbrella"})
    with pytest.raises(AgreementError, match="claims org 'umbrella'"):
        Agreement(terms=terms, signatures=(consumer, lying_org)).verify(identities["ca"], now=NOW)


def test_verify_refuses_certificates_of_another_ca(identities) -> None:
    forged = propose(_terms(), identities["forged_consumer"])
    provider_half = _signed(identities).signatures[1]
    agreement = Agreement(terms=forged.terms, signatures=(forged.signatures[0], provider_half))
    with pytest.raises(AgreementError, match="consumer's signing certificate"):
        agreement.verify(identities["ca"], now=NOW)


# ---------------------------------------------------------------- revocations


@pytest.mark.parametrize("who", ["consumer", "provider", "builder"])
def test_either_party_may_revoke(identities, who: str) -> None:
    agreement = _signed(identities)
    revocation = revoke(agreement.agreement_id, identities[who], "no longer needed", now=NOW)
    revocation.verify(identities["ca"], agreement, now=NOW)
    parse_revocation(revocation.model_dump_json()).verify(identities["ca"], agreement, now=NOW)
    assert revocation.revoked_at == NOW


def test_a_third_org_cannot_revoke(identities) -> None:
    agreement = _signed(identities)
    revocation = revoke(agreement.agreement_id, identities["stranger"], "mischief", now=NOW)
    with pytest.raises(RevocationError, match="agreement's consumer is 'globex'"):
        revocation.verify(identities["ca"], agreement, now=NOW)
    posing = revocation.model_copy(update={"revoked_by_org": "globex"})
    with pytest.raises(RevocationError, match="claims org 'initech'"):
        posing.verify(identities["ca"], agreement, now=NOW)
    with pytest.raises(RevocationError, match="not a party"):
        revoke(agreement.agreement_id, identities["regulator"], "audit finding", now=NOW)


def test_revocation_is_bound_to_its_agreement_and_body(identities) -> None:
    agreement = _signed(identities)
    revocation = revoke(agreement.agreement_id, identities["consumer"], "done", now=NOW)
    other = Agreement(terms=_terms(consumer_name="carol"))
    with pytest.raises(RevocationError, match="is of agreement"):
        revocation.verify(identities["ca"], other, now=NOW)
    with pytest.raises(RevocationError, match="does not match"):
        revocation.model_copy(update={"reason": "changed"}).verify(identities["ca"], agreement, now=NOW)
    with pytest.raises(RevocationError, match="agreement_id"):
        revoke("not-a-digest", identities["consumer"], "done", now=NOW)


def test_signatures_cover_a_domain_tag(identities) -> None:
    """A signature over the bare canonical terms (as another protocol might sign them) is no agreement."""
    terms = _terms()
    assert agreement_message(terms) == b"ipspace/agreement/v1\n" + canonical_json(
        terms.model_dump(mode="json")
    )
    consumer = identities["consumer"]
    bare = base64.b64encode(consumer.sign(canonical_json(terms.model_dump(mode="json")))).decode()
    signature = Signature(
        signer_org="globex", role="consumer", certificate_pem=consumer.signing_cert_pem.decode(), value=bare
    )
    with pytest.raises(AgreementError, match="consumer signature does not match"):
        countersign(Agreement(terms=terms, signatures=(signature,)), identities["provider"], now=NOW)
    revocation = revoke(_signed(identities).agreement_id, consumer, "done", now=NOW)
    assert revocation_message(revocation).startswith(b"ipspace/revocation/v1\n")


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


def _terms(**changes: object) -> AgreementTerms:
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
