"""RagMemoryVectorStore beyond LangChain's standard suite: scores and relevance, filters,
the memory's search modes, MMR, deletes, construction, and the embedder the manifest records.
Semantic checks use the memory's own MiniLM embedder (one loaded instance per session)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="the [langchain] extra")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import (  # noqa: E402
    DeterministicFakeEmbedding,
    Embeddings,
    FakeEmbeddings,
)

from rag_memory import (  # noqa: E402
    EmbedderMismatchError,
    InvalidFilterError,
    InvalidInputError,
    Memory,
)
from rag_memory.embed import Embedder  # noqa: E402
from rag_memory.errors import SearchModeError  # noqa: E402
from rag_memory.integrations.langchain import (  # noqa: E402
    LangChainEmbedder,
    MemoryEmbeddings,
    RagMemoryVectorStore,
    cosine_relevance,
    to_where,
)

DOCS = {
    "paris": ("Paris is the capital and largest city of France.", {"topic": "geo", "n": 1}),
    "volcano": ("Volcanoes form where magma reaches the surface.", {"topic": "earth", "n": 2}),
    "hash": ("A hash table finds a key by hashing it to a bucket.", {"topic": "cs", "n": 3}),
    "berlin": ("Berlin is the capital of Germany.", {"topic": "geo", "n": 4}),
}


@pytest.fixture
def store(tmp_path: Path, embedder: Embedder) -> RagMemoryVectorStore:
    """The four DOCS in a store on the memory's own (MiniLM) embedder."""
    with RagMemoryVectorStore(tmp_path / "mem", embedder=embedder) as store:
        store.add_texts(
            [text for text, _ in DOCS.values()],
            [meta for _, meta in DOCS.values()],
            ids=list(DOCS),
        )
        yield store


