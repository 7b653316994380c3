"""Helpers of the bundle tests: the entries a genuine bundle holds, and small editors for tampering."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from audit import AuditEntry, BundleInvalid, verify_bundle

ENTRIES = 35
HEAD_EVERY = 10  # heads at 10, 20, 30, and the export's own at 35


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        time="2025-03-01T12:00:00.000000Z",
        node="node-a",
        actor=f"user-{n}",
        org="beta",
        role="consumer",
        method="/ipspace.v1.Provider/Match",
        decision="allow" if n % 3 else "deny",
        status="OK" if n % 3 else "PERMISSION_DENIED",
        reason="checked",
        charges={"match_queries": 1},
    )


def copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "tampered"
    shutil.copytree(bundle, target)
    return target


def edit_lines(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"".join(line + b"\n" for line in change(lines)))


def edit_json(path: Path, change: Callable[[object], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def first_bad(path: Path, ca_cert_pem: bytes) -> int | None:
    with pytest.raises(BundleInvalid) as caught:
        verify_bundle(path, ca_cert_pem)
    return caught.value.first_bad_index


def replace_entry(lines: list[bytes], index: int, old: bytes, new: bytes) -> list[bytes]:
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new)
    return lines
