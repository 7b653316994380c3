"""Agreements: terms signed by the consumer (a proposal), then countersigned by the provider.

An agreement's id is the digest of its terms, so it is the same for the proposal and every signed copy.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, ValidationError

from contracts.errors import AgreementError
from contracts.fields import FrozenModel, describe_validation_error, utc_text
from contracts.signing import Signature, require_party, sign_as_party, verify_party_signature
from contracts.terms import AgreementTerms
from crypto import Identity, canonical_json, digest

AGREEMENT_SIGNATURE_TAG = b"ipspace/agreement/v1\n"


class Agreement(FrozenModel):
    terms: AgreementTerms
    signatures: tuple[Signature, ...] = Field(default=(), max_length=2)

    @property
    def agreement_id(self) -> str:
        """The digest of the canonical terms ("sha256:<hex>"): the same for every copy of this agreement."""
        return digest(self.terms.model_dump(mode="json"))

    def verify(self, ca_cert_pem: bytes, *, now: datetime | None = None) -> None:
        """Check that exactly one consumer and one provider signed these terms with certificates of this CA.

        The consumer's signer must be of `terms.consumer_org` as consumer or builder, the provider's of
        `terms.provider_org` as provider. The terms' expiry is not checked here (the policy checks it per
        call). Raises AgreementError naming the first problem.
        """
        parties = sorted(signature.role for signature in self.signatures)
        if parties != ["consumer", "provider"]:
            raise AgreementError(f"an agreement needs a consumer and a provider signature; it has {parties}")
        message = agreement_message(self.terms)
        for signature in self.signatures:
            verify_party_signature(signature, message, self.terms, ca_cert_pem, now=now, error=AgreementError)


def agreement_message(terms: AgreementTerms) -> bytes:
    """The exact bytes both parties sign: tag + canonical JSON of the terms."""
    return AGREEMENT_SIGNATURE_TAG + canonical_json(terms.model_dump(mode="json"))


def propose(terms: AgreementTerms, consumer: Identity) -> Agreement:
    """The consumer's half: `terms` signed by `consumer`, waiting for the provider's countersignature.

    Raises AgreementError if `consumer` is not of `terms.consumer_org` as consumer or builder.
    """
    require_party(consumer.principal(), terms, "consumer", AgreementError)
    signature = sign_as_party(consumer, "consumer", agreement_message(terms))
    return Agreement(terms=terms, signatures=(signature,))


def verify_proposal(agreement: Agreement, ca_cert_pem: bytes, *, now: datetime | None = None) -> None:
    """Check that `agreement` is a proposal: exactly one signature, the consumer's, by a certificate of this
    CA belonging to `terms.consumer_org` as consumer or builder. Raises AgreementError naming the problem."""
    if [signature.role for signature in agreement.signatures] != ["consumer"]:
        raise AgreementError("a proposal must carry exactly one signature, the consumer's")
    verify_party_signature(
        agreement.signatures[0],
        agreement_message(agreement.terms),
        agreement.terms,
        ca_cert_pem,
        now=now,
        error=AgreementError,
    )


def countersign(agreement: Agreement, provider: Identity, *, now: datetime | None = None) -> Agreement:
    """The provider's half: check the consumer's signature (against the provider's CA), then add its own.

    Refuses a proposal with anything but one consumer signature, terms expired at `now`, or a `provider`
    that is not the terms' provider. Raises AgreementError.
    """
    terms = agreement.terms
    verify_proposal(agreement, provider.ca_cert_pem, now=now)
    require_party(provider.principal(), terms, "provider", AgreementError)
    moment = now or datetime.now(UTC)
    for label, expiry in (("agreement", terms.expires_at), ("offer", terms.constraints.expires_at)):
        if expiry is not None and moment >= expiry:
            raise AgreementError(f"the {label} expired at {utc_text(expiry)}; it can no longer be signed")
    provider_signature = sign_as_party(provider, "provider", agreement_message(terms))
    return Agreement(terms=terms, signatures=(agreement.signatures[0], provider_signature))


def parse_agreement(data: bytes | str) -> Agreement:
    """An agreement (or a proposal) from its JSON; signatures are NOT checked. Raises AgreementError."""
    try:
        return Agreement.model_validate_json(data)
    except ValidationError as exc:
        raise AgreementError(f"malformed agreement: {describe_validation_error(exc)}") from exc