class TableEmbeddings(Embeddings):
    """Fixed vectors by text: a model whose geometry a test sets exactly."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]


# -- scores ------------------------------------------------------------------------------
def test_scores_are_the_memorys_cosines_and_relevance_maps_them_into_0_1(
    store: RagMemoryVectorStore,
) -> None:
    pairs = store.similarity_search_with_score("What is the capital of France?", k=4)
    assert [doc.id for doc, _ in pairs][0] == "paris"
    hits = store.memory.search("What is the capital of France?", k=4, mode="dense")
    assert [(d.id, s) for d, s in pairs] == [(h.id, h.score) for h in hits]
    assert pairs[0][0] == Document(
        id="paris", page_content=DOCS["paris"][0], metadata=DOCS["paris"][1]
    )
    relevance = store.similarity_search_with_relevance_scores("What is the capital of France?", k=4)
    assert [d.id for d, _ in relevance] == [d.id for d, _ in pairs]
    for (_, cosine), (_, rel) in zip(pairs, relevance, strict=True):
        assert rel == pytest.approx((1 + cosine) / 2) and 0.0 <= rel <= 1.0
    assert store._select_relevance_score_fn() is cosine_relevance
    assert [cosine_relevance(c) for c in (-1.0, 0.0, 1.0, 1.0000001)] == [0.0, 0.5, 1.0, 1.0]


def test_score_threshold_keeps_only_relevant_documents(store: RagMemoryVectorStore) -> None:
    query = "Which city is the capital of France?"
    relevance = dict(
        (d.id, r) for d, r in store.similarity_search_with_relevance_scores(query, k=4)
    )
    threshold = (relevance["paris"] + max(r for i, r in relevance.items() if i != "paris")) / 2
    kept = store.similarity_search_with_relevance_scores(query, k=4, score_threshold=threshold)
    assert [d.id for d, _ in kept] == ["paris"]
    retriever = store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 4, "score_threshold": threshold},
    )
    assert [d.id for d in retriever.invoke(query)] == ["paris"]


def test_relevance_scores_refuse_modes_without_a_cosine_scale(store: RagMemoryVectorStore) -> None:
    for mode in ("lexical", "hybrid"):
        with pytest.raises(SearchModeError, match="relevance scores need a dense search"):
            store.similarity_search_with_relevance_scores("capital", k=2, mode=mode)


# -- the memory's search modes and options -------------------------------------------------
def test_search_kwargs_reach_the_memorys_modes(store: RagMemoryVectorStore) -> None:
    lexical = store.similarity_search_with_score("bucket", k=4, mode="lexical")
    assert [d.id for d, _ in lexical] == ["hash"]  # BM25: only the slot holding the word
    assert lexical[0][1] == store.memory.search("bucket", k=4, mode="lexical")[0].score
    hybrid = store.similarity_search(
        "capital of Germany", k=2, mode="hybrid", hybrid={"alpha": 0.7}
    )
    assert hybrid[0].id == "berlin"
    with pytest.raises(InvalidInputError, match="unknown search options"):
        store.similarity_search("capital", k=2, mood="dense")
    with pytest.raises(SearchModeError):
        store.similarity_search_by_vector([0.1] * 384, k=2, mode="lexical")


def test_recency_reaches_the_memory(tmp_path: Path, embedder: Embedder) -> None:
    with RagMemoryVectorStore(tmp_path / "m", embedder=embedder) as store:
        store.add_texts(["Mary went to the kitchen."], ids=["old"], timestamps=[1.0])
        store.add_texts(["Mary went to the garden."], ids=["new"], timestamps=[2.0])
        query = "Where is Mary?"
        assert store.similarity_search(query, k=1, recency_half_life=1.0)[0].id == "new"
        recent = store.similarity_search_with_relevance_scores(query, k=2, recency_half_life=1.0)
        plain = dict((d.id, s) for d, s in store.similarity_search_with_score(query, k=2))
        # ranked with recency, each relevance the cosine before recency counted
        assert [(d.id, r) for d, r in recent][0][0] == "new"
        for doc, rel in recent:
            assert rel == pytest.approx(cosine_relevance(plain[doc.id]), abs=1e-6)


def test_by_vector_matches_by_text_through_the_stores_embeddings(
    store: RagMemoryVectorStore, embedder: Embedder
) -> None:
    assert isinstance(store.embeddings, MemoryEmbeddings)
    query = "molten rock erupting"
    vector = store.embeddings.embed_query(query)
    np.testing.assert_allclose(vector, embedder.encode([query])[0], atol=1e-6)
    by_vector = store.similarity_search_with_score_by_vector(vector, k=3)
    by_text = store.similarity_search_with_score(query, k=3)
    assert [d.id for d, _ in by_vector] == [d.id for d, _ in by_text]
    assert [s for _, s in by_vector] == pytest.approx([s for _, s in by_text], abs=1e-5)
    assert store.similarity_search_by_vector(vector, k=1)[0].id == "volcano"
    assert len(store.embeddings.embed_documents(["a", "b"])) == 2


# -- filters -------------------------------------------------------------------------------
def test_filters_translate_onto_where() -> None:
    assert to_where(None) is None and to_where({}) is None
    assert to_where({"a": 1}) == {"a": 1}
    assert to_where({"a": {"$gte": 1, "$lt": 5}}) == {
        "$and": [{"a": {"$gte": 1}}, {"a": {"$lt": 5}}]
    }
    assert to_where({"a": {"$between": [1, 5]}}) == {
        "$and": [{"a": {"$gte": 1}}, {"a": {"$lte": 5}}]
    }
    assert to_where({"$or": [{"a": 1}, {"b": {"$in": ["x"]}}]}) == {
        "$or": [{"a": 1}, {"b": {"$in": ["x"]}}]
    }
    assert to_where({"$not": {"a": 1, "b": {"$in": [1, 2]}}}) == {
        "$or": [{"a": {"$ne": 1}}, {"b": {"$nin": [1, 2]}}]
    }
    assert to_where({"$not": [{"a": 1}, {"$or": [{"b": 2}, {"c": {"$ne": 3}}]}]}) == {
        "$and": [{"a": {"$ne": 1}}, {"$and": [{"b": {"$ne": 2}}, {"c": {"$eq": 3}}]}]
    }
    assert to_where({"$written_at": {"$gte": 5}}) == {"$written_at": {"$gte": 5}}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"a": {"$like": "x%"}}, "unsupported filter operator '\\$like'"),
        ({"a": {"$ilike": "x%"}}, "unsupported filter operator '\\$ilike'"),
        ({"a": {"$exists": True}}, "unsupported filter operator '\\$exists'"),
        ({"a": {"$contains": "x"}}, "unsupported filter operator '\\$contains'"),
        ({"$nor": [{"a": 1}]}, "unsupported filter operator '\\$nor'"),
        ({"a": [1, 2]}, "a list is not a value"),
        ({"a": {}}, "has no operator"),
        ({"a": {"$between": [1]}}, "needs \\[low, high\\]"),
        ({"$and": []}, "non-empty list"),
        ({"$not": {"a": {"$gt": 1}}}, "cannot negate"),
        (lambda doc: True, "must be a non-empty dict"),
    ],
)
def test_unsupported_filters_are_errors(bad: object, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message):
        to_where(bad)


def test_filters_select_documents(store: RagMemoryVectorStore) -> None:
    def ids(filter: dict) -> set[str]:
        return {d.id for d in store.similarity_search("city", k=4, filter=filter)}

    assert ids({"topic": "geo"}) == {"paris", "berlin"}
    assert ids({"n": {"$between": [2, 3]}}) == {"volcano", "hash"}
    assert ids({"topic": {"$nin": ["geo", "cs"]}}) == {"volcano"}
    assert ids({"$or": [{"topic": "cs"}, {"n": {"$gte": 4}}]}) == {"hash", "berlin"}
    assert ids({"$not": {"topic": "geo"}}) == {"volcano", "hash"}
    assert ids({"missing": {"$ne": 1}}) == set(DOCS)  # like $ne in the memory: absent counts
    assert ids({"topic": "geo", "n": {"$gt": 1}}) == {"berlin"}
    with pytest.raises(InvalidFilterError):
        store.similarity_search("city", k=2, filter={"topic": {"$regex": "g.*"}})
    retriever = store.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "earth"}})
    assert [d.id for d in retriever.invoke("capital city")] == ["volcano"]


# -- maximal marginal relevance --------------------------------------------------------------
def test_mmr_trades_similarity_for_diversity(tmp_path: Path) -> None:
    def unit(v: list[float]) -> list[float]:
        return list(np.asarray(v) / np.linalg.norm(v))

    table = {
        "a": unit([1, 0, 0]),
        "a twin": unit([0.99, 0.14, 0]),
        "b": unit([0.6, 0, 0.8]),
        "q": unit([1, 0.05, 0.3]),
    }
    with RagMemoryVectorStore(tmp_path / "m", TableEmbeddings(table), dim=3) as store:
        store.add_texts(["a", "a twin", "b"], ids=["a", "a twin", "b"])
        assert [d.id for d in store.similarity_search("q", k=2)] == ["a", "a twin"]
        mmr = store.max_marginal_relevance_search("q", k=2, fetch_k=3, lambda_mult=0.5)
        assert [d.id for d in mmr] == ["a", "b"]
        by_vector = store.max_marginal_relevance_search_by_vector(table["q"], k=2, fetch_k=3)
        assert [d.id for d in by_vector] == ["a", "b"]
        assert [d.id for d in store.max_marginal_relevance_search("q", k=2, lambda_mult=1.0)] == [
            "a",
            "a twin",
        ]
        retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3})
        assert [d.id for d in retriever.invoke("q")] == ["a", "b"]
        only_a = store.max_marginal_relevance_search("q", k=2, fetch_k=3, filter={"x": 1})
        assert only_a == []
        with pytest.raises(InvalidInputError, match="lambda_mult"):
            store.max_marginal_relevance_search("q", k=2, lambda_mult=1.5)


# -- writes and deletes ----------------------------------------------------------------------
def test_delete_without_ids_deletes_everything_and_by_filter_those_matching(
    store: RagMemoryVectorStore,
) -> None:
    assert store.delete(filter={"topic": "geo"}) is True
    assert sorted(store.memory.ids()) == ["hash", "volcano"]
    assert store.delete(["hash", "never stored"]) is True
    assert store.memory.ids() == ["volcano"]
    with pytest.raises(InvalidInputError, match="ids or a filter"):
        store.delete(["volcano"], filter={"n": 2})
    with pytest.raises(InvalidInputError, match="unknown options"):
        store.delete(["volcano"], cascade=True)
    assert store.delete() is True  # LangChain: "If None, delete all."
    assert len(store.memory) == 0 and store.similarity_search("volcano", k=1) == []
    assert store.delete() is True and store.delete([]) is True  # nothing left: still fine


def test_add_texts_upserts_generates_uuids_and_passes_write_options(
    store: RagMemoryVectorStore,
) -> None:
    ids = store.add_texts(["Lyon is a city in France.", "Rome is in Italy."], ids=["lyon", None])
    assert ids[0] == "lyon" and len(ids[1]) == 36 and ids[1].count("-") == 4  # str(uuid4())
    store.add_texts(["Lyon is on the Rhone."], [{"river": "Rhone"}], ids=["lyon"])
    (doc,) = store.get_by_ids(["lyon"])
    assert doc == Document(
        id="lyon", page_content="Lyon is on the Rhone.", metadata={"river": "Rhone"}
    )
    assert store.add_texts([]) == []
    store.add_texts(["A short-lived note."], ids=["note"], ttl=1e-9)
    assert store.get_by_ids(["note"]) == []  # expired at once
    with pytest.raises(InvalidInputError, match="unknown options"):
        store.add_texts(["x"], batch_size=3)
    assert [d.id for d in store.get_by_ids(["berlin", "nope", "paris", "berlin"])] == [
        "berlin",
        "paris",
    ]


def test_from_texts_and_from_documents_fill_a_memory_at_a_path(
    tmp_path: Path, embedder: Embedder
) -> None:
    with RagMemoryVectorStore.from_texts(
        ["alpha text", "beta text"],
        None,
        [{"k": 1}, {"k": 2}],
        ids=["a", "b"],
        memory_or_path=tmp_path / "t",
        embedder=embedder,
    ) as store:
        assert [d.metadata for d in store.get_by_ids(["a", "b"])] == [{"k": 1}, {"k": 2}]
    docs = [Document(id="d1", page_content="one document"), Document(page_content="another")]
    with RagMemoryVectorStore.from_documents(
        docs, DeterministicFakeEmbedding(size=8), memory_or_path=tmp_path / "d"
    ) as store:
        assert len(store.memory) == 2 and store.get_by_ids(["d1"])[0].page_content == "one document"
    with pytest.raises(InvalidInputError, match="memory_or_path"):
        RagMemoryVectorStore.from_texts(["x"], DeterministicFakeEmbedding(size=8))


# -- construction, embedders, persistence ------------------------------------------------------
def test_langchain_embeddings_are_recorded_and_checked_like_any_embedder(tmp_path: Path) -> None:
    path = tmp_path / "lc"
    with RagMemoryVectorStore(path, DeterministicFakeEmbedding(size=8)) as store:
        store.add_texts(["kept across reopen"], [{"k": 1}], ids=["x"])
        name = store.memory.manifest.embedder
        assert name == "langchain:langchain_core.embeddings.fake.DeterministicFakeEmbedding"
        assert store.memory.manifest.dim == 8
        assert isinstance(store.embeddings, DeterministicFakeEmbedding)
    with RagMemoryVectorStore(path, DeterministicFakeEmbedding(size=8)) as store:
        assert store.similarity_search("kept across reopen", k=1)[0].id == "x"
    with pytest.raises(EmbedderMismatchError, match="was built with embedder"):
        RagMemoryVectorStore(path, FakeEmbeddings(size=8))
    with pytest.raises(EmbedderMismatchError, match="pass that model to the store again"):
        RagMemoryVectorStore(path)
    with RagMemoryVectorStore(path, DeterministicFakeEmbedding(size=5)) as store:
        with pytest.raises(EmbedderMismatchError, match="5-d vectors, the memory holds 8-d"):
            store.similarity_search("query", k=1)
        with pytest.raises(EmbedderMismatchError, match="5-d vectors, the memory holds 8-d"):
            store.add_texts(["another"])
    # an explicit name and dim (no probe) through LangChainEmbedder
    named = LangChainEmbedder(DeterministicFakeEmbedding(size=4), name="langchain:my-model", dim=4)
    with RagMemoryVectorStore(tmp_path / "named", named) as store:
        assert (store.memory.manifest.embedder, store.memory.manifest.dim) == (
            "langchain:my-model",
            4,
        )


def test_a_memory_passed_in_stays_the_callers(tmp_path: Path) -> None:
    model = DeterministicFakeEmbedding(size=8)
    with Memory.create(tmp_path / "m", embedder=LangChainEmbedder(model)) as memory:
        store = RagMemoryVectorStore(memory, model)
        store.add_texts(["through the store"], ids=["s"])
        store.close()  # not the store's to close
        assert memory.get("s")[0].text == "through the store"
        # a memory opened with its LangChain model needs no model given again
        assert RagMemoryVectorStore(memory).similarity_search("through the store", k=1)[0].id == "s"
        with pytest.raises(InvalidInputError, match="already open"):
            RagMemoryVectorStore(memory, model, dim=8)
        with pytest.raises(EmbedderMismatchError):
            RagMemoryVectorStore(memory, FakeEmbeddings(size=8))
    # a memory opened with its default embedder, searched through a store given vectors
    vectors = {"u": [1.0, 0.0, 0.0, 0.0], "v": [0.0, 1.0, 0.0, 0.0]}
    with Memory.create(tmp_path / "v", dim=4) as memory:
        memory.add(["u", "v"], ids=["u", "v"], vectors=np.array(list(vectors.values())))
        store = RagMemoryVectorStore(memory)
        assert store.similarity_search_by_vector([0.1, 0.9, 0.0, 0.0], k=1)[0].id == "v"


def test_memory_options_are_checked_against_create_and_open(tmp_path: Path) -> None:
    model = DeterministicFakeEmbedding(size=8)
    with pytest.raises(InvalidInputError, match=r"\['read_only'\] do not apply when creating"):
        RagMemoryVectorStore(tmp_path / "new", model, read_only=True)
    assert not (tmp_path / "new").exists()
    RagMemoryVectorStore(tmp_path / "m", model, lexical=False, ttl=60.0).close()
    with pytest.raises(InvalidInputError, match=r"\['ttl'\] do not apply when opening"):
        RagMemoryVectorStore(tmp_path / "m", model, ttl=5.0)
    with pytest.raises(InvalidInputError, match="give the embedding model once"):
        RagMemoryVectorStore(tmp_path / "m", model, embedder="other")
    with RagMemoryVectorStore(tmp_path / "m", model, read_only=True) as reader:
        assert reader.memory.read_only and reader.memory.manifest.ttl == 60.0
    with pytest.raises(InvalidInputError, match="must be a langchain_core.*Embeddings"):
        RagMemoryVectorStore(tmp_path / "x", embedding="not a model")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="a Memory or a path"):
        RagMemoryVectorStore(42)  # type: ignore[arg-type]


def test_async_methods_run_the_sync_ones(tmp_path: Path) -> None:
    import asyncio

    async def run(store: RagMemoryVectorStore) -> list[Document]:
        await store.aadd_texts(["async text"], ids=["a"])
        found = await store.asimilarity_search_with_relevance_scores("async text", k=1)
        assert math.isclose(found[0][1], 1.0, abs_tol=1e-5)
        await store.adelete()
        return await store.asimilarity_search("async text", k=1)

    with RagMemoryVectorStore(tmp_path / "m", DeterministicFakeEmbedding(size=8)) as store:
        assert asyncio.run(run(store)) == []
