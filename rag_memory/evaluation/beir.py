"""Build a memory from a BEIR corpus (one slot per document) for `rag-memory eval retrieval`.

The dataset itself is read by `rag_memory.datasets.beir`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from ..datasets.beir import BeirDocument, iter_corpus
from ..errors import InvalidInputError
from ..memory import Memory

logger = logging.getLogger(__name__)


def slot_metadata(doc: BeirDocument) -> dict[str, str]:
    """A document's slot metadata: its id under "doc_id" (what the metrics score by) and its
    title, when it has one, under "title" (the lexical index's default title key)."""
    return {"doc_id": doc.doc_id, **({"title": doc.title} if doc.title else {})}


def build_memory(
    dataset: str | Path, directory: str | Path, embedder: str | None = None, batch_size: int = 256
) -> Memory:
    """Embed the corpus into a new memory at `directory` and return it open.

    Each document is one slot whose id and `metadata["doc_id"]` are the BEIR document id, so
    a later chunking build (several slots per document) is scored the same way. A non-empty
    title is kept under `metadata["title"]`: the memory's lexical index reads it into its
    title column (LexicalConfig.title_key) and indexes the rest of the text as the body, so
    BM25 can weigh title words apart (BM25F-like, as Anserini's multifield BEIR runs do).
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
                    [doc.text for doc in batch],
                    ids=[doc.doc_id for doc in batch],
                    metadata=[slot_metadata(doc) for doc in batch],
                )
                bar.update(len(batch))
    except BaseException:
        mem.close()
        raise
    logger.info("built %s: %d documents", directory, len(docs))
    return mem
