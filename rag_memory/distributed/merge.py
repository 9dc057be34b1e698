"""Merging the shards' answers: every shard returns its own top k, the client keeps the best k.

The exact merge of independent indexes, as distributed-faiss's client does with its index
servers' results and autofaiss with its N indexes: the k best of the union of per-shard top
k lists are the k best overall, because no slot outside a shard's top k can beat that
shard's k-th hit. Equal scores are ordered by id, so the order never depends on which shard
answered first. Dense scores (cosines) are comparable across shards as they are; a lexical
or hybrid score is computed within its shard (BM25 statistics and fusion normalisation are
per shard, as in Elasticsearch's default query-then-fetch), so those merges rank by
per-shard scores.

Each member numbers its slots from 0, so a hit's address is made global as
`member_address * shards + shard`: unique across the memory, and the shard and member
address read back from it (`split_address`) when a multi-hop read asks for stored vectors.
"""

from __future__ import annotations

from ..types import Hit


def global_address(member_address: int, shard: int, shards: int) -> int:
    return member_address * shards + shard


def split_address(address: int, shards: int) -> tuple[int, int]:
    """(shard, member address) of a global address."""
    return address % shards, address // shards


def merge_top_k(per_shard: list[list[list[Hit]]], k: int) -> list[list[Hit]]:
    """Per query, the k best hits of all shards (score descending, then id), with global
    addresses. `per_shard[s][q]` is shard s's hits for query q."""
    shards = len(per_shard)
    merged: list[list[Hit]] = []
    for q in range(len(per_shard[0])):
        candidates = [(hit, s) for s, answers in enumerate(per_shard) for hit in answers[q]]
        candidates.sort(key=lambda c: (-c[0].score, c[0].id))
        merged.append(
            [hit.relocated(global_address(hit.address, s, shards)) for hit, s in candidates[:k]]
        )
    return merged
