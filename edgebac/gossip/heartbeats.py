"""Signed heartbeats: what a node says about itself in gossip, signed with its node key.

A peer-list entry is `[node id, addresses, heartbeat, signature]`, the signature by that node's
own key over the addresses and the heartbeat. Anyone may carry an entry on (it is the node's own
word, like its `NodeAnnounced` in the log), nobody can make one up for another node: a member
holding the network key can no longer redirect a node's address or pin its heartbeat at 2^63 by
naming it in a rumour. Entries that do not verify are dropped without creating any state.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgpack
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

DOMAIN = b"edgebac/heartbeat/v1"  # a heartbeat signature can never pass for an event's
MAX_HEARTBEAT = (1 << 63) - 1


def _payload(addresses: Sequence[str], heartbeat: int) -> bytes:
    return msgpack.packb([DOMAIN, list(addresses), heartbeat])


def sign(key: SigningKey, addresses: Sequence[str], heartbeat: int) -> list[Any]:
    """Our own entry, ready to ride along a message."""
    signature = key.sign(_payload(addresses, heartbeat)).signature
    return [bytes(key.verify_key), list(addresses), heartbeat, signature]


def parse(entry: Any) -> tuple[bytes, list[str], int, bytes] | None:
    """The fields of a well-shaped entry (not yet verified), or None."""
    if not (isinstance(entry, list) and len(entry) == 4):
        return None
    node_id, addresses, heartbeat, signature = entry
    if not (isinstance(node_id, bytes) and len(node_id) == 32):
        return None
    if not (isinstance(addresses, list) and len(addresses) <= 8):
        return None
    if not all(isinstance(a, str) for a in addresses):
        return None
    if not (type(heartbeat) is int and 0 <= heartbeat <= MAX_HEARTBEAT):
        return None
    if not (isinstance(signature, bytes) and len(signature) == 64):
        return None
    return node_id, addresses, heartbeat, signature


def verified(node_id: bytes, addresses: Sequence[str], heartbeat: int, signature: bytes) -> bool:
    """Whether `node_id`'s key signed these addresses and this heartbeat."""
    return _verify(node_id, _payload(addresses, heartbeat), signature)


@functools.lru_cache(maxsize=65536)
def _verify(node_id: bytes, payload: bytes, signature: bytes) -> bool:
    # Cached: the same entry reaches a node from several peers (and, in the simulator, every
    # node of a run shares the process). The key is the exact bytes, so only they reuse it.
    try:
        VerifyKey(node_id).verify(payload, signature)
    except (CryptoError, ValueError):
        return False
    return True
