"""Second audit logs signed with a real node's own key: what a dishonest provider could keep beside the log
its server really serves, to show one party one history and another party another."""

from __future__ import annotations

from pathlib import Path

from audit import AuditEntry, AuditLog
from crypto import Identity


def catalog_entry(n: int, node: str, *, variant: str = "") -> AuditEntry:
    """A plausible entry (a member listing the catalog); ``variant`` makes otherwise equal entries differ."""
    return AuditEntry(
        time="2026-01-01T00:00:00.000000Z",
        node=node,
        actor=f"member-{n}{variant}",
        org="acme",
        role="consumer",
        method="/ipspace.v1.Catalog/ListDatasets",
        decision="allow",
        status="OK",
        reason="the catalog is open to the role 'consumer'",
    )


def forged_log(path: Path, identity: Identity, entries: list[AuditEntry]) -> AuditLog:
    """A log at ``path`` holding ``entries``, signed with ``identity`` (heads only when asked)."""
    log = AuditLog(path, identity, identity.name, head_every=10_000, head_interval_s=3600)
    for item in entries:
        log.append(item)
    return log
