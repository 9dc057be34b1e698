"""The 64-bit hash of a slot id, one rule for the two places that key on ids without holding
the strings: a build's duplicate-id check and a sharded memory's routing of writes."""

from __future__ import annotations

import hashlib


def id_hash(slot_id: str) -> int:
    """BLAKE2b-64 of the id's UTF-8 bytes (lone surrogates kept), little-endian: stable across
    processes, machines and Python versions, unlike `hash()`, which is salted per process."""
    return int.from_bytes(
        hashlib.blake2b(slot_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )
