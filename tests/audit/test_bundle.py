"""Export bundles and the offline verifier: the happy path, and every kind of tampering named by index."""

from __future__ import annotations

import base64
import json
import random
import shutil
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from audit import (
    AuditEntry,
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

ENTRIES = 35
HEAD_EVERY = 10  # heads at 10, 20, 30, and the export's own at 35


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


# --- tampered entries ---


def _replace_entry(lines: list[bytes], index: int, old: bytes, new: bytes) -> list[bytes]:
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new)
    return lines


def test_edited_entry_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: _replace_entry(lines, 13, b"user-13", b"user-66"))
    assert first_bad(tampered, ca.cert_pem) == 13


def test_edited_entry_with_rewritten_leaf_hash_is_placed_at_its_heads_range(bundle: Path, tmp_path: Path, ca):
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: _replace_entry(lines, 13, b"user-13", b"user-66"))
    forged = leaf_hash((tampered / "entries.jsonl").read_bytes().splitlines()[13]).hex().encode()
    edit_lines(tampered / "leaf-hashes.txt", lambda lines: [*lines[:13], forged, *lines[14:]])
    assert first_bad(tampered, ca.cert_pem) == 10  # the head at 10 still holds; the one at 20 does not


def test_deleted_entry_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: lines[:13] + lines[14:])
    assert first_bad(tampered, ca.cert_pem) == 13


def test_deleted_entry_and_its_leaf_hash_are_caught_by_the_embedded_index(bundle: Path, tmp_path: Path, ca):
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: lines[:13] + lines[14:])
    edit_lines(tampered / "leaf-hashes.txt", lambda lines: lines[:13] + lines[14:])
    with pytest.raises(BundleInvalid, match="also: the entry at position 13 carries index 14") as caught:
        verify_bundle(tampered, ca.cert_pem)
    # With the recorded hashes rewritten, nothing after the last matching head (10) is proven any more.
    assert caught.value.first_bad_index == 10


def test_truncated_tail_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: lines[:-2])
    assert first_bad(tampered, ca.cert_pem) == ENTRIES - 2


def test_reordered_entries_are_named(bundle: Path, tmp_path: Path, ca) -> None:
    def swap(lines: list[bytes]) -> list[bytes]:
        lines[13], lines[16] = lines[16], lines[13]
        return lines

    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", swap)
    assert first_bad(tampered, ca.cert_pem) == 13


def test_inserted_entry_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    forged = prepare_leaf(entry(999)).at(13)  # well formed and carrying the index of its position
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: [*lines[:13], forged, *lines[13:]])
    assert first_bad(tampered, ca.cert_pem) == 13


def test_unsigned_tail_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    extra = prepare_leaf(entry(ENTRIES)).at(ENTRIES)
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: [*lines, extra])
    with pytest.raises(BundleInvalid, match="not covered by any signed tree head") as caught:
        verify_bundle(tampered, ca.cert_pem)
    assert caught.value.first_bad_index == ENTRIES


def test_malformed_entry_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: [*lines[:21], b"{oops", *lines[22:]])
    assert first_bad(tampered, ca.cert_pem) == 21


# --- tampered heads and proofs ---


def _edit_head(tampered: Path, number: int, change: Callable[[dict], dict]) -> None:
    def apply(heads: object) -> object:
        assert isinstance(heads, list)
        heads[number] = change(heads[number])
        return heads

    edit_json(tampered / "heads.json", apply)


def test_head_with_a_bad_signature_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)

    def flip(head: dict) -> dict:
        signature = bytearray(base64.b64decode(head["signature"]))
        signature[5] ^= 1
        return {**head, "signature": base64.b64encode(bytes(signature)).decode()}

    _edit_head(tampered, 1, flip)
    with pytest.raises(BundleInvalid, match="tree head #1") as caught:
        verify_bundle(tampered, ca.cert_pem)
    assert caught.value.first_bad_index == 10


def test_head_with_an_edited_root_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    _edit_head(tampered, 2, lambda head: {**head, "root_hash": "00" * 32})
    assert first_bad(tampered, ca.cert_pem) == 20


def _resign(head: dict, signer: Identity, *, node: str = "node-a", root: bytes | None = None) -> dict:
    root = bytes.fromhex(head["root_hash"]) if root is None else root
    return sign_tree_head(signer, node, head["tree_size"], root, head["timestamp"]).to_dict()


