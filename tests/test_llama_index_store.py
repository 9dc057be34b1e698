"""RagMemoryVectorStore for LlamaIndex end to end: VectorStoreIndex over the store with local
embedding models (the memory's own MiniLM, and a deterministic word-hashing BaseEmbedding),
retrieval, deletion by document, persistence across reopen; then nodes, filters and query
modes one by one."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_index.core", reason="the [llama-index] extra")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from rag_memory import (  # noqa: E402
    EmbedderMismatchError,
    InvalidFilterError,
    InvalidInputError,
    InvalidVectorError,
    Memory,
)
from rag_memory.embed import Embedder  # noqa: E402
from rag_memory.errors import LexicalIndexMissingError, SearchModeError  # noqa: E402
from rag_memory.integrations.llama_index import (  # noqa: E402
    MemoryEmbedding,
    RagMemoryVectorStore,
    to_where,
)

WORDS = re.compile(r"\w+")


class WordHashEmbedding(BaseEmbedding):
    """A deterministic bag-of-words model: each word adds one to a hashed coordinate, so
    texts sharing words point alike (no network, no weights)."""

    dim: int = 64

    @classmethod
    def class_name(cls) -> str:
        return "WordHashEmbedding"

    def _vector(self, text: str) -> list[float]:
        vector = np.zeros(self.dim)
        for word in WORDS.findall(text.lower()):
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        vector[0] += 0.01  # never all zeros
        return vector.tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


GUIDE = (
    "Paris is the capital of France. The Seine flows through Paris. "
    "The Louvre in Paris is the largest art museum. Paris hosted the Olympic Games in 2024."
)
DOCUMENTS = [
    Document(text=GUIDE, doc_id="paris-guide", metadata={"topic": "geo", "year": 2024}),
    Document(
        text="Volcanoes form where magma from the mantle reaches the surface.",
        doc_id="volcanoes",
        metadata={"topic": "earth", "year": 2019},
    ),
    Document(
        text="A hash table finds a key by hashing it to a bucket index.",
        doc_id="hashing",
        metadata={"topic": "cs", "year": 2021},
    ),
]


def _index(store: RagMemoryVectorStore, embed_model: BaseEmbedding) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        DOCUMENTS,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
        transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0)],
    )


def _refs(results: list) -> list[str]:
    return [r.node.ref_doc_id for r in results]


@pytest.fixture
def store(tmp_path: Path, embedder: Embedder) -> RagMemoryVectorStore:
    with RagMemoryVectorStore(tmp_path / "mem", embedder=embedder) as store:
        yield store


# -- end to end ------------------------------------------------------------------------------
def test_index_retrieves_deletes_by_document_and_persists(
    tmp_path: Path, embedder: Embedder
) -> None:
    path = tmp_path / "mem"
    with RagMemoryVectorStore(path, embedder=embedder) as store:
        index = _index(store, store.embed_model)
        guide_nodes = store.memory.ids({"ref_doc_id": "paris-guide"})
        assert len(guide_nodes) > 1  # the splitter made several nodes of one document
        assert len(store.memory) == len(guide_nodes) + 2
        retriever = index.as_retriever(similarity_top_k=2)
        top = retriever.retrieve("Where is the Louvre museum?")
        assert _refs(top)[0] == "paris-guide" and "Louvre" in top[0].node.get_content()
        assert top[0].node.metadata == {"topic": "geo", "year": 2024}
        assert top[0].score == pytest.approx(
            store.memory.search("Where is the Louvre museum?", k=1, mode="dense")[0].score, abs=1e-5
        )
        assert _refs(retriever.retrieve("How do volcanoes form?"))[0] == "volcanoes"
        index.delete_ref_doc("paris-guide")
        assert store.memory.ids({"ref_doc_id": "paris-guide"}) == []
        assert len(store.memory) == 2
        assert "paris-guide" not in _refs(retriever.retrieve("Where is the Louvre museum?"))
    with RagMemoryVectorStore(path, embedder=embedder) as store:
        index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)
        found = index.as_retriever(similarity_top_k=3).retrieve("finding keys in buckets")
        assert _refs(found) == ["hashing", "volcanoes"]
        assert found[0].node.metadata == {"topic": "cs", "year": 2021}
        assert found[0].node.ref_doc_id == "hashing"


def test_a_llama_index_model_is_recorded_and_serves_every_mode(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    with RagMemoryVectorStore(path, WordHashEmbedding()) as store:
        assert store.memory.manifest.embedder == (
            "llama_index:test_llama_index_store.WordHashEmbedding:unknown"
        )
        assert store.memory.manifest.dim == 64
        assert isinstance(store.embed_model, WordHashEmbedding)
        index = _index(store, store.embed_model)
        for mode in ("default", "hybrid", "text_search", "mmr"):
            retriever = index.as_retriever(similarity_top_k=1, vector_store_query_mode=mode)
            assert _refs(retriever.retrieve("magma mantle surface")) == ["volcanoes"], mode
    with pytest.raises(EmbedderMismatchError, match="pass that model to the store again"):
        RagMemoryVectorStore(path)
    with RagMemoryVectorStore(path, WordHashEmbedding(dim=32)) as store:  # same name, other dim
        with pytest.raises(EmbedderMismatchError, match="32-d vectors, the memory holds 64-d"):
            store.query(VectorStoreQuery(query_str="magma", similarity_top_k=1))
    with RagMemoryVectorStore(path, WordHashEmbedding()) as store:
        hits = store.query(VectorStoreQuery(query_str="bucket index", similarity_top_k=1))
        assert hits.nodes[0].ref_doc_id == "hashing"


# -- nodes ----------------------------------------------------------------------------------
def _nodes() -> list[TextNode]:
    def node(id: str, text: str, doc: str, **metadata: object) -> TextNode:
        return TextNode(
            id_=id,
            text=text,
            metadata=metadata,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
        )

    return [
        node("n1", "Paris is the capital of France.", "d1", topic="geo", n=1),
        node("n2", "Berlin is the capital of Germany.", "d1", topic="geo", n=2),
        node("n3", "Magma rises in volcanoes.", "d2", topic="earth", n=3),
        node("n4", "Hash tables use buckets.", "d3", topic="cs", n=4, tags=["a", "b"]),
    ]


def test_nodes_round_trip_with_text_metadata_and_ref_doc(store: RagMemoryVectorStore) -> None:
    nodes = _nodes()
    assert store.add(nodes) == ["n1", "n2", "n3", "n4"]
    assert store.add([]) == []
    back = store.get_nodes(["n4", "missing", "n1"])
    assert [n.node_id for n in back] == ["n4", "n1"]
    assert back[0].get_content() == "Hash tables use buckets."
    assert back[0].metadata == {"topic": "cs", "n": 4, "tags": ["a", "b"]}
    assert back[0].ref_doc_id == "d3" and isinstance(back[0], TextNode)
    assert store.memory.get("n1")[0].metadata["ref_doc_id"] == "d1"
    changed = TextNode(id_="n1", text="Paris lies on the Seine.", metadata={"topic": "geo"})
    store.add([changed])  # a stored node id is replaced
    assert store.get_nodes(["n1"])[0].get_content() == "Paris lies on the Seine."
    assert len(store.memory) == 4
    assert store.stores_text is True and store.client is store.memory


def test_deletes_by_document_by_node_and_all(store: RagMemoryVectorStore) -> None:
    store.add(_nodes())
    store.delete("d1")
    assert sorted(store.memory.ids()) == ["n3", "n4"]
    store.delete("no such document")
    store.delete_nodes(["n3", "never stored"])
    assert store.memory.ids() == ["n4"]
    store.add(_nodes())
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="geo")]))
    assert sorted(store.memory.ids()) == ["n3", "n4"]
    store.delete_nodes(
        ["n3", "n4"],
        filters=MetadataFilters(filters=[MetadataFilter(key="n", value=4)]),
    )
    assert store.memory.ids() == ["n3"]
    store.add(_nodes())
    store.delete_nodes()  # no limit: every node, as in LlamaIndex's SimpleVectorStore
    assert len(store.memory) == 0
    store.add(_nodes())
    store.clear()
    assert len(store.memory) == 0 and store.get_nodes() == []
    with pytest.raises(InvalidInputError, match="unknown options"):
        store.delete("d1", cascade=True)


def test_node_embeddings_are_used_and_missing_ones_made(tmp_path: Path) -> None:
    model = WordHashEmbedding()
    with RagMemoryVectorStore(tmp_path / "m", model) as store:
        nodes = _nodes()[:2]
        nodes[0].embedding = model.get_text_embedding("volcano magma")  # not its own text
        store.add(nodes)
        found = store.query(
            VectorStoreQuery(query_embedding=model.get_query_embedding("magma"), similarity_top_k=1)
        )
        assert found.ids == ["n1"]  # found by the embedding it was given
        np.testing.assert_allclose(
            store.memory.vectors_of(store.memory.search("Berlin Germany", k=1))[1][0],
            np.asarray(model.get_text_embedding(nodes[1].text))
            / np.linalg.norm(model.get_text_embedding(nodes[1].text)),
            atol=1e-6,
        )
        bad = TextNode(id_="bad", text="x", embedding=[1.0, 2.0])
        with pytest.raises(InvalidVectorError):
            store.add([bad])


def test_slots_written_without_llama_index_read_as_text_nodes(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", dim=4) as memory:
        memory.add(["plain slot"], ids=["p"], metadata={"k": 1}, vectors=np.eye(4)[:1])
        store = RagMemoryVectorStore(memory)
        (node,) = store.get_nodes(["p"])
        assert isinstance(node, TextNode) and node.get_content() == "plain slot"
        assert node.metadata == {"k": 1} and node.node_id == "p"
        store.close()
        assert len(memory) == 1  # still open: the caller's memory


# -- filters --------------------------------------------------------------------------------
def _filters(*filters: object, condition: FilterCondition = FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)  # type: ignore[arg-type]


def test_every_mappable_operator_and_condition_translates() -> None:
    F, Op = MetadataFilter, FilterOperator
    assert to_where(None) is None and to_where(_filters()) is None
    pairs = [
        (Op.EQ, "$eq", "x"),
        (Op.NE, "$ne", "x"),
        (Op.GT, "$gt", 1),
        (Op.GTE, "$gte", 1.5),
        (Op.LT, "$lt", 2),
        (Op.LTE, "$lte", 2),
        (Op.IN, "$in", ["a", "b"]),
        (Op.NIN, "$nin", [1, 2]),
    ]
    for operator, op, value in pairs:
        assert to_where(_filters(F(key="f", value=value, operator=operator))) == {"f": {op: value}}
    a, b = F(key="a", value=1), F(key="b", value=["x"], operator=Op.IN)
    assert to_where(_filters(a, b)) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$in": ["x"]}}]}
    assert to_where(_filters(a, b, condition=FilterCondition.OR)) == {
        "$or": [{"a": {"$eq": 1}}, {"b": {"$in": ["x"]}}]
    }
    assert to_where(_filters(a, b, condition=FilterCondition.NOT)) == {
        "$and": [{"a": {"$ne": 1}}, {"b": {"$nin": ["x"]}}]
    }
    nested = _filters(
        a, _filters(b, F(key="c", value=3, operator=Op.GT), condition=FilterCondition.OR)
    )
    assert to_where(nested) == {
        "$and": [{"a": {"$eq": 1}}, {"$or": [{"b": {"$in": ["x"]}}, {"c": {"$gt": 3}}]}]
    }


@pytest.mark.parametrize(
    "operator",
    [
        FilterOperator.ANY,
        FilterOperator.ALL,
        FilterOperator.CONTAINS,
        FilterOperator.TEXT_MATCH,
        FilterOperator.TEXT_MATCH_INSENSITIVE,
        FilterOperator.IS_EMPTY,
    ],
)
def test_operators_without_a_where_form_are_errors(operator: FilterOperator) -> None:
    value: object = ["a"] if operator in (FilterOperator.ANY, FilterOperator.ALL) else "a"
    with pytest.raises(InvalidFilterError, match=f"'{operator.value}' on 'f' has no form"):
        to_where(_filters(MetadataFilter(key="f", value=value, operator=operator)))


def test_filters_that_cannot_be_exact_are_errors() -> None:
    F, Op = MetadataFilter, FilterOperator
    with pytest.raises(InvalidFilterError, match="cannot negate"):
        to_where(_filters(F(key="n", value=1, operator=Op.GT), condition=FilterCondition.NOT))
    with pytest.raises(InvalidFilterError, match="takes a list"):
        to_where(_filters(F(key="n", value=1, operator=Op.IN)))
    with pytest.raises(InvalidFilterError, match="takes one value"):
        to_where(_filters(F(key="n", value=[1], operator=Op.EQ)))
    with pytest.raises(InvalidFilterError, match="keys starting with"):
        to_where(_filters(F(key="$or", value=1)))
    with pytest.raises(InvalidFilterError, match="lists no filters"):
        to_where(_filters(F(key="n", value=1), _filters()))


def test_query_filters_and_doc_ids_select_nodes(store: RagMemoryVectorStore) -> None:
    store.add(_nodes())
    F, Op = MetadataFilter, FilterOperator

    def ids(filters: MetadataFilters | None = None, doc_ids: list[str] | None = None) -> set[str]:
        query = VectorStoreQuery(
            query_str="capital city", similarity_top_k=4, filters=filters, doc_ids=doc_ids
        )
        return set(store.query(query).ids or [])

    assert ids(_filters(F(key="topic", value="geo"))) == {"n1", "n2"}
    assert ids(
        _filters(F(key="n", value=2, operator=Op.GTE), F(key="n", value=4, operator=Op.LT))
    ) == {"n2", "n3"}
    assert ids(_filters(F(key="topic", value="geo"), condition=FilterCondition.NOT)) == {"n3", "n4"}
    assert ids(
        _filters(
            F(key="topic", value="cs"),
            F(key="n", value=[1, 3], operator=Op.IN),
            condition=FilterCondition.OR,
        )
    ) == {"n1", "n3", "n4"}
    assert ids(_filters(F(key="missing", value="x", operator=Op.NE))) == {"n1", "n2", "n3", "n4"}
    assert ids(doc_ids=["d1", "d3"]) == {"n1", "n2", "n4"}
    assert ids(_filters(F(key="n", value=1)), doc_ids=["d1"]) == {"n1"}
    assert [
        n.node_id for n in store.get_nodes(filters=_filters(F(key="topic", value="earth")))
    ] == ["n3"]


# -- query modes ------------------------------------------------------------------------------
def test_query_modes_the_memory_serves(store: RagMemoryVectorStore, embedder: Embedder) -> None:
    store.add(_nodes())
    vector = embedder.encode(["capital of Germany"])[0].tolist()
    by_vector = store.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=2))
    by_text = store.query(VectorStoreQuery(query_str="capital of Germany", similarity_top_k=2))
    assert by_vector.ids == by_text.ids and by_vector.ids[0] == "n2"
    assert by_vector.similarities == pytest.approx(by_text.similarities, abs=1e-5)
    text = store.query(
        VectorStoreQuery(
            query_str="buckets", similarity_top_k=4, mode=VectorStoreQueryMode.TEXT_SEARCH
        )
    )
    assert text.ids == ["n4"]  # BM25: only the node holding the word
    hybrid = store.query(
        VectorStoreQuery(
            query_str="capital of Germany",
            query_embedding=vector,
            similarity_top_k=2,
            mode=VectorStoreQueryMode.HYBRID,
            alpha=0.8,
        )
    )
    assert hybrid.ids[0] == "n2"
    assert hybrid.similarities == [
        h.score
        for h in store.memory.search(
            "capital of Germany", k=2, mode="hybrid", hybrid={"alpha": 0.8}
        )
    ]
    mmr = store.query(
        VectorStoreQuery(
            query_embedding=vector,
            similarity_top_k=2,
            mode=VectorStoreQueryMode.MMR,
            mmr_threshold=0.1,
        )
    )
    assert by_vector.ids == ["n2", "n1"]  # the two capitals, alike
    assert mmr.ids[0] == "n2" and mmr.ids[1] not in ("n1", "n2")  # diversity over the twin
    one = store.query(
        VectorStoreQuery(query_str="capital", similarity_top_k=1, mode=VectorStoreQueryMode.MMR),
        mmr_prefetch_k=1,
    )
    assert len(one.ids) == 1 and one.ids[0] in ("n1", "n2")
    recent = store.query(
        VectorStoreQuery(query_str="capital", similarity_top_k=2), recency_half_life=10.0
    )
    assert len(recent.ids) == 2


def test_queries_the_memory_cannot_serve_are_errors(
    tmp_path: Path, store: RagMemoryVectorStore
) -> None:
    store.add(_nodes())
    for mode in (
        VectorStoreQueryMode.SVM,
        VectorStoreQueryMode.SPARSE,
        VectorStoreQueryMode.SEMANTIC_HYBRID,
    ):
        with pytest.raises(SearchModeError, match="not one the memory serves"):
            store.query(VectorStoreQuery(query_str="x", mode=mode))
    with pytest.raises(SearchModeError, match="needs query_str"):
        store.query(VectorStoreQuery(query_embedding=[0.1] * 384, mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(InvalidInputError, match="query_embedding or query_str"):
        store.query(VectorStoreQuery(similarity_top_k=1))
    with pytest.raises(InvalidInputError, match="node_ids"):
        store.query(VectorStoreQuery(query_str="x", node_ids=["n1"]))
    with pytest.raises(InvalidInputError, match="unknown search options"):
        store.query(VectorStoreQuery(query_str="x"), mode="lexical")
    with pytest.raises(InvalidInputError, match="mmr_prefetch_k applies to MMR"):
        store.query(VectorStoreQuery(query_str="x"), mmr_prefetch_k=3)
    with pytest.raises(InvalidInputError, match="hybrid settings once"):
        store.query(
            VectorStoreQuery(query_str="x", mode=VectorStoreQueryMode.HYBRID, alpha=0.5),
            hybrid={"alpha": 0.3},
        )
    with RagMemoryVectorStore(tmp_path / "dense-only", WordHashEmbedding(), lexical=False) as dense:
        dense.add(_nodes())
        with pytest.raises(LexicalIndexMissingError):
            dense.query(VectorStoreQuery(query_str="magma", mode=VectorStoreQueryMode.TEXT_SEARCH))


def test_memory_embedding_is_the_memorys_embedder(
    store: RagMemoryVectorStore, embedder: Embedder
) -> None:
    model = store.embed_model
    assert isinstance(model, MemoryEmbedding) and model.model_name == embedder.name
    np.testing.assert_allclose(
        model.get_query_embedding("a query"), embedder.encode(["a query"])[0], atol=1e-6
    )
    assert len(model.get_text_embedding_batch(["one", "two"])) == 2
    with pytest.raises(InvalidInputError, match="must be a llama_index.*BaseEmbedding"):
        RagMemoryVectorStore(store.memory, embedder)  # type: ignore[arg-type]
