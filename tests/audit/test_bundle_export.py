"""Export bundles and the offline verifier: genuine bundles, bundles at scale, and heads kept from before."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import pytest

from audit import (
    AuditLog,
    BundleInvalid,
    ConsistencyLink,
    MerkleTree,
    leaf_hash,
    sign_tree_head,
    timestamp_text,
    verify_bundle,
)
from audit.bundle import write_bundle
from audit.entry import prepare_leaf
from crypto import CertificateAuthority, Identity, Role
from tests.audit._bundle_helpers import ENTRIES, copy, edit_lines, entry, first_bad, replace_entry

# --- happy path ---


def test_genuine_bundle_verifies(bundle: Path, ca: CertificateAuthority) -> None:
    summary = verify_bundle(bundle, ca.cert_pem)
    assert (summary.node, summary.org, summary.entries, summary.tree_size) == (
        "node-a",
        "acme",
        ENTRIES,
        ENTRIES,
    )
    assert summary.heads == 4
    leaves = (bundle / "entries.jsonl").read_bytes().splitlines()
    assert summary.last_root == MerkleTree(leaf_hash(leaf) for leaf in leaves).root().hex()
    assert sorted(p.name for p in bundle.iterdir()) == [
        "ca-cert.pem",
        "consistency.json",
        "entries.jsonl",
        "heads.json",
        "leaf-hashes.txt",
        "manifest.json",
        "signing-cert.pem",
    ]


def test_export_signs_a_fresh_head_so_every_entry_is_covered(tmp_path: Path, node: Identity, ca) -> None:
    with AuditLog(tmp_path / "a.db", node, "node-a", head_every=1000, head_interval_s=3600) as log:
        for i in range(5):
            log.append(entry(i))
        head = log.export_bundle(tmp_path / "bundle")
        assert head.tree_size == 5
        with pytest.raises(FileExistsError):
            log.export_bundle(tmp_path / "bundle")
    assert verify_bundle(tmp_path / "bundle", ca.cert_pem).tree_size == 5


def test_empty_log_exports_a_verifiable_bundle(tmp_path: Path, node: Identity, ca) -> None:
    with AuditLog(tmp_path / "a.db", node, "node-a") as log:
        log.export_bundle(tmp_path / "bundle")
    summary = verify_bundle(tmp_path / "bundle", ca.cert_pem)
    assert (summary.entries, summary.heads, summary.tree_size) == (0, 1, 0)


def test_leaf_hashes_file_is_only_advisory(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    (tampered / "leaf-hashes.txt").write_text("not hex\n")
    assert verify_bundle(tampered, ca.cert_pem).entries == ENTRIES


# --- scale ---


def _synthetic_bundle(
    directory: Path, signer: Identity, ca_cert_pem: bytes, size: int, head_every: int
) -> None:
    prepared = prepare_leaf(entry(1))
    leaves = [prepared.at(i) for i in range(size)]
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)
    stamp = timestamp_text()
    sizes = [*range(head_every, size, head_every), size]
    heads = [sign_tree_head(signer, "node-a", n, tree.root(n), stamp) for n in sizes]
    links = [ConsistencyLink(a, b, tree.consistency_proof(a, b)) for a, b in pairwise(sizes)]
    write_bundle(
        directory,
        node="node-a",
        rows=((leaf, tree.leaf(i)) for i, leaf in enumerate(leaves)),
        heads=heads,
        links=links,
        signing_cert_pem=signer.signing_cert_pem,
        ca_cert_pem=ca_cert_pem,
        exported_at=stamp,
    )


def test_twenty_thousand_entries_verify_quickly(tmp_path: Path, node: Identity, ca) -> None:
    _synthetic_bundle(tmp_path / "big", node, ca.cert_pem, 20_000, 1000)
    started = time.perf_counter()
    summary = verify_bundle(tmp_path / "big", ca.cert_pem)
    elapsed = time.perf_counter() - started
    assert (summary.entries, summary.heads) == (20_000, 20)
    assert elapsed < 10, f"verifying 20k entries took {elapsed:.1f}s"

    edit_lines(
        tmp_path / "big" / "entries.jsonl", lambda lines: replace_entry(lines, 12_345, b"user-1", b"user-2")
    )
    assert first_bad(tmp_path / "big", ca.cert_pem) == 12_345


# --- heads kept from before ---


def test_bundle_extending_a_kept_head_verifies(tmp_path: Path, node: Identity, ca) -> None:
    with AuditLog(tmp_path / "a.db", node, "node-a") as log:
        for i in range(20):
            log.append(entry(i))
        kept = log.sign_head()
        for i in range(20, 30):
            log.append(entry(i))
        log.export_bundle(tmp_path / "bundle")
    assert verify_bundle(tmp_path / "bundle", ca.cert_pem, known_heads=[kept]).tree_size == 30


def test_rolled_back_bundle_is_caught_by_a_kept_head(tmp_path: Path, node: Identity, ca) -> None:
    with AuditLog(tmp_path / "a.db", node, "node-a") as log:
        for i in range(20):
            log.append(entry(i))
        log.export_bundle(tmp_path / "old-bundle")
        for i in range(20, 30):
            log.append(entry(i))
        kept = log.sign_head()
    assert verify_bundle(tmp_path / "old-bundle", ca.cert_pem).tree_size == 20  # fine on its own
    with pytest.raises(BundleInvalid, match="rolled back") as caught:
        verify_bundle(tmp_path / "old-bundle", ca.cert_pem, known_heads=[kept])
    assert caught.value.first_bad_index == 20


def test_rewritten_and_resigned_history_is_caught_by_a_kept_head(tmp_path: Path, node: Identity, ca) -> None:
    with AuditLog(tmp_path / "a.db", node, "node-a") as log:
        for i in range(20):
            log.append(entry(i))
        kept_early = log.sign_head()
    # The node starts over with entry 5 changed, and signs the new history with its genuine key.
    with AuditLog(tmp_path / "b.db", node, "node-a", head_every=10) as rewritten:
        for i in range(30):
            rewritten.append(entry(500 if i == 5 else i))
        rewritten.export_bundle(tmp_path / "bundle")
    assert verify_bundle(tmp_path / "bundle", ca.cert_pem).entries == 30  # self-consistent
    with pytest.raises(BundleInvalid, match="history was rewritten") as caught:
        verify_bundle(tmp_path / "bundle", ca.cert_pem, known_heads=[kept_early])
    assert caught.value.first_bad_index == 0


def test_kept_head_of_another_node_is_refused(bundle: Path, tmp_path: Path, ca) -> None:
    other = ca.issue("node-b", "acme", Role.PROVIDER)
    with AuditLog(tmp_path / "b.db", other, "node-b") as log:
        log.append(entry(0))
        foreign = log.sign_head()
    with pytest.raises(BundleInvalid, match="for node 'node-b'"):
        verify_bundle(bundle, ca.cert_pem, known_heads=[foreign])
