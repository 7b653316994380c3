"""Signed tree heads: a node's signed statement "my log had `tree_size` entries with root `root_hash`".

The signed bytes are the RFC 8785 canonical JSON of {type, node, tree_size, root_hash (hex), timestamp}.
The `type` member separates these signatures from every other thing the same Ed25519 key signs (agreements,
revocations). A head carries the signer's certificate, so anyone holding only the CA certificate can check it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from audit.entry import TIMESTAMP_FORMAT
from audit.errors import InvalidTreeHead
from audit.merkle import HASH_SIZE
from crypto import Identity, Principal, canonical_json, verify_signature
from crypto.errors import InvalidCertificate, InvalidSignature

HEAD_TYPE = "ipspace.audit.tree_head.v1"
_MAX_TREE_SIZE = 2**53 - 1  # the largest integer canonical JSON carries exactly
_HEX_ROOT = re.compile(f"[0-9a-f]{{{2 * HASH_SIZE}}}")


@dataclass(frozen=True)
class SignedTreeHead:
    """A tree head and its signature. `signature` is base64; `root_hash` is lowercase hex."""

    node: str
    tree_size: int
    root_hash: str
    timestamp: str
    signature: str
    certificate_pem: str

    @property
    def root(self) -> bytes:
        """The root hash as bytes; raise InvalidTreeHead if `root_hash` is not 64 lowercase hex digits."""
        if not isinstance(self.root_hash, str) or not _HEX_ROOT.fullmatch(self.root_hash):
            raise InvalidTreeHead(f"root hash {self.root_hash!r} is not {2 * HASH_SIZE} lowercase hex digits")
        return bytes.fromhex(self.root_hash)

    def signed_payload(self) -> bytes:
        """The exact bytes the signature covers."""
        return head_payload(self.node, self.tree_size, self.root_hash, self.timestamp)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SignedTreeHead:
        """Rebuild a head from `to_dict` output; raise InvalidTreeHead naming a missing or mistyped field."""
        if not isinstance(data, dict):
            raise InvalidTreeHead("a tree head must be a JSON object")
        expected = {
            "node": str,
            "tree_size": int,
            "root_hash": str,
            "timestamp": str,
            "signature": str,
            "certificate_pem": str,
        }
        if set(data) != set(expected):
            raise InvalidTreeHead(
                f"a tree head has exactly the fields {sorted(expected)}, got {sorted(data)}"
            )
        for name, kind in expected.items():
            if not isinstance(data[name], kind) or isinstance(data[name], bool):
                raise InvalidTreeHead(f"tree head field {name!r} must be of type {kind.__name__}")
        return cls(**data)

    @classmethod
    def from_wire(cls, head_json: bytes, signature: bytes, certificate_pem: bytes) -> SignedTreeHead:
        """Rebuild a head from its signed JSON, raw signature and PEM certificate (the Audit RPC's form).

        Raises InvalidTreeHead if the JSON is not a tree head's signed form; the signature is not checked here
        (`verify_tree_head` does that), but the rebuilt head signs exactly `head_json` or fails verification.
        """
        try:
            payload = json.loads(head_json)
            pem = certificate_pem.decode("ascii")
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise InvalidTreeHead("the signed head is not JSON, or its certificate is not PEM text") from None
        if not isinstance(payload, dict) or payload.get("type") != HEAD_TYPE:
            raise InvalidTreeHead(f"the signed head is not of type {HEAD_TYPE!r}")
        data = {name: payload.get(name) for name in ("node", "tree_size", "root_hash", "timestamp")}
        data["signature"] = base64.b64encode(signature).decode("ascii")
        data["certificate_pem"] = pem
        return cls.from_dict(data)


def head_payload(node: str, tree_size: int, root_hash: str, timestamp: str) -> bytes:
    """Canonical JSON of a tree head's signed fields."""
    return canonical_json(
        {
            "type": HEAD_TYPE,
            "node": node,
            "tree_size": tree_size,
            "root_hash": root_hash,
            "timestamp": timestamp,
        }
    )


def sign_tree_head(
    signer: Identity, node: str, tree_size: int, root: bytes, timestamp: str
) -> SignedTreeHead:
    """Sign the head of `node`'s log at `tree_size` with `root`, using the signer's Ed25519 signing key."""
    if len(root) != HASH_SIZE or tree_size < 0:
        raise ValueError(f"a tree head needs a {HASH_SIZE}-byte root and a size >= 0")
    root_hash = root.hex()
    signature = signer.sign(head_payload(node, tree_size, root_hash, timestamp))
    return SignedTreeHead(
        node=node,
        tree_size=tree_size,
        root_hash=root_hash,
        timestamp=timestamp,
        signature=base64.b64encode(signature).decode("ascii"),
        certificate_pem=signer.signing_cert_pem.decode("ascii"),
    )


def verify_tree_head(head: SignedTreeHead, ca_cert_pem: bytes) -> Principal:
    """Check a head's signature and signer; return the signer.

    Guarantees: the certificate is a signing certificate issued by the CA in `ca_cert_pem` and valid at the
    head's own timestamp (so a bundle stays verifiable after the node's certificate expires), the signature
    covers exactly the head's fields, and the certificate's subject name is the head's node. Raises
    InvalidTreeHead with the reason otherwise.
    """
    if not isinstance(head.tree_size, int) or not 0 <= head.tree_size <= _MAX_TREE_SIZE:
        raise InvalidTreeHead(f"tree size {head.tree_size!r} is not an integer in 0..2**53-1")
    _ = head.root
    signed_at = parse_timestamp(head.timestamp)
    try:
        signature = base64.b64decode(head.signature, validate=True)
        certificate = head.certificate_pem.encode("ascii")
        payload = head.signed_payload()
    except (binascii.Error, ValueError):  # UnicodeError and canonicalization errors are ValueErrors
        raise InvalidTreeHead("the head's signature, certificate or node name is malformed") from None
    try:
        signer = verify_signature(certificate, ca_cert_pem, payload, signature, now=signed_at)
    except (InvalidCertificate, InvalidSignature) as exc:
        raise InvalidTreeHead(f"signature does not verify: {exc}") from None
    if signer.name != head.node:
        raise InvalidTreeHead(f"head names node {head.node!r} but is signed by {signer.org}/{signer.name}")
    return signer


def parse_timestamp(text: str) -> datetime:
    """Parse the head/entry time format (RFC 3339 UTC with microseconds and Z); raise InvalidTreeHead."""
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise InvalidTreeHead(f"timestamp {text!r} is not of the form 2025-01-31T12:00:00.000000Z") from None
