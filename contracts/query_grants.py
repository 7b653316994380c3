"""Query grants: a consumer's signed consent to one encrypted match query under one of its agreements.

A consumer's query may reach a node through the coordinator, which fans it out to every node the consumer
holds an agreement with. The node never takes the coordinator's word for who asks: the call carries a grant
the agreement's consumer signed over the digest of the exact query (parameters, rotation keys, ciphertext
and projection), valid for minutes and usable once. So the coordinator can forward a query but cannot make
one, change one, or replay one against the consumer's query budget.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from contracts.agreements import Agreement
from contracts.errors import ContractError
from contracts.fields import Digest, FrozenModel, Name, UtcDatetime, describe_validation_error
from contracts.signing import Signature, require_party, sign_as_party, verify_consumer_grant
from crypto import Identity, Principal, canonical_json

QUERY_GRANT_SIGNATURE_TAG = b"ipspace/query-grant/v1\n"
QUERY_DIGEST_TAG = b"ipspace/match-query/v1\n"
MAX_GRANT_LIFETIME = timedelta(minutes=15)
DEFAULT_LIFETIME = timedelta(minutes=5)

GrantId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class QueryGrantError(ContractError):
    """A query grant that does not hold, or does not cover the query it came with."""


def match_query_digest(
    parameters: Sequence[int], evaluation_keys: bytes, query: bytes, projection: bytes
) -> str:
    """SHA-256 over everything a match query asks the node to compute with, each part length-prefixed:
    the CKKS parameters (ring degree, modulus bits..., scale bits), the rotation keys, the ciphertext and
    the projection. "sha256:<hex>"."""
    digest = hashlib.sha256(QUERY_DIGEST_TAG)
    parts = [",".join(str(int(value)) for value in parameters).encode(), evaluation_keys, query, projection]
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return "sha256:" + digest.hexdigest()


class QueryGrantBody(FrozenModel):
    """What the consumer consents to; every field is signed."""

    grant_id: GrantId  # random: a node answers each grant once
    agreement_id: Digest
    dataset: Name
    purpose: Name
    query_digest: Digest
    issued_at: UtcDatetime
    expires_at: UtcDatetime

    @model_validator(mode="after")
    def _window(self) -> QueryGrantBody:
        if not self.issued_at < self.expires_at <= self.issued_at + MAX_GRANT_LIFETIME:
            minutes = int(MAX_GRANT_LIFETIME.total_seconds() // 60)
            raise ValueError(f"a query grant must expire after it is issued and within {minutes} minutes")
        return self


class QueryGrant(FrozenModel):
    body: QueryGrantBody
    signature: Signature

    def verify(
        self, agreement: Agreement, query_digest: str, ca_cert_pem: bytes, *, now: datetime
    ) -> Principal:
        """Check that the agreement's consumer signed this grant for this agreement and this very query,
        valid at `now`; return the signer. Raises QueryGrantError naming the first problem."""
        body = self.body
        terms = agreement.terms
        if body.agreement_id != agreement.agreement_id:
            raise QueryGrantError(f"the grant is for agreement {body.agreement_id[:19]}…, not this one")
        if body.query_digest != query_digest:
            raise QueryGrantError("the grant was signed for another query than the one that came with it")
        return verify_consumer_grant(
            self.signature,
            query_grant_message(body),
            terms,
            ca_cert_pem,
            named=(body.dataset, body.purpose),
            window=(body.issued_at, body.expires_at),
            now=now,
            error=QueryGrantError,
            kind="query grant",
        )


def query_grant_message(body: QueryGrantBody) -> bytes:
    """The exact bytes the consumer signs: tag + canonical JSON of the body."""
    return QUERY_GRANT_SIGNATURE_TAG + canonical_json(body.model_dump(mode="json"))


def sign_query_grant(
    consumer: Identity,
    agreement: Agreement,
    query_digest: str,
    *,
    lifetime: timedelta = DEFAULT_LIFETIME,
    now: datetime | None = None,
) -> QueryGrant:
    """A one-use grant for the query whose digest is `query_digest`, under `agreement`, signed by `consumer`.

    Raises QueryGrantError when `consumer` may not sign for the agreement's consumer side or a value is out
    of range (the message names the field).
    """
    require_party(consumer.principal(), agreement.terms, "consumer", QueryGrantError)
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    try:
        body = QueryGrantBody(
            grant_id=secrets.token_hex(16),
            agreement_id=agreement.agreement_id,
            dataset=agreement.terms.dataset,
            purpose=agreement.terms.purpose,
            query_digest=query_digest,
            issued_at=issued_at,
            expires_at=issued_at + lifetime,
        )
    except ValidationError as error:
        raise QueryGrantError(describe_validation_error(error)) from None
    return QueryGrant(body=body, signature=sign_as_party(consumer, "consumer", query_grant_message(body)))


def load_query_grant(text: str | bytes) -> QueryGrant:
    """A grant from its JSON text. Raises QueryGrantError naming the first bad field."""
    try:
        return QueryGrant.model_validate_json(text)
    except ValidationError as error:
        raise QueryGrantError(f"not a query grant: {describe_validation_error(error)}") from None
