"""ShardedMemory on a local Ray runtime: equal to one Memory, routed stably, refusing bad input
as Memory does, surviving a killed shard process and a stopped runtime."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import Memory
from rag_memory.embed import Embedder
from rag_memory.errors import (
    IdAlreadyStoredError,
    InvalidFilterError,
    InvalidInputError,
    InvalidVectorError,
    MemoryLockedError,
    RagMemoryError,
    SearchModeError,
    ShardUnavailableError,
    ShardWriteError,
    UnknownIdError,
)

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from rag_memory.distributed import SHARDED_MANIFEST, ShardedMemory  # noqa: E402
from rag_memory.distributed.layout import shard_of  # noqa: E402

N, DIM, SHARDS = 20_000, 64, 3


def _rows(n: int, start: int = 0) -> tuple[list[str], list[str], list[dict]]:
    ids = [f"id{i}" for i in range(start, start + n)]
    texts = [f"slot number {i}" for i in range(start, start + n)]
    meta = [{"n": i, "group": f"g{i % 5}", "even": i % 2 == 0} for i in range(start, start + n)]
    return ids, texts, meta


def _ids(results: list[list[Any]]) -> list[list[str]]:
    return [[h.id for h in hits] for hits in results]


@pytest.fixture(scope="module")
def pair(ray_runtime: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A 3-shard memory and one Memory over the same 20,000 vectors (both searched exactly:
    below the seal threshold every shard is a flat index)."""
    root = tmp_path_factory.mktemp("pair")
    ids, texts, meta = _rows(N)
    vectors = unit_vectors(N, DIM, seed=1)
    sharded = ShardedMemory.create(root / "sharded", SHARDS, dim=DIM)
    single = Memory.create(root / "single", dim=DIM)
    for mem in (sharded, single):
        for lo in range(0, N, 5_000):
            mem.add(
                texts[lo : lo + 5_000],
                ids[lo : lo + 5_000],
                meta[lo : lo + 5_000],
                vectors[lo : lo + 5_000],
            )
    yield sharded, single, vectors
    sharded.close()
    single.close()


@pytest.mark.parametrize(
    "where",
    [None, {"group": "g2"}, {"n": {"$lt": 3_000}}, {"$and": [{"even": True}, {"group": "g1"}]}],
)
def test_a_sharded_memory_returns_the_ids_and_order_of_one_memory(pair: tuple, where: Any) -> None:
    sharded, single, _ = pair
    queries = unit_vectors(100, DIM, seed=7)
    got = sharded.search(queries, k=10, where=where, cache=False)
    want = single.search(queries, k=10, where=where, cache=False)
    assert _ids(got) == _ids(want)
    np.testing.assert_allclose(
        [[h.score for h in r] for r in got], [[h.score for h in r] for r in want], atol=1e-6
    )
    assert all(len(r) == 10 for r in got)


def test_hits_carry_global_addresses_and_their_stored_vectors(pair: tuple) -> None:
    sharded, _, vectors = pair
    hits = sharded.search(unit_vectors(1, DIM, seed=3)[0], k=20)
    assert len({h.address for h in hits}) == 20  # unique across the members
    kept, stored = sharded.vectors_of(hits)
    assert [h.id for h in kept] == [h.id for h in hits]
    for hit, vector in zip(kept, stored, strict=True):
        np.testing.assert_allclose(vector, vectors[int(hit.id[2:])], atol=1e-6)


def test_single_queries_counts_and_lookups_match(pair: tuple) -> None:
    sharded, single, vectors = pair
    assert len(sharded) == len(single) == N
    one = sharded.search(vectors[42], k=5)
    assert one[0].id == "id42" and [h.id for h in one] == [
        h.id for h in single.search(vectors[42], k=5)
    ]

    def fields(slots: list) -> list[tuple]:  # addresses are each memory's own
        return [(s.id, s.text, s.metadata, s.written_at is not None) for s in slots]

    assert fields(sharded.get(["id19999", "id5"])) == fields(single.get(["id19999", "id5"]))
    assert sharded.contains(["id1", "nope", "id2"]) == [True, False, True]
    assert sorted(sharded.ids({"n": {"$lt": 10}})) == sorted(single.ids({"n": {"$lt": 10}}))


def test_the_client_cache_answers_repeats_and_a_write_clears_it(pair: tuple) -> None:
    sharded, _, _ = pair
    query = unit_vectors(1, DIM, seed=11)
    first = sharded.search(query, k=5)[0]
    again = sharded.search(query, k=5)[0]
    assert all(h.cached for h in again) and [h.id for h in again] == [h.id for h in first]
    # a slot equal to the query now ranks first: the cached answer must not be served
    sharded.upsert(["the query itself"], ["probe"], vectors=query)
    try:
        fresh = sharded.search(query, k=5)[0]
        assert fresh[0].id == "probe" and not fresh[0].cached
    finally:
        sharded.delete("probe")
    assert sharded.search(query, k=5)[0][0].id == first[0].id


def test_a_scope_view_writes_its_fields_and_reads_only_its_slots(pair: tuple) -> None:
    sharded, _, _ = pair
    view = sharded.scope(user="u1")
    vectors = unit_vectors(4, DIM, seed=21)
    view.add([f"note {i}" for i in range(4)], [f"u1-{i}" for i in range(4)], vectors=vectors)
    try:
        hits = view.search(vectors, k=3)
        assert all(h.id.startswith("u1-") for row in hits for h in row)
        assert all(s.metadata["user"] == "u1" for s in sharded.get(["u1-0", "u1-3"]))
        with pytest.raises(UnknownIdError):
            view.delete(["id1"])  # stored, but outside the scope
    finally:
        sharded.delete([f"u1-{i}" for i in range(4)])
    assert len(sharded) == N


def test_stats_merge_the_members_and_list_each_shard(pair: tuple) -> None:
    sharded, _, _ = pair
    stats = sharded.stats()
    assert stats["slots"] == N and stats["shards"] == SHARDS
    members = stats["members"]
    assert [m["shard"] for m in members] == [0, 1, 2]
    assert sum(m["slots"] for m in members) == N
    assert all(m["slots"] > 6_000 for m in members)  # the hash spreads ids evenly
    assert len({m["pid"] for m in members}) == SHARDS and os.getpid() not in {
        m["pid"] for m in members
    }
    assert all(m["node"] == ray.get_runtime_context().get_node_id() for m in members)
    assert stats["disk_bytes"] == sum(m["disk_bytes"] for m in members)


def test_writes_are_routed_stably_to_one_member(tmp_path: Path, ray_runtime: dict) -> None:
    """An id's add, upsert and delete reach the shard the routing rule names; the rule is
    fixed (these values are part of the on-disk format)."""
    names = ["a", "b", "c", "id0", "id1", "id2"]
    assert shard_of(names, 3) == [2, 2, 0, 0, 2, 2]
    assert shard_of(names, 7) == [4, 0, 2, 2, 5, 5]
    ids, texts, meta = _rows(300)
    root = tmp_path / "routed"
    with ShardedMemory.create(root, SHARDS, dim=DIM) as mem:
        mem.add(texts, ids, meta, unit_vectors(300, DIM, seed=2))
        mem.upsert(["replaced"] * 50, ids[:50], vectors=unit_vectors(50, DIM, seed=3))
        mem.delete(ids[250:])
        assert len(mem) == 250
    members = json.loads((root / SHARDED_MANIFEST).read_text())["members"]
    expected = shard_of(ids, SHARDS)
    for shard, member in enumerate(members):
        with Memory.open(root / member["path"], read_only=True) as part:  # an ordinary memory
            mine = [i for i, s in zip(ids[:250], expected[:250], strict=True) if s == shard]
            assert sorted(part.ids()) == sorted(mine)
            assert all(s.text == "replaced" for s in part.get([i for i in mine if i in ids[:50]]))


def _expect_same_error(calls: Callable[[Any], Any], sharded: Any, single: Any) -> type:
    with pytest.raises(RagMemoryError) as on_single:
        calls(single)
    with pytest.raises(RagMemoryError) as on_sharded:
        calls(sharded)
    assert type(on_sharded.value) is type(on_single.value)
    return type(on_sharded.value)


