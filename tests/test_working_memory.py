"""Memory the model writes while it works (issue 14): write times, expiry, dedupe, scopes,
recency-aware and multi-hop reads, read counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import HashEmbedder, unit_vectors

from rag_memory import Memory, slot_times
from rag_memory.errors import InvalidFilterError, InvalidInputError, UnknownIdError
from rag_memory.recall import RecallConfig

DIM = 16


def at_cosine(c: float, axis: int) -> np.ndarray:
    """A unit vector at cosine `c` to e0, the rest along `axis`."""
    v = np.zeros(DIM, np.float32)
    v[0], v[axis] = c, math.sqrt(1 - c * c)
    return v


def e0() -> np.ndarray:
    return at_cosine(1.0, 1)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The expiry clock, set by the test: clock[0] is now."""
    now = [1_000_000.0]
    monkeypatch.setattr(slot_times, "now", lambda: now[0])
    return now


# -- write times ---------------------------------------------------------------------------
def test_write_times_are_recorded_durable_and_filterable(tmp_path: Path, clock) -> None:
    with Memory.create(tmp_path / "m", dim=DIM) as mem:
        mem.add(["now"], ids=["now"], vectors=unit_vectors(1, DIM, seed=1))
        mem.add(
            ["old", "older"],
            ids=["old", "older"],
            vectors=unit_vectors(2, DIM, seed=2),
            timestamps=[20, 10.5],
        )
        assert [s.written_at for s in mem.get(["now", "old", "older"])] == [clock[0], 20.0, 10.5]
    with Memory.open(tmp_path / "m", read_only=True) as mem:
        assert mem.get("old")[0].written_at == 20.0
        hits = mem.search(e0(), k=3, where={"$written_at": {"$lt": 100}})
        assert sorted(h.id for h in hits) == ["old", "older"]
        assert {h.id: h.written_at for h in hits} == {"old": 20.0, "older": 10.5}
        both = {"$and": [{"$written_at": {"$gte": 15}}, {"$written_at": {"$lte": 20}}]}
        assert [h.id for h in mem.search(e0(), k=3, where=both)] == ["old"]
        assert [h.id for h in mem.search(e0(), 3, where={"$written_at": {"$in": [10.5]}})] == [
            "older"
        ]
        for bad in ({"$written_at": "yesterday"}, {"$written_at": {"$gt": True}}):
            with pytest.raises(InvalidFilterError, match="written_at"):
                mem.search(e0(), k=3, where=bad)


@pytest.mark.parametrize(
    "timestamps, problem",
    [
        ([float("nan")], "finite"),
        ([math.inf], "finite"),
        (["monday"], "finite"),
        ([True], "finite"),
        ([1.0, 2.0], "list of 1"),
        (np.zeros((1, 1)), "1-D"),
    ],
)
def test_bad_timestamps_are_refused_and_nothing_is_written(
    vector_memory: Memory, timestamps, problem
) -> None:
    before = vector_memory.stats()["version"]
    with pytest.raises(InvalidInputError, match=problem):
        vector_memory.add(["x"], ids=["x"], vectors=unit_vectors(1, DIM), timestamps=timestamps)
    assert vector_memory.stats()["version"] == before and not vector_memory.contains("x")[0]


# -- expiry --------------------------------------------------------------------------------
def test_ttl_hides_at_once_survives_reopen_and_compaction_removes(tmp_path: Path, clock) -> None:
    path = tmp_path / "m"
    with Memory.create(path, dim=DIM, ttl=60) as mem:
        mem.add(["a"], ids=["a"], vectors=[e0()])  # the memory's ttl: 60 s
        mem.add(["b"], ids=["b"], vectors=[at_cosine(0.9, 2)], ttl=10)
        mem.add(["c"], ids=["c"], vectors=[at_cosine(0.8, 3)], ttl=math.inf)
        assert [h.id for h in mem.search(e0(), k=3)] == ["a", "b", "c"]  # cached now
        assert mem.get("b")[0].expires_at == clock[0] + 10
        clock[0] += 11
        assert [h.id for h in mem.search(e0(), k=3)] == ["a", "c"]  # the cache saw it go
        assert mem.contains(["a", "b"]) == [True, False] and len(mem) == 2
        with pytest.raises(UnknownIdError):
            mem.get("b")
        mem.add(["b"], ids=["b"], vectors=[at_cosine(0.7, 4)])  # the id is free again
        assert [h.id for h in mem.search(e0(), k=3)] == ["a", "c", "b"]
    clock[0] += 50  # past a's 60 s
    with Memory.open(path, read_only=True) as reader:
        assert [h.id for h in reader.search(e0(), k=3)] == ["c", "b"]
        assert [h.id for h in reader.search("a", k=3, mode="lexical")] == []
        assert [s.id for slots, _ in reader.iter_vectors() for s in slots] == ["c", "b"]
    with Memory.open(path) as mem:
        assert mem.stats()["expiry"] == {"default_ttl": 60, "expired_not_retired": 1}
        assert mem.compact()["expired"] == 1
        assert mem.stats()["expiry"]["expired_not_retired"] == 0
        assert mem.stats()["slots"] == 2 and [h.id for h in mem.search(e0(), k=3)] == ["c", "b"]


