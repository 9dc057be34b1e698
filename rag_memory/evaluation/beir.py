"""Build a memory from a BEIR corpus (one slot per document) for `rag-memory eval retrieval`.

The dataset itself is read by `rag_memory.datasets.beir`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from ..datasets.beir import iter_corpus
from ..errors import InvalidInputError
from ..memory import Memory

logger = logging.getLogger(__name__)


def build_memory(
    dataset: str | Path, directory: str | Path, embedder: str | None = None, batch_size: int = 256
) -> Memory:
    """Embed the corpus into a new memory at `directory` and return it open.

    Each document is one slot whose id and `metadata["doc_id"]` are the BEIR document id, so
    a later chunking build (several slots per document) is scored the same way.
    """
    docs = list(iter_corpus(Path(dataset)))
    if not docs:
        raise InvalidInputError(f"{dataset}/corpus.jsonl holds no documents")
    mem = Memory.create(directory, embedder)
    try:
        with tqdm(total=len(docs), desc="embedding corpus", unit="doc") as bar:
            for start in range(0, len(docs), batch_size):
                batch = docs[start : start + batch_size]
                mem.add(
                    [t for _, t in batch],
                    ids=[d for d, _ in batch],
                    metadata=[{"doc_id": d} for d, _ in batch],
                )
                bar.update(len(batch))
    except BaseException:
        mem.close()
        raise
    logger.info("built %s: %d documents", directory, len(docs))
    return mem
