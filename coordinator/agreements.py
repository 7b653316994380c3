"""The agreement registry: signed agreements their parties registered with the coordinator, so jobs can name
them.

Only a party may register an agreement: a consumer or builder of the terms' consumer org, or a provider of
its provider org. Both signatures are verified against the data space's CA before anything is stored. The
coordinator's copy is a convenience, not an authority: every node checks the agreement it holds itself.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from contracts.agreements import Agreement
from contracts.errors import AgreementError
from contracts.fields import UtcDatetime, utc_text
from contracts.signing import CONSUMER_ROLES, PROVIDER_ROLES
from coordinator.database import create_schema, reading, transaction
from crypto import Principal

SCHEMA = """
CREATE TABLE IF NOT EXISTS agreements (
    agreement_id TEXT PRIMARY KEY,
    consumer_org TEXT NOT NULL,
    provider_org TEXT NOT NULL,
    agreement_json TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agreements_by_consumer ON agreements (consumer_org);
CREATE INDEX IF NOT EXISTS agreements_by_provider ON agreements (provider_org);
"""


class AgreementRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAParty(AgreementRefused):
    """The caller is not one of the agreement's two parties (by org and role)."""


class InvalidAgreement(AgreementRefused):
    """The agreement's signatures do not hold against the CA, or it has expired."""


class RegisteredAgreement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str
    registered_by: str
    registered_at: UtcDatetime
    agreement: Agreement


class AgreementRegistry:
    def __init__(self, path: Path, ca_cert_pem: bytes) -> None:
        self.path = Path(path)
        self._ca_cert_pem = ca_cert_pem
        create_schema(self.path, SCHEMA)

    def register(
        self, agreement: Agreement, caller: Principal, *, now: datetime | None = None
    ) -> tuple[RegisteredAgreement, bool]:
        """Store ``agreement`` for ``caller``; returns the stored entry and whether it is new.

        Guarantees: the caller is one of its parties; both signatures verify against the CA at ``now``; it
        has not expired. Registering it again (by either party) returns the first entry. Raises NotAParty or
        InvalidAgreement with the reason.
        """
        moment = now or datetime.now(UTC)
        terms = agreement.terms
        require_party(caller, agreement)
        try:
            agreement.verify(self._ca_cert_pem, now=moment)
        except AgreementError as error:
            raise InvalidAgreement(f"the agreement's signatures do not hold: {error.reason}") from None
        expiry = expired_at(agreement, moment)
        if expiry is not None:
            raise InvalidAgreement(f"the agreement expired at {utc_text(expiry)}")
        agreement_id = agreement.agreement_id
        with transaction(self.path) as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO agreements (agreement_id, consumer_org, provider_org, agreement_json, "
                "registered_by, registered_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    agreement_id,
                    terms.consumer_org,
                    terms.provider_org,
                    agreement.model_dump_json(),
                    f"{caller.org}/{caller.name}",
                    utc_text(moment),
                ),
            ).rowcount
        entry = self.entry(agreement_id)
        if entry is None:  # entries are never deleted, so this means the file changed under us
            raise RuntimeError(
                f"agreement {agreement_id} vanished from {self.path} right after it was stored"
            )
        return entry, inserted == 1

    def entry(self, agreement_id: str) -> RegisteredAgreement | None:
        with reading(self.path) as db:
            row = db.execute("SELECT * FROM agreements WHERE agreement_id = ?", (agreement_id,)).fetchone()
        return _entry(row) if row is not None else None

    def get(self, agreement_id: str) -> Agreement | None:
        entry = self.entry(agreement_id)
        return entry.agreement if entry is not None else None

    def all(self) -> list[RegisteredAgreement]:
        """Every registered agreement (for a regulator), oldest registration first."""
        with reading(self.path) as db:
            rows = db.execute("SELECT * FROM agreements ORDER BY registered_at, agreement_id").fetchall()
        return [_entry(row) for row in rows]

    def for_org(self, org: str) -> list[RegisteredAgreement]:
        """The agreements ``org`` is a party of, oldest registration first."""
        with reading(self.path) as db:
            rows = db.execute(
                "SELECT * FROM agreements WHERE consumer_org = ?1 OR provider_org = ?1 "
                "ORDER BY registered_at, agreement_id",
                (org,),
            ).fetchall()
        return [_entry(row) for row in rows]


def require_party(caller: Principal, agreement: Agreement) -> None:
    """Raise NotAParty unless ``caller`` may act for one side of ``agreement``."""
    terms = agreement.terms
    consumer = caller.org == terms.consumer_org and caller.role in CONSUMER_ROLES
    provider = caller.org == terms.provider_org and caller.role in PROVIDER_ROLES
    if not (consumer or provider):
        raise NotAParty(
            f"only the agreement's parties may register it: org {terms.consumer_org!r} as consumer or "
            f"builder, or org {terms.provider_org!r} as provider; {caller.name!r} is of org {caller.org!r} "
            f"with the role {caller.role.value!r}"
        )


def expired_at(agreement: Agreement, now: datetime) -> datetime | None:
    """When the agreement (or the offer it accepts) expired, if it has by ``now``; else None."""
    terms = agreement.terms
    for expiry in (terms.expires_at, terms.constraints.expires_at):
        if expiry is not None and now >= expiry:
            return expiry
    return None


def _entry(row: sqlite3.Row) -> RegisteredAgreement:
    return RegisteredAgreement(
        agreement_id=row["agreement_id"],
        registered_by=row["registered_by"],
        registered_at=datetime.fromisoformat(row["registered_at"]),
        agreement=Agreement.model_validate_json(row["agreement_json"]),
    )
