"""The offline verifier against tampered bundles: every kind of tampering is named by the first bad index."""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from audit import BundleInvalid, leaf_hash, sign_tree_head, verify_bundle
from audit.entry import prepare_leaf
from crypto import CertificateAuthority, Identity, Role
from tests.audit._bundle_helpers import (
    ENTRIES,
    copy,
    edit_json,
    edit_lines,
    entry,
    first_bad,
    replace_entry,
)

# --- tampered entries ---


def test_edited_entry_is_named(bundle: Path, tmp_path: Path, ca) -> None:
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: replace_entry(lines, 13, b"user-13", b"user-66"))
    assert first_bad(tampered, ca.cert_pem) == 13


def test_edited_entry_with_rewritten_leaf_hash_is_placed_at_its_heads_range(bundle: Path, tmp_path: Path, ca):
    tampered = copy(bundle, tmp_path)
    edit_lines(tampered / "entries.jsonl", lambda lines: replace_entry(lines, 13, b"user-13", b"user-66"))
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


# --- random corruption ---


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
