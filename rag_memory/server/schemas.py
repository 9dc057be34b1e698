"""The server's request and response bodies, as pydantic models: FastAPI validates every request
against them (a wrong type or an unknown field is a 422 naming it) and the OpenAPI schema is
read from them.

Requests are strict and closed (`extra="forbid"`): "5" is not an int, and a misspelt field
(`"wehre"`) is refused rather than silently ignored, which would return unfiltered hits. The
models check shapes and batch sizes only; what a value means (a valid `where`, ids that are
unique, vectors of the memory's dimension) is the memory's own check, so the server and the
in-process API refuse the same inputs with the same errors. No field names a path: nothing a
client sends makes the server read or write a file it chose.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Inputs one request may carry: texts or vectors written, queries searched, ids looked up.
MAX_BATCH = 1024
MAX_IDS = 10_000
MAX_K = 1000
# Hits one search may return (k x queries), which bounds the response as MAX_BATCH bounds the
# request.
MAX_HITS = 100_000


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


Texts = str | Annotated[list[str], Field(max_length=MAX_BATCH)]
Ids = str | Annotated[list[str], Field(max_length=MAX_IDS)]
Vectors = (
    Annotated[list[float], Field(max_length=65_536)]
    | Annotated[list[list[float]], Field(max_length=MAX_BATCH)]
)
Metadata = dict[str, Any] | Annotated[list[dict[str, Any]], Field(max_length=MAX_BATCH)]
Number = float
Timestamps = Number | Annotated[list[Number], Field(max_length=MAX_BATCH)]
# One ttl in seconds or one per text (null: the memory's default; 1e999, read as infinity,
# or math.inf from Python: never expires).
Ttl = Number | Annotated[list[Number | None], Field(max_length=MAX_BATCH)]
Scope = dict[str, str | int | float | bool]


class WriteRequest(Request):
    texts: Texts
    metadata: Metadata | None = None
    vectors: Vectors | None = Field(
        None, description="Precomputed keys (n, dim) that skip the embedder."
    )
    timestamps: Timestamps | None = None
    ttl: Ttl | None = None
    scope: Scope | None = None


class AddRequest(WriteRequest):
    ids: Ids | None = None
    dedupe: str | None = Field(None, description='"exact" or "near" (rag_memory.dedupe).')


class UpsertRequest(WriteRequest):
    ids: Ids


class RememberRequest(Request):
    text: str
    role: str = "user"
    metadata: dict[str, Any] | None = None
    timestamp: Number | None = None
    ttl: Number | None = None
    dedupe: str | None = Field(None, description='"exact" or "near" (rag_memory.dedupe).')
    scope: Scope | None = None


class IdsRequest(Request):
    ids: Ids


class SearchOptions(Request):
    """What `Memory.search` takes beside the query (see its docstring)."""

    k: int = Field(10, le=MAX_K)
    where: dict[str, Any] | None = None
    mode: str | None = Field(None, description='"dense", "lexical" or "hybrid".')
    hybrid: dict[str, Any] | None = Field(
        None, description="HybridConfig fields: fusion, alpha, rrf_k, fetch_k."
    )
    recency_half_life: Number | None = None
    hops: int = 1
    recall: dict[str, Any] | None = Field(
        None, description="RecallConfig fields: margin, hop_query, fetch_k, diversity."
    )


class SearchRequest(SearchOptions):
    """Exactly one of `query` (a text or a list of texts) and `vectors` (one query vector or a
    list of them). A single text or vector returns `hits`; a list returns `results`, one list
    of hits per query."""

    query: Texts | None = None
    vectors: Vectors | None = None
    cache: bool = True
    nprobe: int | None = None
    refine_factor: int | None = None
    recall_target: Number | None = None

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.query is None) == (self.vectors is None):
            raise ValueError("give exactly one of query (texts) and vectors")
        return self

    @model_validator(mode="after")
    def _bounded_answer(self) -> SearchRequest:
        queries = self.query if self.query is not None else self.vectors
        n = len(queries) if isinstance(queries, list) and _is_batch(queries) else 1
        if n * self.k > MAX_HITS:
            raise ValueError(
                f"k x queries = {n * self.k:,} hits, more than the {MAX_HITS:,} one request "
                "may return: search in smaller batches"
            )
        return self


def _is_batch(queries: list[Any]) -> bool:
    """A list of texts or of vectors, not one vector (a list of numbers)."""
    return not queries or not isinstance(queries[0], float)


class GenerateRequest(SearchOptions):
    """`Memory.generate`'s arguments; `stream` sends the answer as server-sent events."""

    question: str
    k: int = Field(5, le=MAX_K)
    fusion: str | None = Field(None, description='"xattn", "mixture" or "concat".')
    remember: bool = False
    scope: Scope | None = None
    max_new_tokens: int | None = None
    stop: Annotated[list[str], Field(max_length=64)] | None = None
    stream: bool = False


class EmbeddingsRequest(Request):
    """OpenAI's embeddings request. `input` is a text or a list of texts (token arrays are not
    read); `model`, when given, must name the memory's embedder; `dimensions` is not
    supported (the memory's vectors have one dimension)."""

    model_config = ConfigDict(strict=True, extra="ignore")  # OpenAI clients send `user`

    input: Texts
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"


# -- responses ------------------------------------------------------------------------------


class HitOut(BaseModel):
    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    address: int
    written_at: float | None
    dense_score: float | None
    dense_rank: int | None
    lexical_score: float | None
    lexical_rank: int | None
    hop: int
    relevance: float | None
    cached: bool
    cache_similarity: float | None


class SearchOut(BaseModel):
    hits: list[HitOut] | None = None
    results: list[list[HitOut]] | None = None


class SlotOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]
    address: int
    written_at: float | None
    expires_at: float | None


class SlotsOut(BaseModel):
    slots: list[SlotOut]


class WriteOut(BaseModel):
    ids: list[str]
    merged: dict[str, str] = Field(
        description="Input position -> the id of the slot that input merged into (dedupe)."
    )


class RememberOut(BaseModel):
    id: str


class ContainsOut(BaseModel):
    found: list[bool]


class CountOut(BaseModel):
    slots: int


class DeletedOut(BaseModel):
    deleted: int


class HealthOut(BaseModel):
    status: Literal["ok"]


class AnswerOut(BaseModel):
    text: str
    hits: list[HitOut]
    weights: list[float]
    fusion: str
    timings: dict[str, Any]


class ErrorOut(BaseModel):
    """Every refusal: `error` is the class name (a rag_memory.errors class for what the memory
    refused), `message` says what was wrong."""

    error: str
    message: str
    detail: list[dict[str, Any]] | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
