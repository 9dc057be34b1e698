"""BuildConfig: every option of a build in one frozen, validated object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..index.plan import parse_bytes
from ..validation import check_int
from .chunking import DEFAULT_OVERLAP
from .records import FieldMap

DEFAULT_MEMORY_BUDGET_TEXT = "1GiB"  # --memory-budget; BuildConfig and SyntheticConfig alike
DEFAULT_MEMORY_BUDGET = parse_bytes(DEFAULT_MEMORY_BUDGET_TEXT)
CPU_BATCH_SIZE = 64  # past ~64 a CPU gains nothing and pads more (2-16 cores measured alike)
GPU_BATCH_SIZE = 256
DEFAULT_BLOCK_BATCHES = 16  # a block (commit, resume unit) = 16 encoder batches


@dataclass(frozen=True)
class BuildConfig:
    """A text build: corpus SOURCE -> memory OUT."""

    source: Path  # a file, or a BEIR folder holding corpus.jsonl
    out: Path  # the memory directory
    format: str | None = None  # beir | jsonl | csv | parquet | text; None = from the suffix
    fields: FieldMap = field(default_factory=FieldMap)
    max_tokens: int | None = None  # chunk size in tokens; None = the model's limit
    overlap: int = DEFAULT_OVERLAP  # tokens shared by neighbouring chunks
    batch_size: int | None = None  # encoder batch; None = 64 on CPU, 256 on a GPU
    block_batches: int = DEFAULT_BLOCK_BATCHES  # encoder batches per committed block
    memory_budget: int = DEFAULT_MEMORY_BUDGET  # plan's index bytes; sealed shards' RAM
    seal_threshold: int | None = None  # growing-shard size that seals; None = IndexConfig's
    embedder: str | None = None  # sentence-transformers name or path; None = MiniLM
    lexical: bool = True  # a BM25 index beside the vectors (lexical and hybrid search)
    device: str | None = None  # torch device; None = a GPU when there is one
    strict: bool = False  # stop at the first bad record instead of skipping it
    append: bool = False  # allow building into an existing memory
    limit: int | None = None  # stop after this many valid documents
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self) -> None:
        for name in ("max_tokens", "batch_size", "limit", "seal_threshold"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_int(getattr(self, name), name))
        for name, minimum in (("block_batches", 1), ("memory_budget", 1), ("overlap", 0)):
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum))
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "out", Path(self.out))
