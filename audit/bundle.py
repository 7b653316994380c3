"""The export bundle: a directory that lets anyone holding the CA certificate check a node's log offline.

Layout (all text, readable with ordinary tools):

    manifest.json       {"format": "ipspace-audit-bundle", "version": 1, node, entries, heads, exported_at}
    entries.jsonl       one leaf per line, line i = entry i: the exact canonical JSON bytes that were hashed
                        (RFC 8785 escapes control characters, so a leaf never contains a newline byte)
    leaf-hashes.txt     the leaf hash recorded when each entry was appended, hex, one per line; advisory: the
                        verifier uses it only to locate a bad entry when a recomputed root does not match
    heads.json          every signed tree head up to the bundle's size, by increasing tree_size; the export
                        signs a fresh head first, so the last head covers every entry
    consistency.json    [{"first", "second", "proof": [hex, ...]}] between each pair of consecutive heads
    signing-cert.pem    the node's signing certificate (each head also carries the certificate that signed it)
    ca-cert.pem         the CA certificate, for information only: the verifier trusts only the CA it is given

Nothing read here is trusted; `audit.verify` decides what the contents prove.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import BundleInvalid, InvalidTreeHead
from audit.heads import SignedTreeHead
from audit.merkle import HASH_SIZE

BUNDLE_FORMAT = "ipspace-audit-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
ENTRIES = "entries.jsonl"
LEAF_HASHES = "leaf-hashes.txt"
HEADS = "heads.json"
CONSISTENCY = "consistency.json"
SIGNING_CERT = "signing-cert.pem"
CA_CERT = "ca-cert.pem"


@dataclass(frozen=True)
class ConsistencyLink:
    """A consistency proof from the head of size `first` to the head of size `second`."""

    first: int
    second: int
    proof: list[bytes]


@dataclass(frozen=True)
class BundleContents:
    """A bundle as read from disk, unverified. `leaf_hashes` is None when that advisory file is unusable."""

    node: str
    leaves: list[bytes]
    leaf_hashes: list[bytes] | None
    heads: list[SignedTreeHead]
    links: list[ConsistencyLink]
    signing_cert_pem: bytes
    ca_cert_pem: bytes


def write_bundle(
    directory: Path,
    *,
    node: str,
    rows: Iterable[tuple[bytes, bytes]],
    heads: list[SignedTreeHead],
    links: list[ConsistencyLink],
    signing_cert_pem: bytes,
    ca_cert_pem: bytes,
    exported_at: str,
) -> int:
    """Write a bundle into `directory` (created; FileExistsError if it exists) from (leaf, leaf hash) rows.

    Returns the number of entries written. The manifest is written last, so a bundle without one is known
    to be incomplete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=False)
    count = 0
    with (directory / ENTRIES).open("wb") as entries, (directory / LEAF_HASHES).open("w") as hashes:
        for leaf, digest in rows:
            if b"\n" in leaf:
                raise ValueError(f"entry {count} contains a newline byte and is not canonical JSON")
            entries.write(leaf + b"\n")
            hashes.write(digest.hex() + "\n")
            count += 1
    _write_json(directory / HEADS, [head.to_dict() for head in heads])
    _write_json(
        directory / CONSISTENCY,
        [
            {"first": link.first, "second": link.second, "proof": [h.hex() for h in link.proof]}
            for link in links
        ],
    )
    (directory / SIGNING_CERT).write_bytes(signing_cert_pem)
    (directory / CA_CERT).write_bytes(ca_cert_pem)
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "node": node,
        "entries": count,
        "heads": len(heads),
        "exported_at": exported_at,
    }
    _write_json(directory / MANIFEST, manifest)
    return count


def read_bundle(directory: Path) -> BundleContents:
    """Read a bundle directory. Raises BundleInvalid(None, reason) when a file is missing or malformed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleInvalid(None, f"{directory} is not a bundle directory")
    manifest = _read_json(directory / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleInvalid(None, f"{MANIFEST} does not describe an {BUNDLE_FORMAT}")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleInvalid(None, f"bundle version {manifest.get('version')!r} is not supported")
    node = manifest.get("node")
    if not isinstance(node, str):
        raise BundleInvalid(None, f"{MANIFEST} names no node")
    return BundleContents(
        node=node,
        leaves=_split_lines(_read_bytes(directory / ENTRIES)),
        leaf_hashes=_read_leaf_hashes(directory / LEAF_HASHES),
        heads=_read_heads(directory / HEADS),
        links=_read_links(directory / CONSISTENCY),
        signing_cert_pem=_read_bytes(directory / SIGNING_CERT),
        ca_cert_pem=_read_bytes(directory / CA_CERT),
    )


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _read_heads(path: Path) -> list[SignedTreeHead]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise BundleInvalid(None, f"{HEADS} must hold a list of tree heads")
    heads = []
    for position, item in enumerate(data):
        try:
            heads.append(SignedTreeHead.from_dict(item))
        except InvalidTreeHead as exc:
            raise BundleInvalid(
                None, f"tree head #{position} in {HEADS} is malformed: {exc.reason}"
            ) from None
    return heads


def _read_links(path: Path) -> list[ConsistencyLink]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise BundleInvalid(None, f"{CONSISTENCY} must hold a list of proofs")
    links = []
    for position, item in enumerate(data):
        try:
            first, second, proof = item["first"], item["second"], item["proof"]
            if not (isinstance(first, int) and isinstance(second, int) and isinstance(proof, list)):
                raise TypeError("wrong types")
            links.append(ConsistencyLink(first, second, [bytes.fromhex(value) for value in proof]))
        except (KeyError, TypeError, ValueError):
            raise BundleInvalid(
                None, f"consistency proof #{position} in {CONSISTENCY} is malformed"
            ) from None
    return links


def _read_leaf_hashes(path: Path) -> list[bytes] | None:
    try:
        hashes = [bytes.fromhex(line) for line in path.read_text(encoding="ascii").splitlines()]
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return hashes if all(len(value) == HASH_SIZE for value in hashes) else None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleInvalid(None, f"cannot read {path.name}: {exc.strerror or exc}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_bytes(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleInvalid(None, f"{path.name} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BundleInvalid(None, f"{path.name} nests too deeply") from None


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n", encoding="utf-8")
