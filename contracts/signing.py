"""One party's signature on a contract, and the check that the right member of the right org made it.

Every signature is Ed25519 by the signer's signing certificate (issued by the data-space CA) over a
domain-separation tag followed by the RFC 8785 canonical JSON of the signed body, so an agreement signature
can never pass for a revocation or a tree head. The tags and messages live beside what they sign
(`contracts.agreements`, `contracts.revocations`); this module only signs and checks the bytes it is given.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from contracts.errors import ContractError
from contracts.fields import FrozenModel, Name
from contracts.terms import AgreementTerms
from crypto import Identity, Principal, Role, verify_signature
from crypto.errors import InvalidCertificate, InvalidSignature

CONSUMER_ROLES = frozenset({Role.CONSUMER, Role.BUILDER})
PROVIDER_ROLES = frozenset({Role.PROVIDER})


def _ascii_text(value: str) -> str:
    if not value.isascii():
        raise ValueError("must be ASCII (a PEM certificate)")
    return value


class Signature(FrozenModel):
    """One party's Ed25519 signature; `role` is its side of the agreement, not its certificate's role."""

    signer_org: Name
    role: Literal["consumer", "provider"]
    certificate_pem: Annotated[str, Field(min_length=1, max_length=16384), AfterValidator(_ascii_text)]
    value: Annotated[str, Field(min_length=1, max_length=1024)]  # standard base64


def party_of(terms: AgreementTerms, party: str) -> tuple[str, frozenset[Role]]:
    """The org that signs as `party` of `terms`, and the certificate roles it may sign with."""
    if party == "provider":
        return terms.provider_org, PROVIDER_ROLES
    return terms.consumer_org, CONSUMER_ROLES


def require_party(
    principal: Principal, terms: AgreementTerms, party: str, error: type[ContractError]
) -> None:
    """Check that `principal` may sign as `party` of `terms` (its org and role). Raises `error` if not."""
    org, roles = party_of(terms, party)
    if principal.org != org:
        raise error(f"the {party} must be of org {org!r}; {principal.name!r} is of org {principal.org!r}")
    if principal.role not in roles:
        allowed = " or ".join(sorted(roles))
        raise error(f"the {party} must sign as {allowed}; {principal.name!r} holds the role {principal.role}")


def verify_party_signature(
    signature: Signature,
    message: bytes,
    terms: AgreementTerms,
    ca_cert_pem: bytes,
    *,
    now: datetime | None,
    error: type[ContractError],
) -> Principal:
    """Check `signature` over `message` by a CA-issued certificate of the org and role its party requires;
    return the signer (as its signing certificate names it).

    Raises `error` naming the first problem: a claimed org that is not the party's, a value that is not
    base64, a certificate this CA did not issue (or not valid at `now`), a signature that does not match,
    or a signer of the wrong org or role.
    """
    party = signature.role
    org, _ = party_of(terms, party)
    if signature.signer_org != org:
        raise error(f"the {party} signature claims org {signature.signer_org!r}; the {party} is {org!r}")
    try:
        raw = base64.b64decode(signature.value, validate=True)
    except binascii.Error as exc:
        raise error(f"the {party} signature value is not base64") from exc
    certificate = signature.certificate_pem.encode("ascii")
    try:
        principal = verify_signature(certificate, ca_cert_pem, message, raw, now=now)
    except InvalidCertificate as exc:
        raise error(
            f"the {party}'s signing certificate is not one this data space's CA issued, "
            "or is not valid at this time"
        ) from exc
    except InvalidSignature as exc:
        raise error(f"the {party} signature does not match the signed content") from exc
    require_party(principal, terms, party, error)
    return principal


def sign_as_party(identity: Identity, party: Literal["consumer", "provider"], message: bytes) -> Signature:
    """`message` signed by `identity` for its `party` side; who may sign is checked by the caller."""
    value = base64.b64encode(identity.sign(message)).decode("ascii")
    certificate = identity.signing_cert_pem.decode("ascii")
    return Signature(signer_org=identity.org, role=party, certificate_pem=certificate, value=value)


def verify_consumer_grant(
    signature: Signature,
    message: bytes,
    terms: AgreementTerms,
    ca_cert_pem: bytes,
    *,
    named: tuple[str, str],
    window: tuple[datetime, datetime],
    now: datetime,
    error: type[ContractError],
    kind: str,
) -> Principal:
    """The checks every grant a consumer signs under an agreement shares (job grants, query grants): it names
    the agreement's (dataset, purpose), the agreement's consumer signed `message`, and `now` is inside its
    (issued, expires) window. Returns the signer; raises `error` naming the first problem."""
    dataset, purpose = named
    if named != (terms.dataset, terms.purpose):
        raise error(
            f"the grant names dataset {dataset!r} for {purpose!r}; the agreement covers "
            f"{terms.dataset!r} for {terms.purpose!r}"
        )
    if signature.role != "consumer":
        raise error(f"a {kind} must be signed by the agreement's consumer")
    signer = verify_party_signature(signature, message, terms, ca_cert_pem, now=now, error=error)
    issued_at, expires_at = window
    if now < issued_at:
        raise error(f"the grant is valid from {issued_at.isoformat()}")
    if now >= expires_at:
        raise error(f"the grant expired at {expires_at.isoformat()}")
    return signer