def test_expired_slots_are_skipped_beyond_the_overfetch(
    tmp_path: Path, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_HIDDEN_OVERFETCH hidden slots, a search filters by the visible ones: k hits
    still come back."""
    from rag_memory import read_path

    monkeypatch.setattr(read_path, "MAX_HIDDEN_OVERFETCH", 2)
    with Memory.create(tmp_path / "m", dim=DIM) as mem:
        vectors = unit_vectors(30, DIM, seed=3)
        mem.add([f"t{i}" for i in range(30)], vectors=vectors, ttl=[5] * 20 + [math.inf] * 10)
        clock[0] += 6
        for query in (vectors[0], vectors[25]):
            hits = mem.search(query, k=5)
            assert len(hits) == 5 and {h.text for h in hits} <= {f"t{i}" for i in range(20, 30)}


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), "1h", [1, 2]])
def test_bad_ttl_is_refused_and_nothing_is_written(vector_memory: Memory, ttl) -> None:
    before = vector_memory.stats()["version"]
    with pytest.raises(InvalidInputError, match="ttl"):
        vector_memory.add(["x"], ids=["x"], vectors=unit_vectors(1, DIM), ttl=ttl)
    assert vector_memory.stats()["version"] == before


def test_bad_memory_ttl_is_refused_at_create(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="ttl"):
        Memory.create(tmp_path / "m", dim=DIM, ttl=0)
    assert not (tmp_path / "m").exists()


# -- recency -------------------------------------------------------------------------------
def test_no_recency_and_one_hop_are_todays_search_exactly(vector_memory: Memory) -> None:
    queries = unit_vectors(4, DIM, seed=9)
    for where in (None, {"even": True}):
        plain = vector_memory.search(queries, k=7, where=where, cache=False)
        same = vector_memory.search(
            queries, k=7, where=where, cache=False, hops=1, recency_half_life=None
        )
        assert same == plain
        assert [[(h.address, h.score, h.hop, h.relevance) for h in row] for row in same] == [
            [(h.address, h.score, 1, None) for h in row] for row in plain
        ]


def test_recency_decides_between_relevant_slots_never_for_an_unrelated_one(
    tmp_path: Path,
) -> None:
    with Memory.create(tmp_path / "m", dim=DIM) as mem:
        mem.add(
            ["relevant, old", "relevant, newer", "unrelated, newest"],
            ids=["old", "newer", "unrelated"],
            vectors=[at_cosine(0.9, 1), at_cosine(0.85, 2), at_cosine(0.5, 3)],
            timestamps=[1, 50, 100],
        )
        assert [h.id for h in mem.search(e0(), k=3)] == ["old", "newer", "unrelated"]
        for half_life in (0.01, 1, 10, 100, 1e6):
            hits = mem.search(e0(), k=3, recency_half_life=half_life)
            assert hits[-1].id == "unrelated", half_life  # never above a relevant slot
            assert all(h.relevance is not None and h.score >= h.relevance for h in hits)
        assert [h.id for h in mem.search(e0(), k=3, recency_half_life=10)][:2] == ["newer", "old"]
        # a plain multiplicative decay, score * 2^(-age / half-life), would put it first:
        assert 0.5 > 0.9 * 2 ** (-99 / 10)
        # the margin bounds how far recency may reach: none, and the order is relevance's
        none = mem.search(e0(), k=3, recency_half_life=10, recall={"margin": 0})
        assert [h.id for h in none] == ["old", "newer", "unrelated"]
        wide = mem.search(e0(), k=3, recency_half_life=1, recall=RecallConfig(margin=0.5))
        assert wide[0].id == "unrelated"  # a margin above the gap lets it through, as documented


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_recency_works_in_every_mode_and_scope(tmp_path: Path, mode: str) -> None:
    with Memory.create(tmp_path / "m", embedder=HashEmbedder(DIM)) as mem:
        alice, bob = mem.scope(user="alice"), mem.scope(user="bob")
        alice.add(["alice lives in paris", "alice lives in berlin"], timestamps=[1, 2])
        bob.add(["bob lives in rome"], timestamps=[3])
        query = "alice lives in paris berlin" if mode != "dense" else "alice lives in paris"
        hits = alice.search(query, k=2, mode=mode, recency_half_life=0.1, recall={"margin": 2})
        assert [h.text for h in hits] == ["alice lives in berlin", "alice lives in paris"]
        assert {h.metadata["user"] for h in hits} == {"alice"}


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"recency_half_life": 0}, "recency_half_life"),
        ({"recency_half_life": -3}, "recency_half_life"),
        ({"recency_half_life": math.inf}, "recency_half_life"),
        ({"recency_half_life": "1d"}, "recency_half_life"),
        ({"hops": 0}, "hops"),
        ({"hops": 1.5}, "hops"),
        ({"hops": 3, "k": 2}, "k >= hops"),
        ({"hops": 99, "k": 100}, "hops"),
        ({"recall": {"margin": -1}}, "margin"),
        ({"recall": {"hop_query": "guess"}}, "hop_query"),
        ({"recall": {"bogus": 1}}, "bogus"),
    ],
)
def test_bad_read_options_are_clear_errors(vector_memory: Memory, options, problem) -> None:
    k = options.pop("k", 5)
    with pytest.raises(InvalidInputError, match=problem):
        vector_memory.search(unit_vectors(1, DIM)[0], k=k, **options)


# -- multi-hop -----------------------------------------------------------------------------
@pytest.mark.parametrize("hop_query", ["text", "new_words", "vector", "new_vector"])
def test_a_second_hop_reads_what_the_first_points_to(tmp_path: Path, embedder, hop_query) -> None:
    """bAbI task 2's chain: the football, who has it, where that person is."""
    story = [
        "Mary moved to the bathroom.",
        "Sandra journeyed to the bedroom.",
        "John picked up the football there.",
        "Mary went back to the kitchen.",
        "John went to the garden.",
        "Sandra went back to the office.",
    ]
    with Memory.create(tmp_path / "m", embedder=embedder) as mem:
        mem.add(story, timestamps=list(range(1, 7)))
        one = mem.search("Where is the football?", k=2, mode="dense")
        two = mem.search(
            "Where is the football?", k=2, mode="dense", hops=2, recall={"hop_query": hop_query}
        )
        assert [h.hop for h in two] == [1, 2] and two[0].text == one[0].text
        assert two[0].text == "John picked up the football there."
        assert two[1].text == "John went to the garden."
        assert len({h.address for h in two}) == 2


# -- dedupe --------------------------------------------------------------------------------
def test_exact_dedupe_returns_the_stored_id_within_the_scope(tmp_path: Path, clock) -> None:
    with Memory.create(tmp_path / "m", embedder=HashEmbedder(DIM)) as mem:
        s1, s2 = mem.scope(session="s1"), mem.scope(session="s2")
        (first,) = s1.add(["Mary went to the garden."], timestamps=[1])
        clock[0] += 1
        again = s1.add(
            ["mary  went to the GARDEN", "John left."], dedupe="exact", timestamps=[5, 6]
        )
        assert again[0] == first and again.merged == {0: first} and again[1] != first
        assert s1.get(first)[0].written_at == 5.0  # the repeat counts as just written
        other = s2.add(["Mary went to the garden."], dedupe="exact")
        assert other[0] != first and other.merged == {}  # another scope keeps its own
        same_call = mem.add(["x y", "X  Y.", "z"], dedupe="exact")
        assert same_call[0] == same_call[1] and same_call.merged == {1: same_call[0]}
        assert len(mem) == 5
        assert mem.add(["John left."]).merged == {}  # no dedupe: a copy, as before
        assert len(mem) == 6
        with pytest.raises(InvalidInputError, match="dedupe"):
            mem.add(["y"], dedupe="fuzzy")


def test_near_dedupe_merges_paraphrases_not_a_negation(tmp_path: Path, embedder) -> None:
    from rag_memory.near_duplicates import NEAR_DUPLICATE_COSINE

    claim = "Vitamin D supplementation reduces the risk of fractures in elderly patients."
    negation = (
        "Vitamin D supplementation does not reduce the risk of fractures in elderly patients."
    )
    vectors = embedder.encode([claim, negation])
    assert float(vectors[0] @ vectors[1]) >= NEAR_DUPLICATE_COSINE - 0.05  # they do collide
    with Memory.create(tmp_path / "m", embedder=embedder) as mem:
        (kept,) = mem.add([claim])
        paraphrase = mem.add(
            [
                claim.replace("elderly patients", "elderly patients ").replace(
                    "Vitamin D", "vitamin D"
                )
            ],
            dedupe="near",
        )
        assert paraphrase.merged == {0: kept}
        negated = mem.add([negation], dedupe="near")
        assert negated.merged == {} and negated[0] != kept and len(mem) == 2


# -- scopes --------------------------------------------------------------------------------
def test_a_scope_writes_its_fields_and_reads_only_its_slots(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", embedder=HashEmbedder(DIM)) as mem:
        alice, bob = mem.scope(user="alice"), mem.scope({"user": "bob"})
        (a,) = alice.add(["note"], metadata={"kind": "x"})
        (b,) = bob.add(["note"])
        assert mem.get(a)[0].metadata == {"kind": "x", "user": "alice"}
        assert [h.id for h in alice.search("note", k=5)] == [a]
        assert [h.id for h in bob.search("note", k=5, where={"user": "bob"})] == [b]
        assert alice.contains([a, b]) == [True, False]
        with pytest.raises(UnknownIdError):
            alice.get(b)
        with pytest.raises(UnknownIdError):
            alice.delete(b)
        with pytest.raises(InvalidInputError, match="outside the scope"):
            alice.upsert(["mine now"], ids=[b])
        with pytest.raises(InvalidInputError, match="scope fields"):
            alice.add(["x"], metadata={"user": "bob"})
        assert mem.get(b)[0].text == "note" and len(mem) == 2
        session = alice.scope(session=1)
        c = session.remember("hello", role="user")
        assert mem.get(c)[0].metadata == {"role": "user", "user": "alice", "session": 1}
        assert [h.id for h in session.search("note", k=5)] == [c]
        for bad in ({}, {"$written_at": 1}, {"user": ["a"]}):
            with pytest.raises(InvalidInputError):
                mem.scope(bad)


# -- read counts ---------------------------------------------------------------------------
def test_stats_count_reads(vector_memory: Memory) -> None:
    q = unit_vectors(2, DIM, seed=4)
    vector_memory.search(q, k=3)
    vector_memory.search(q[0], k=3)  # the cache answers
    vector_memory.search(q[0], k=4, hops=2)
    total = vector_memory.stats()["reads"]["total"]
    assert total["searches"] == 2 + 1 + 2 and total["hops"] == 5
    assert total["cache_hits"] == 1 and total["slots_read"] == 6 + 3 + (100 + 102)


def test_readme_example_of_a_conversation_whose_facts_change() -> None:
    """The README's worked example runs as written (its asserts are the claims it makes)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    marker = "<!-- example: memory-that-changes"
    block = readme.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