def test_head_signed_under_another_ca_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    rogue_ca = CertificateAuthority.create(tmp_path / "rogue-ca")
    impostor = rogue_ca.issue("node-a", "acme", Role.PROVIDER)
    tampered = copy(bundle, tmp_path)
    _edit_head(tampered, 2, lambda head: _resign(head, impostor))
    assert first_bad(tampered, ca.cert_pem) == 20


def test_head_signed_by_another_member_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    other = ca.issue("node-b", "acme", Role.PROVIDER)
    tampered = copy(bundle, tmp_path)
    _edit_head(tampered, 2, lambda head: _resign(head, other))
    with pytest.raises(BundleInvalid, match="signed by acme/node-b") as caught:
        verify_bundle(tampered, ca.cert_pem)
    assert caught.value.first_bad_index == 20


def test_genuinely_signed_head_with_a_wrong_root_is_named(bundle: Path, tmp_path: Path, ca, node) -> None:
    tampered = copy(bundle, tmp_path)
    _edit_head(tampered, 2, lambda head: _resign(head, node, root=b"\x42" * 32))
    with pytest.raises(BundleInvalid, match="do not hash to the root signed at size 30") as caught:
        verify_bundle(tampered, ca.cert_pem)
    assert caught.value.first_bad_index == 20


def test_tampered_consistency_proof_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    def flip(links: object) -> object:
        assert isinstance(links, list)
        first = bytearray.fromhex(links[0]["proof"][0])
        first[0] ^= 0x80
        links[0]["proof"][0] = first.hex()
        return links

    tampered = copy(bundle, tmp_path)
    edit_json(tampered / "consistency.json", flip)
    with pytest.raises(BundleInvalid, match="not consistent") as caught:
        verify_bundle(tampered, ca.cert_pem)
    assert caught.value.first_bad_index == 10


def test_missing_consistency_proof_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_json(tampered / "consistency.json", lambda links: links[1:])  # type: ignore[index]
    assert first_bad(tampered, ca.cert_pem) == 10


def test_reordered_heads_are_named(bundle: Path, tmp_path: Path, ca) -> None:
    def swap(heads: object) -> object:
        assert isinstance(heads, list)
        heads[1], heads[2] = heads[2], heads[1]
        return heads

    tampered = copy(bundle, tmp_path)
    edit_json(tampered / "heads.json", swap)
    assert first_bad(tampered, ca.cert_pem) == 10


def test_verifier_trusts_only_the_ca_it_is_given(bundle: Path, tmp_path: Path) -> None:
    other_ca = CertificateAuthority.create(tmp_path / "other-ca")
    assert first_bad(bundle, other_ca.cert_pem) == 0


def test_unreadable_bundles_name_no_index(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    (tampered / "manifest.json").unlink()
    assert first_bad(tampered, ca.cert_pem) is None
    assert first_bad(tmp_path / "nowhere", ca.cert_pem) is None


def test_bundle_without_heads_is_refused(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_json(tampered / "heads.json", lambda heads: [])
    edit_json(tampered / "consistency.json", lambda links: [])
    assert first_bad(tampered, ca.cert_pem) == 0


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
        tmp_path / "big" / "entries.jsonl", lambda lines: _replace_entry(lines, 12_345, b"user-1", b"user-2")
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


def test_random_corruption_raises_only_bundle_invalid(bundle: Path, tmp_path: Path, ca) -> None:
    rng = random.Random(7)
    files = sorted(p.name for p in bundle.iterdir())
    for attempt in range(60):
        tampered = tmp_path / f"fuzz-{attempt}"
        shutil.copytree(bundle, tampered)
        target = tampered / rng.choice(files)
        data = bytearray(target.read_bytes())
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(data))
            kind = rng.choice(["flip", "cut", "insert"])
            if kind == "flip":
                data[position] ^= 1 << rng.randrange(8)
            elif kind == "cut":
                del data[position : position + rng.randint(1, 40)]
            else:
                data[position:position] = rng.choice([b"\n", b'"', b"\\udc80", b"[" * 5000, b"9" * 30])
        target.write_bytes(bytes(data))
        try:
            verify_bundle(tampered, ca.cert_pem)
        except BundleInvalid:
            continue
        # Only the advisory or informational files may change without the bundle failing, or a JSON file's
        # layout (its value unchanged).
        informational = {"leaf-hashes.txt", "ca-cert.pem", "signing-cert.pem", "manifest.json"}
        assert target.name in informational or _same_json(target, bundle / target.name), target


def _same_json(changed: Path, original: Path) -> bool:
    try:
        return changed.suffix == ".json" and json.loads(changed.read_bytes()) == json.loads(
            original.read_bytes()
        )
    except ValueError:
        return False
