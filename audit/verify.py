"""Offline verification of an export bundle, trusting nothing but the CA certificate it is given.

What a passing bundle proves: every tree head is signed by a signing certificate of that CA whose subject is
the bundle's node, heads grow in size and time and are consistent with each other (their consistency proofs
verify), every entry carries its own position as index, the entries hash to the root of every signed head
(recomputed from the entries, not taken from the bundle), and the last head covers every entry.

What a failing bundle reports: `BundleInvalid(first_bad_index, reason)`, the smallest entry index that the
bundle does not prove (the reason adds the next finding as a hint). An edited, deleted, inserted or reordered
entry is named exactly, by its embedded index or by comparing with the leaf hashes recorded at append time
once those are shown to match the signed roots. When the recorded hashes were rewritten too, the failure can
only be placed at the start of the range covered by the first head that does not match. A forged or foreign
head (bad signature, another CA, another node) leaves the entries it alone covers unproven: the first of
them is named.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from audit.bundle import BundleContents, read_bundle
from audit.entry import decode_leaf
from audit.errors import BundleInvalid, InvalidProof, InvalidTreeHead
from audit.heads import SignedTreeHead, verify_tree_head
from audit.merkle import MerkleTree, leaf_hash
from audit.proofs import verify_consistency


@dataclass(frozen=True)
class Summary:
    """What a verified bundle proves: `entries` entries of `node` (of `org`), covered by `heads` heads."""

    node: str
    org: str
    entries: int
    heads: int
    tree_size: int
    last_root: str
    last_head_time: str


class _Findings:
    """The problems found so far, each with the first entry index it leaves unproven."""

    def __init__(self) -> None:
        self._found: list[tuple[int, str]] = []

    def add(self, index: int, reason: str) -> None:
        self._found.append((index, reason))

    def raise_first(self) -> None:
        """Raise BundleInvalid for the smallest index (first found on a tie), naming the next index's too.

        The next finding often says more precisely what happened inside the range the first one leaves
        unproven ("entry 13 carries index 14" inside "entries 10..19 do not hash to the root").
        """
        if not self._found:
            return
        ordered = sorted(self._found, key=lambda found: found[0])  # stable: ties keep the order found
        index, reason = ordered[0]
        others = [other for other in ordered[1:] if other[0] > index]
        if others:
            reason = f"{reason}; also: {others[0][1]}"
        raise BundleInvalid(index, reason)


def verify_bundle(path: Path, ca_cert_pem: bytes, *, known_heads: Sequence[SignedTreeHead] = ()) -> Summary:
    """Verify the bundle directory at `path` against the CA certificate `ca_cert_pem`; return what it proves.

    `known_heads` are heads of the same node that the caller kept from before (pushed to it, or from an
    earlier bundle): the bundle must extend each of them, which exposes a node that rewrote its history and
    re-signed it, or a bundle rolled back to an older state. A valid bundle may still be another node's:
    the caller checks `Summary.node` and `Summary.org`.

    Raises BundleInvalid(first_bad_index, reason); first_bad_index is None only for a bundle that can not be
    read at all (missing or malformed files) or that holds no tree head and no entry.
    """
    return verify_contents(read_bundle(Path(path)), ca_cert_pem, known_heads=known_heads)


def verify_contents(
    contents: BundleContents, ca_cert_pem: bytes, *, known_heads: Sequence[SignedTreeHead] = ()
) -> Summary:
    """Verify bundle contents already read from disk; see `verify_bundle`."""
    leaves = contents.leaves
    if not contents.heads:
        raise BundleInvalid(0 if leaves else None, "the bundle holds no signed tree head")
    findings = _Findings()
    _check_entry_positions(leaves, findings)
    trusted, org = _check_heads(contents, ca_cert_pem, findings)
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)  # recomputed: the bundle's hashes are not trusted
    _check_roots(tree, contents.leaf_hashes, trusted, findings)
    _check_links(contents, trusted, findings)
    _check_known_heads(tree, _not_among(known_heads, trusted), contents.node, ca_cert_pem, findings)
    if not trusted:
        findings.add(0, "no tree head in the bundle verifies")
    elif len(leaves) > trusted[-1].tree_size:
        size = trusted[-1].tree_size
        findings.add(size, f"entries from index {size} on are not covered by any signed tree head")
    findings.raise_first()
    last = trusted[-1]
    return Summary(
        node=last.node,
        org=org,
        entries=len(leaves),
        heads=len(trusted),
        tree_size=last.tree_size,
        last_root=last.root_hash,
        last_head_time=last.timestamp,
    )


def _check_entry_positions(leaves: list[bytes], findings: _Findings) -> None:
    """Each leaf must be a well-formed entry whose embedded index is its line number."""
    for position, leaf in enumerate(leaves):
        try:
            index, _ = decode_leaf(leaf)
        except ValueError as exc:
            findings.add(position, f"the entry at position {position} is malformed: {exc}")
            return
        if index != position:
            findings.add(
                position,
                f"the entry at position {position} carries index {index}: entries were "
                "deleted, inserted or reordered",
            )
            return


def _check_heads(
    contents: BundleContents, ca_cert_pem: bytes, findings: _Findings
) -> tuple[list[SignedTreeHead], str]:
    """Return the heads whose signature, signer and order check out, and the signer's org."""
    trusted: list[SignedTreeHead] = []
    signer: tuple[str, str] | None = None
    for number, head in enumerate(contents.heads):
        covered = trusted[-1].tree_size if trusted else 0
        label = f"tree head #{number} (size {head.tree_size})"
        try:
            principal = verify_tree_head(head, ca_cert_pem)
        except InvalidTreeHead as exc:
            findings.add(covered, f"{label} is not valid: {exc.reason}")
            continue
        problem = None
        if head.node != contents.node:
            problem = f"{label} is for node {head.node!r}, the bundle for {contents.node!r}"
        elif signer is not None and (principal.name, principal.org) != signer:
            problem = (
                f"{label} is signed by {principal.org}/{principal.name}, "
                f"earlier ones by {signer[1]}/{signer[0]}"
            )
        elif trusted and head.tree_size <= covered:
            problem = f"{label} does not grow the log beyond size {covered}"
        elif trusted and head.timestamp < trusted[-1].timestamp:
            problem = f"{label} is dated {head.timestamp}, before the previous head ({trusted[-1].timestamp})"
        if problem is not None:
            findings.add(covered, problem)
            continue
        signer = (principal.name, principal.org)
        trusted.append(head)
    return trusted, signer[1] if signer else ""


