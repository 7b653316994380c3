"""Revocations: a record, signed by either party of an agreement, that ends it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from contracts.agreements import Agreement
from contracts.errors import RevocationError
from contracts.fields import Digest, FreeText, FrozenModel, Name, UtcDatetime, describe_validation_error
from contracts.signing import (
    CONSUMER_ROLES,
    PROVIDER_ROLES,
    Signature,
    party_of,
    sign_as_party,
    verify_party_signature,
)
from crypto import Identity, canonical_json

REVOCATION_SIGNATURE_TAG = b"ipspace/revocation/v1\n"


class RevocationBody(FrozenModel):
    """The signed part of a revocation."""

    agreement_id: Digest
    revoked_by_org: Name
    reason: Annotated[FreeText, Field(min_length=1)]
    revoked_at: UtcDatetime


class Revocation(RevocationBody):
    signature: Signature

    def verify(self, ca_cert_pem: bytes, agreement: Agreement, *, now: datetime | None = None) -> None:
        """Check that a party of `agreement` signed this revocation of it, with a certificate of this CA.

        Raises RevocationError naming the first problem.
        """
        if self.agreement_id != agreement.agreement_id:
            named, actual = self.agreement_id, agreement.agreement_id
            raise RevocationError(f"the revocation is of agreement {named}, not {actual}")
        party = self.signature.role
        org, _ = party_of(agreement.terms, party)
        if self.revoked_by_org != org:
            by = self.revoked_by_org
            raise RevocationError(f"the revocation is by org {by!r}; the agreement's {party} is {org!r}")
        verify_party_signature(
            self.signature,
            revocation_message(self),
            agreement.terms,
            ca_cert_pem,
            now=now,
            error=RevocationError,
        )


def revocation_message(body: RevocationBody) -> bytes:
    """The exact bytes a revoking party signs: tag + canonical JSON of the revocation minus its signature."""
    return REVOCATION_SIGNATURE_TAG + canonical_json(body.model_dump(mode="json", exclude={"signature"}))


def revoke(agreement_id: str, identity: Identity, reason: str, *, now: datetime | None = None) -> Revocation:
    """A revocation of `agreement_id` signed by `identity`, as the party its role implies.

    That the identity's org is that party of the agreement is checked by `Revocation.verify`. Raises
    RevocationError for a role that is party to no agreement, or a malformed id or reason.
    """
    if identity.role in PROVIDER_ROLES:
        party: Literal["consumer", "provider"] = "provider"
    elif identity.role in CONSUMER_ROLES:
        party = "consumer"
    else:
        raise RevocationError(f"a {identity.role} is not a party to agreements and cannot revoke one")
    try:
        body = RevocationBody(
            agreement_id=agreement_id,
            revoked_by_org=identity.org,
            reason=reason,
            revoked_at=now or datetime.now(UTC),
        )
    except ValidationError as exc:
        raise RevocationError(describe_validation_error(exc)) from exc
    return Revocation(**dict(body), signature=sign_as_party(identity, party, revocation_message(body)))


def parse_revocation(data: bytes | str) -> Revocation:
    """A revocation from its JSON; its signature is NOT checked here. Raises RevocationError."""
    try:
        return Revocation.model_validate_json(data)
    except ValidationError as exc:
        raise RevocationError(f"malformed revocation: {describe_validation_error(exc)}") from exc
