"""Fixtures the audit tests share: one CA and node identity per module, a fresh database, a genuine bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import AuditLog
from crypto import CertificateAuthority, Identity, Role
from tests.audit._bundle_helpers import ENTRIES, HEAD_EVERY, entry


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def node(ca: CertificateAuthority) -> Identity:
    return ca.issue("node-a", "acme", Role.PROVIDER)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, node: Identity) -> Path:
    """A genuine bundle of ENTRIES entries; tests copy it before tampering."""
    base = tmp_path_factory.mktemp("genuine")
    with AuditLog(base / "audit.db", node, "node-a", head_every=HEAD_EVERY, head_interval_s=3600) as log:
        for i in range(ENTRIES):
            log.append(entry(i))
        log.export_bundle(base / "bundle")
    return base / "bundle"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"
