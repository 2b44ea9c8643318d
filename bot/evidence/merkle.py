"""Merkle tree hashes as in RFC 6962 §2.1 (Certificate Transparency), over SHA-256 digests.

One timestamp request covers a whole batch: the TSA signs the tree's root, and each item keeps its audit
path, so anyone can recompute the root from the item's own SHA-256 and check it against the token. Leaf and
node hashes are domain-separated (``0x00`` / ``0x01`` prefixes) so an inner node can never pass for a leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + digest).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (RFC 6962's k)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the item digests ``leaves`` (at least one)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def root_and_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[tuple[str, bytes]]]]:
    """The root and every leaf's audit path in one pass over the tree (O(n log n); a batch has thousands)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    if len(leaves) == 1:
        return leaf_hash(leaves[0]), [[]]
    k = _split(len(leaves))
    left, left_paths = root_and_paths(leaves[:k])
    right, right_paths = root_and_paths(leaves[k:])
    for path in left_paths:
        path.append(("R", right))
    for path in right_paths:
        path.append(("L", left))
    return node_hash(left, right), left_paths + right_paths


def audit_path(leaves: Sequence[bytes], index: int) -> list[tuple[str, bytes]]:
    """PATH(m, D[n]) with sides: ``[("L"|"R", sibling hash), ...]`` from the leaf up; "L" means the sibling
    is on the left. RFC 6962's definition, one leaf at a time (O(n) each): batches use :func:`root_and_paths`."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return audit_path(leaves[:k], index) + [("R", root(leaves[k:]))]
    return audit_path(leaves[k:], index - k) + [("L", root(leaves[:k]))]


def root_from_path(digest: bytes, path: Sequence[tuple[str, bytes]]) -> bytes:
    """The root an item's digest and audit path lead to (compare with the timestamped root)."""
    h = leaf_hash(digest)
    for side, sibling in path:
        h = node_hash(sibling, h) if side == "L" else node_hash(h, sibling)
    return h


def path_to_json(path: Sequence[tuple[str, bytes]]) -> list[str]:
    """``["L:<hex>", "R:<hex>"]``: the form stored in batch files and printed for a person."""
    return [f"{side}:{h.hex()}" for side, h in path]


def path_from_json(items: Sequence[str]) -> list[tuple[str, bytes]]:
    out = []
    for item in items:
        side, _, hexed = str(item).partition(":")
        if side not in ("L", "R") or len(hexed) != 64:
            raise ValueError(f"not a Merkle path step: {item!r}")
        out.append((side, bytes.fromhex(hexed)))
    return out
