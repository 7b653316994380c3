"""Agreements and revocations: signatures by the right parties, over domain-tagged canonical bodies."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from pydantic import ValidationError

from contracts.agreements import Agreement, agreement_message, countersign, parse_agreement, propose
from contracts.errors import AgreementError, RevocationError
from contracts.revocations import parse_revocation, revocation_message, revoke
from contracts.signing import Signature
from crypto import CertificateAuthority, Role, canonical_json, digest
from tests.contracts._helpers import NOW, sample_terms

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


def test_agreement_id_is_the_digest_of_the_terms_and_ignores_signatures(identities) -> None:
    terms = sample_terms()
    proposal = propose(terms, identities["consumer"])
    assert proposal.agreement_id == digest(terms.model_dump(mode="json"))
    assert proposal.agreement_id == Agreement(terms=terms).agreement_id
    assert Agreement(terms=sample_terms(purpose="teaching")).agreement_id != proposal.agreement_id


def test_propose_countersign_verify(identities) -> None:
    agreement = countersign(propose(sample_terms(), identities["consumer"]), identities["provider"], now=NOW)
    agreement.verify(identities["ca"], now=NOW)
    assert [signature.role for signature in agreement.signatures] == ["consumer", "provider"]
    parse_agreement(agreement.model_dump_json()).verify(identities["ca"], now=NOW)


def test_a_builder_may_sign_for_the_consumer(identities) -> None:
    agreement = countersign(propose(sample_terms(), identities["builder"]), identities["provider"], now=NOW)
    agreement.verify(identities["ca"], now=NOW)


@pytest.mark.parametrize(
    ("who", "words"), [("stranger", "of org 'globex'"), ("regulator", "must sign as builder or consumer")]
)
def test_propose_refuses_a_signer_who_is_not_the_consumer(identities, who: str, words: str) -> None:
    with pytest.raises(AgreementError, match=words):
        propose(sample_terms(), identities[who])


def test_countersign_checks_the_consumer_signature_first(identities) -> None:
    proposal = propose(sample_terms(), identities["consumer"])
    tampered = proposal.model_copy(update={"terms": sample_terms(purpose="teaching")})
    with pytest.raises(AgreementError, match="consumer signature does not match"):
        countersign(tampered, identities["provider"], now=NOW)
    forged = propose(sample_terms(), identities["forged_consumer"])
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
    return countersign(propose(sample_terms(), identities["consumer"]), identities["provider"], now=NOW)


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
        agreement.model_copy(update={"terms": sample_terms(purpose="teaching")}).verify(
            identities["ca"], now=NOW
        )
    flipped = bytearray(base64.b64decode(provider.value))
    flipped[0] ^= 1
    bad_value = provider.model_copy(update={"value": base64.b64encode(bytes(flipped)).decode()})
    with pytest.raises(AgreementError, match="provider signature does not match"):
        agreement.model_copy(update={"signatures": (consumer, bad_value)}).verify(identities["ca"], now=NOW)
    not_base64 = provider.model_copy(update={"value": "***"})
    with pytest.raises(AgreementError, match="not base64"):
        agreement.model_copy(update={"signatures": (consumer, not_base64)}).verify(identities["ca"], now=NOW)


def test_verify_refuses_a_signer_of_the_wrong_org_or_role(identities) -> None:
    terms = sample_terms()
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
    forged = propose(sample_terms(), identities["forged_consumer"])
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
    other = Agreement(terms=sample_terms(consumer_name="carol"))
    with pytest.raises(RevocationError, match="is of agreement"):
        revocation.verify(identities["ca"], other, now=NOW)
    with pytest.raises(RevocationError, match="does not match"):
        revocation.model_copy(update={"reason": "changed"}).verify(identities["ca"], agreement, now=NOW)
    with pytest.raises(RevocationError, match="agreement_id"):
        revoke("not-a-digest", identities["consumer"], "done", now=NOW)


def test_signatures_cover_a_domain_tag(identities) -> None:
    """A signature over the bare canonical terms (as another protocol might sign them) is no agreement."""
    terms = sample_terms()
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