def _check_roots(
    tree: MerkleTree, recorded: list[bytes] | None, heads: list[SignedTreeHead], findings: _Findings
) -> None:
    """The entries must hash to the root of every trusted head; locate the first bad entry if they do not."""
    recorded_tree = MerkleTree(recorded) if recorded is not None else None
    proven = 0
    for head in heads:
        size = head.tree_size
        if size > tree.size:
            findings.add(
                tree.size,
                f"the head of size {size} covers entries missing from the bundle (it holds {tree.size})",
            )
            continue
        if hmac.compare_digest(tree.root(size), head.root):
            proven = size
            continue
        if (
            recorded_tree is not None
            and recorded_tree.size >= size
            and hmac.compare_digest(recorded_tree.root(size), head.root)
        ):
            # The recorded hashes are those the node signed, so the first entry that differs is the bad one.
            bad = next((i for i in range(size) if tree.leaf(i) != recorded_tree.leaf(i)), proven)
            findings.add(bad, f"entry {bad} does not hash to the leaf signed in the head of size {size}")
        else:
            findings.add(
                proven, f"entries {proven}..{size - 1} do not hash to the root signed at size {size}"
            )


def _not_among(known: Sequence[SignedTreeHead], trusted: list[SignedTreeHead]) -> list[SignedTreeHead]:
    """Known heads that the bundle does not itself hold as trusted heads: those it does are checked against
    the recomputed entries by `_check_roots`, which can name the bad entry exactly."""
    held = {(head.tree_size, head.root_hash) for head in trusted}
    return [head for head in known if (head.tree_size, head.root_hash) not in held]


def _check_known_heads(
    tree: MerkleTree,
    known_heads: Sequence[SignedTreeHead],
    node: str,
    ca_cert_pem: bytes,
    findings: _Findings,
) -> None:
    """Every head the caller kept must be a prefix of the bundle's entries."""
    proven = 0
    for head in sorted(known_heads, key=lambda kept: kept.tree_size):
        label = f"the head you kept for size {head.tree_size} ({head.timestamp})"
        try:
            verify_tree_head(head, ca_cert_pem)
        except InvalidTreeHead as exc:
            findings.add(proven, f"{label} does not verify: {exc.reason}")
        else:
            if head.node != node:
                findings.add(proven, f"{label} is for node {head.node!r}, the bundle for {node!r}")
            elif head.tree_size > tree.size:
                findings.add(
                    tree.size, f"{label} covers more entries than the bundle holds: it was rolled back"
                )
            elif not hmac.compare_digest(tree.root(head.tree_size), head.root):
                findings.add(proven, f"the entries do not hash to {label}: the node's history was rewritten")
            else:
                proven = head.tree_size


def _check_links(contents: BundleContents, heads: list[SignedTreeHead], findings: _Findings) -> None:
    """Each pair of consecutive trusted heads needs a consistency proof that verifies against both roots."""
    proofs = {(link.first, link.second): link.proof for link in contents.links}
    for older, newer in pairwise(heads):
        proof = proofs.get((older.tree_size, newer.tree_size))
        if proof is None:
            findings.add(
                older.tree_size, f"no consistency proof from size {older.tree_size} to {newer.tree_size}"
            )
            continue
        try:
            verify_consistency(older.tree_size, newer.tree_size, older.root, newer.root, proof)
        except InvalidProof as exc:
            findings.add(
                older.tree_size,
                f"the heads of size {older.tree_size} and {newer.tree_size} are not consistent: {exc.reason}",
            )
