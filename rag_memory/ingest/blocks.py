"""Blocks: the unit of embedding, commit and resume, and the reader thread that prepares them.

A block is a fixed number of consecutive chunks in corpus order, so the same corpus and
options always give the same blocks. That is what makes a resumed build equal an
uninterrupted one: sentence-transformers pads (and length-sorts) within the texts it is
given, so a vector depends on its block's composition, which never changes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..id_hash import id_hash
from .chunking import Chunk, Chunker
from .records import DUPLICATE_ID, FieldMap, Problem, ProblemLog, RawRecord, to_document

_DONE = object()
_PUT_POLL_S = 0.1


@dataclass
class Block:
    """Consecutive slots to embed and commit together."""

    index: int  # 0-based position of the block in the build
    ids: list[str]
    texts: list[str]
    metadata: list[dict[str, Any]]
    lines: list[int]  # source line of each slot's document
    position: int  # progress position (bytes, rows or vectors) after the block
    documents: int  # documents read up to the end of this block (cumulative)
    vectors: np.ndarray | None = None  # precomputed keys (synthetic builds); None = embed texts


def _block(index: int, chunks: list[Chunk], position: int, documents: int) -> Block:
    return Block(
        index,
        [c.id for c in chunks],
        [c.text for c in chunks],
        [c.metadata for c in chunks],
        [c.line for c in chunks],
        position,
        documents,
    )


def text_blocks(
    records: Iterable[RawRecord],
    fields: FieldMap,
    chunker: Chunker,
    block_size: int,
    problems: ProblemLog,
    limit: int | None = None,
) -> Iterator[Block]:
    """Records -> documents -> chunks -> blocks of `block_size` chunks (the last may be short).

    Bad records and documents whose id repeats an earlier one go to `problems` (the first
    occurrence wins). `limit` stops after that many valid documents.
    """
    seen: set[int] = set()
    pending: list[Chunk] = []
    index = documents = position = 0
    for record in records:
        position = record.position
        doc = to_document(record, fields)
        if isinstance(doc, Problem):
            problems.add(doc)
            continue
        chunks = chunker.split(doc)
        # ~40 bytes held per id instead of the string; a false duplicate needs a 64-bit
        # collision (~1e-7 at 2M ids)
        keys = [id_hash(c.id) for c in chunks]
        if any(k in seen for k in keys):
            problems.add(Problem(doc.line, DUPLICATE_ID, f"{doc.id!r} repeats an earlier id"))
            continue
        seen.update(keys)
        documents += 1
        pending.extend(chunks)
        while len(pending) >= block_size:
            yield _block(index, pending[:block_size], position, documents)
            pending = pending[block_size:]
            index += 1
        if limit is not None and documents >= limit:
            break
    if pending:
        yield _block(index, pending, position, documents)


class Prefetcher:
    """Runs an iterator in a thread, `depth` items ahead, so reading and tokenising overlap
    with encoding in the caller's thread. RAM stays bounded by the queue depth.

    An exception in the thread is re-raised in the caller at the point it would have occurred.
    """

    def __init__(self, items: Iterator[Any], depth: int = 2) -> None:
        self._items = items
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.busy_s = 0.0  # time the thread spent producing items
        self.wait_s = 0.0  # time the consumer spent waiting for them
        self._thread = threading.Thread(
            target=self._run, name="rag-memory-build-reader", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(self._items)
                except StopIteration:
                    break
                finally:
                    self.busy_s += time.perf_counter() - start
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def __iter__(self) -> Iterator[Any]:
        while True:
            start = time.perf_counter()
            item = self._queue.get()
            self.wait_s += time.perf_counter() - start
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread (used when the consumer stops early, e.g. on an error)."""
        self._stop.set()
        self._thread.join(timeout=5)