BAD_CALLS: dict[str, tuple[Callable[[Any], Any], type]] = {
    "wrong dimension": (
        lambda m: m.add(["x"], ["new"], vectors=np.ones((1, 3))),
        InvalidVectorError,
    ),
    "NaN vector": (
        lambda m: m.add(["x"], ["new"], vectors=np.full((1, DIM), np.nan)),
        InvalidVectorError,
    ),
    "id stored": (
        lambda m: m.add(["x", "y"], ["fresh", "id7"], vectors=unit_vectors(2, DIM)),
        IdAlreadyStoredError,
    ),
    "repeated id": (
        lambda m: m.add(["x", "y"], ["r", "r"], vectors=unit_vectors(2, DIM)),
        InvalidInputError,
    ),
    "empty text": (lambda m: m.add([""], ["e"], vectors=unit_vectors(1, DIM)), InvalidInputError),
    "bad metadata": (
        lambda m: m.add(["x"], ["m"], [{"f": object()}], unit_vectors(1, DIM)),
        InvalidInputError,
    ),
    "unknown id deleted": (lambda m: m.delete(["id3", "missing"]), UnknownIdError),
    "unknown id read": (lambda m: m.get(["id3", "missing"]), UnknownIdError),
    "bad filter": (
        lambda m: m.search(unit_vectors(1, DIM), where={"n": {"$like": 1}}),
        InvalidFilterError,
    ),
    "k zero": (lambda m: m.search(unit_vectors(1, DIM), k=0), InvalidInputError),
    "lexical vector": (lambda m: m.search(unit_vectors(1, DIM), mode="lexical"), SearchModeError),
    "query dimension": (lambda m: m.search(np.ones((2, 5), np.float32)), InvalidVectorError),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_what_memory_raises_and_changes_nothing(pair: tuple, case: str) -> None:
    sharded, single, _ = pair
    call, expected = BAD_CALLS[case]
    assert issubclass(_expect_same_error(call, sharded, single), expected)
    assert len(sharded) == N
    assert sharded.contains(["fresh", "new", "r", "e", "m", "id3"]) == [False] * 5 + [True]


def test_a_second_writer_is_refused_and_readers_read_beside_the_writer(
    pair: tuple, ray_runtime: dict
) -> None:
    sharded, _, vectors = pair
    with pytest.raises(MemoryLockedError):
        ShardedMemory.open(sharded.path)
    with ShardedMemory.open(sharded.path, read_only=True) as reader:
        assert len(reader) == N
        assert _ids(reader.search(vectors[:5], k=3)) == _ids(sharded.search(vectors[:5], k=3))
        with pytest.raises(RagMemoryError):
            reader.add(["x"], ["ro"], vectors=vectors[:1])


@pytest.fixture(scope="module")
def text_pair(ray_runtime: dict, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder):
    root = tmp_path_factory.mktemp("text")
    topics = [
        "the cat sat on the mat",
        "rain fell on the city",
        "the stock market rose",
        "a new vaccine was approved",
        "the team won the final",
        "bread needs yeast",
    ]
    texts = [f"{topics[i % 6]} (note {i}, day {i % 17})" for i in range(600)]
    ids = [f"t{i}" for i in range(600)]
    meta = [{"topic": i % 6, "n": i} for i in range(600)]
    sharded = ShardedMemory.create(root / "sharded", SHARDS, embedder=embedder)
    single = Memory.create(root / "single", embedder=embedder)
    for mem in (sharded, single):
        mem.add(texts, ids, meta)
    yield sharded, single
    sharded.close()
    single.close()


QUESTIONS = [
    "did the cat sit on a mat?",
    "weather in the city",
    "markets going up",
    "vaccine approval",
    "who won the final match",
    "how to bake bread",
]


def test_text_queries_equal_one_memory_in_dense_mode(text_pair: tuple) -> None:
    sharded, single = text_pair
    for where in (None, {"topic": {"$in": [0, 3]}}):
        got = sharded.search(QUESTIONS, k=8, where=where, mode="dense", cache=False)
        assert _ids(got) == _ids(
            single.search(QUESTIONS, k=8, where=where, mode="dense", cache=False)
        )
    assert [h.id for h in sharded.search(QUESTIONS[0], k=8, mode="dense")] == [
        h.id for h in single.search(QUESTIONS[0], k=8, mode="dense")
    ]


def test_hybrid_lexical_and_multi_hop_reads_run_inside_every_shard(text_pair: tuple) -> None:
    """BM25 statistics are per shard, so hybrid and lexical hits equal one memory's in their
    set of topics, not score for score; multi-hop reads run in the client."""
    sharded, single = text_pair
    for mode in ("hybrid", "lexical"):
        got = sharded.search(QUESTIONS, k=10, mode=mode)
        want = single.search(QUESTIONS, k=10, mode=mode)
        for g, w in zip(got, want, strict=True):
            assert len(g) == 10
            assert {h.metadata["topic"] for h in g[:3]} == {h.metadata["topic"] for h in w[:3]}
    hops = sharded.search("how to bake bread", k=6, hops=2)
    assert len(hops) == 6 and {h.hop for h in hops} <= {1, 2} and hops[0].hop == 1
    recent = sharded.search("the team won", k=5, recency_half_life=3600.0)
    assert len(recent) == 5 and all(h.relevance is not None for h in recent)


def test_generate_answers_from_the_shards(text_pair: tuple) -> None:
    from rag_memory import GeneratorConfig

    sharded, _ = text_pair
    sharded.generator = GeneratorConfig(max_new_tokens=6)
    answer = sharded.generate("What did the cat sit on?", k=3)
    assert len(answer.hits) == 3 and answer.text.strip()
    assert sharded.stats()["reads"]["answers"] == 1


def _writer(
    mem: ShardedMemory,
    acknowledged: list[str],
    failures: list[ShardWriteError],
    stop: threading.Event,
) -> None:
    batch = 0
    while not stop.is_set() and batch < 200:
        ids, texts, meta = _rows(100, start=100_000 + batch * 100)
        try:
            mem.upsert(
                texts,
                ids,
                [{**m, "phase": "live"} for m in meta],
                unit_vectors(100, DIM, seed=batch),
            )
            acknowledged.extend(ids)
        except ShardWriteError as exc:
            failures.append(exc)
            acknowledged.extend(exc.written)
        batch += 1


def test_a_killed_shard_restarts_reads_stay_equal_and_acknowledged_writes_stay(
    tmp_path: Path, ray_runtime: dict
) -> None:
    ids, texts, meta = _rows(3_000)
    queries = unit_vectors(20, DIM, seed=5)
    base = {"phase": "base"}
    with ShardedMemory.create(tmp_path / "faults", SHARDS, dim=DIM) as mem:
        mem.add(texts, ids, [{**m, **base} for m in meta], unit_vectors(3_000, DIM, seed=4))
        before = _ids(mem.search(queries, k=10, where=base, cache=False))
        victim = mem.stats()["members"][1]["pid"]
        acknowledged: list[str] = []
        failures: list[ShardWriteError] = []
        stop = threading.Event()
        writer = threading.Thread(target=_writer, args=(mem, acknowledged, failures, stop))
        writer.start()
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        during = [_ids(mem.search(queries, k=10, where=base, cache=False)) for _ in range(10)]
        time.sleep(1.0)
        stop.set()
        writer.join()
        assert all(d == before for d in during)
        assert _ids(mem.search(queries, k=10, where=base, cache=False)) == before
        assert mem.stats()["members"][1]["pid"] != victim  # Ray restarted the actor
        assert acknowledged and all(mem.contains(acknowledged))
        for failure in failures:  # only the killed shard's part failed, loudly
            assert failure.unwritten and set(shard_of(failure.unwritten, SHARDS)) == {1}
        assert len(mem) >= 3_000 + len(acknowledged)


def test_a_write_to_a_shard_that_stays_dead_fails_loudly(tmp_path: Path, ray_runtime: dict) -> None:
    ids, texts, meta = _rows(600)
    with ShardedMemory.create(tmp_path / "dead", SHARDS, dim=DIM, max_restarts=0) as mem:
        mem.add(texts[:300], ids[:300], meta[:300], unit_vectors(300, DIM, seed=1))
        os.kill(mem.stats()["members"][0]["pid"], signal.SIGKILL)
        time.sleep(1.0)
        with pytest.raises(ShardWriteError) as failed:
            mem.upsert(texts[300:], ids[300:], meta[300:], unit_vectors(300, DIM, seed=2))
        error = failed.value
        routed = dict(zip(ids[300:], shard_of(ids[300:], SHARDS), strict=True))
        assert sorted(error.unwritten) == sorted(i for i, s in routed.items() if s == 0)
        assert sorted(error.written) == sorted(i for i, s in routed.items() if s != 0)
        assert isinstance(error.__cause__, ShardUnavailableError)
        with pytest.raises(ShardUnavailableError):
            mem.search(unit_vectors(1, DIM), k=3)
