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
from typing import Any, Generic, TypeVar

import numpy as np

from ..id_hash import id_hash
from .chunking import Chunk, Chunker
from .records import DUPLICATE_ID, FieldMap, Problem, ProblemLog, RawRecord, to_document

_DONE = object()
_PUT_POLL_S = 0.1
T = TypeVar("T")


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


@dataclass(frozen=True)
class Cut(Generic[T]):
    """One block as `BlockCutter` cuts it: its index, its items, and the progress position
    and documents read up to its end."""

    index: int
    items: list[T]
    position: int
    documents: int


def _block(cut: Cut[Chunk]) -> Block:
    chunks = cut.items
    return Block(
        cut.index,
        [c.id for c in chunks],
        [c.text for c in chunks],
        [c.metadata for c in chunks],
        [c.line for c in chunks],
        cut.position,
        cut.documents,
    )


class BlockCutter(Generic[T]):
    """The sequential rules that turn a build's stream of documents into blocks, in one place
    for every pipeline (the local one and the Ray build, whose chunks come from Ray Data):

    - a bad record goes to `problems`; so does a document any of whose slot ids repeats an
      earlier one (the first occurrence wins);
    - blocks are `block_size` consecutive slots (items) in corpus order, the last may be short;
    - `limit` stops after that many valid documents (`full`).
    """

    def __init__(self, block_size: int, problems: ProblemLog, limit: int | None = None) -> None:
        self.block_size = block_size
        self.problems = problems
        self.limit = limit
        self.documents = 0  # valid documents so far
        self.position = 0  # progress position after the last record seen
        self._seen: set[int] = set()
        self._pending: list[T] = []
        self._index = 0

    @property
    def full(self) -> bool:
        """The limit of documents is reached: the caller reads no further."""
        return self.limit is not None and self.documents >= self.limit

    def skip(self, problem: Problem, position: int) -> None:
        """A record that is no document."""
        self.position = position
        self.problems.add(problem)

    def add(
        self, line: int, doc_id: str, ids: list[str], items: list[T], position: int
    ) -> list[Cut[T]]:
        """A document's slots (`items`, with their slot `ids`): the blocks it completes."""
        self.position = position
        # ~40 bytes held per id instead of the string; a false duplicate needs a 64-bit
        # collision (~1e-7 at 2M ids)
        keys = [id_hash(i) for i in ids]
        if any(k in self._seen for k in keys):
            self.problems.add(Problem(line, DUPLICATE_ID, f"{doc_id!r} repeats an earlier id"))
            return []
        self._seen.update(keys)
        self.documents += 1
        self._pending.extend(items)
        cuts = []
        while len(self._pending) >= self.block_size:
            cuts.append(self._cut(self._pending[: self.block_size]))
            self._pending = self._pending[self.block_size :]
        return cuts

    def rest(self) -> list[Cut[T]]:
        """The last, short block, if any slots are left."""
        cuts = [self._cut(self._pending)] if self._pending else []
        self._pending = []
        return cuts

    def _cut(self, items: list[T]) -> Cut[T]:
        cut = Cut(self._index, items, self.position, self.documents)
        self._index += 1
        return cut


def text_blocks(
    records: Iterable[RawRecord],
    fields: FieldMap,
    chunker: Chunker,
    block_size: int,
    problems: ProblemLog,
    limit: int | None = None,
) -> Iterator[Block]:
    """Records -> documents -> chunks -> blocks of `block_size` chunks (`BlockCutter`'s rules)."""
    cutter: BlockCutter[Chunk] = BlockCutter(block_size, problems, limit)
    for record in records:
        doc = to_document(record, fields)
        if isinstance(doc, Problem):
            cutter.skip(doc, record.position)
            continue
        chunks = chunker.split(doc)
        cuts = cutter.add(doc.line, doc.id, [c.id for c in chunks], chunks, record.position)
        yield from map(_block, cuts)
        if cutter.full:
            break
    yield from map(_block, cutter.rest())


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
