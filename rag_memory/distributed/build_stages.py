"""The Ray Data stages of `rag-memory build --ray`, which run in Ray's workers: read, chunk,
embed. The driver (build.py) consumes their rows in corpus order and writes the blocks.

- read (`CorpusDatasource`): one read task, pinned to the driver's node, runs the local
  build's own reader and record checks (`open_records`, `to_document`), so both builds see
  the same documents and report the same bad records with the same lines;
- chunk (`chunk_documents`, a `map_batches` function): the local build's `Chunker` (the
  driver's, with the model's tokenizer) cuts each document into its slots;
- embed (`EmbedBatches`, a callable class: an actor pool of `workers` actors, each loading the
  model once, on a GPU of its own where the cluster has GPUs): embeds every chunk row whose
  id was not stored before this run began.

One row per slot (a chunk) or per bad record (a problem), with the columns of `COLUMNS`; the
rules that need the whole stream in order (duplicate ids: the first occurrence wins, the
blocks, --limit) stay in the driver (`BlockCutter`), as in the local build.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from ..embed import Embedder
from ..id_hash import id_hash
from ..ingest.chunking import Chunker
from ..ingest.pipeline import make_encoder
from ..ingest.readers import Source, open_records
from ..ingest.records import Document, FieldMap, Problem, to_document

READ_ROWS = 256  # records per block the read task hands on
_COMMON = [
    ("line", pa.int64()),  # the record's line (its document's, for a slot)
    ("position", pa.int64()),  # progress position after the record (bytes or rows)
    # "" for a document or a slot; for a bad record its kind, and its detail as UTF-8 bytes
    # with surrogates kept (a detail may quote an id holding bytes that are not UTF-8)
    ("problem", pa.string()),
    ("detail", pa.binary()),
    ("id", pa.string()),
    ("text", pa.string()),
    ("metadata", pa.string()),  # JSON
    ("prep_s", pa.float64()),  # the row's share of the seconds spent reading (and chunking) it
]
# The read task's rows: one per record, a document or a bad record.
READ_SCHEMA = pa.schema([*_COMMON, ("title", pa.string())])
# The chunk stage's rows: one per slot (id, text and metadata as stored; "doc" its document's
# id, "last" on its document's last slot) or per bad record (ids and texts "").
CHUNK_SCHEMA = pa.schema([*_COMMON, ("doc", pa.string()), ("last", pa.bool_())])
# The embed stage adds "vector" (zeros where not embedded), "stored" (the id was stored
# before the run), "embedded", and "encode_s" (the row's share of its batch's seconds).


def problem_of(line: int, kind: str, detail: bytes) -> Problem:
    """The Problem a bad-record row stands for, as the local build reports it."""
    return Problem(line, kind, detail.decode("utf-8", "surrogatepass"))


def _problem_row(problem: Problem, position: int) -> dict[str, Any]:
    detail = problem.detail.encode("utf-8", "surrogatepass")
    return {"line": problem.line, "position": position, "problem": problem.kind, "detail": detail}


def _table(rows: list[dict[str, Any]], seconds: float, schema: pa.Schema) -> pa.Table:
    """Rows as a block, each with its share of the `seconds` spent making them."""
    share = seconds / len(rows) if rows else 0.0
    for row in rows:
        row["prep_s"] = row.get("prep_s", 0.0) + share
    return pa.Table.from_pylist(rows, schema=schema)


def _read_rows(source: Source, fields: FieldMap, rows: int) -> Iterator[pa.Table]:
    """The read task: the corpus's records as documents or problems, `rows` at a time."""
    records, mapped = open_records(source, fields)
    pending: list[dict[str, Any]] = []
    start = time.perf_counter()
    for record in records:
        doc = to_document(record, mapped)
        if isinstance(doc, Problem):
            pending.append(_problem_row(doc, record.position))
        else:
            pending.append(
                {
                    "line": doc.line,
                    "position": record.position,
                    "problem": "",
                    "id": doc.id,
                    "title": doc.title,
                    "text": doc.text,
                    "metadata": json.dumps(doc.metadata),
                }
            )
        if len(pending) == rows:
            yield _table(pending, time.perf_counter() - start, READ_SCHEMA)
            pending = []
            start = time.perf_counter()
    if pending:
        yield _table(pending, time.perf_counter() - start, READ_SCHEMA)


class CorpusDatasource(Datasource):
    """The corpus as one read task, in corpus order (the sequential rules downstream need
    that order; reading and parsing cost little beside embedding), on the driver's node:
    SOURCE is a file there, as for the local build."""

    def __init__(self, source: Source, fields: FieldMap, rows: int = READ_ROWS) -> None:
        super().__init__()
        self._source = source
        self._fields = fields
        self._rows = rows

    def get_name(self) -> str:
        return "ReadCorpus"

    @property
    def supports_distributed_reads(self) -> bool:
        return False  # Ray Data then runs the read task on the driver's node

    def estimate_inmemory_data_size(self) -> int | None:
        return self._source.total if self._source.unit == "B" else None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        read = partial(_read_rows, self._source, self._fields, self._rows)
        return [ReadTask(read, BlockMetadata(None, None, None, None), schema=READ_SCHEMA)]


def chunk_documents(batch: dict[str, np.ndarray], chunker: Chunker) -> pa.Table:
    """The chunk stage: each document row becomes its slots' rows (`Chunker.split`); a bad
    record's row passes as it is."""
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(batch["line"].tolist()):
        position, prep = int(batch["position"][i]), float(batch["prep_s"][i])
        if batch["problem"][i]:
            problem = problem_of(line, batch["problem"][i], batch["detail"][i])
            rows.append({**_problem_row(problem, position), "last": True, "prep_s": prep})
            continue
        meta = json.loads(batch["metadata"][i])
        doc = Document(batch["id"][i], batch["title"][i], batch["text"][i], meta, line)
        chunks = chunker.split(doc)
        rows.extend(
            {
                "line": line,
                "position": position,
                "problem": "",
                "doc": doc.id,
                "id": c.id,
                "text": c.text,
                "metadata": json.dumps(c.metadata),
                "last": j == len(chunks) - 1,
                "prep_s": prep / len(chunks),
            }
            for j, c in enumerate(chunks)
        )
    return _table(rows, time.perf_counter() - start, CHUNK_SCHEMA)


class EmbedBatches:
    """The embed stage, one actor of the pool: the model is loaded once, in the constructor
    (on the GPU Ray assigned, or the CPU), and encodes each batch's chunk rows as the local
    build encodes a block (`make_encoder`).

    `stored` holds the sorted 64-bit id hashes (`id_hash`) of the slots the memory held when
    this run began (empty on a fresh build): those rows are not embedded, so a rerun after a
    kill re-embeds nothing already written. The driver confirms every such row with the
    memory before skipping it, so a hash collision costs an embedding, never a slot.
    """

    def __init__(
        self,
        embedder: str,
        device: str | None,
        batch_size: int,
        stored: np.ndarray,
        threads: int | None,
    ) -> None:
        """`threads`: the CPU encoder's threads (None: one per core of its node)."""
        model = Embedder(embedder, device=device, threads=threads)
        self._dim = model.dim  # loads the model now, before the first batch
        self._encode = make_encoder(model, batch_size)
        self._stored = stored

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        n = len(batch["line"])
        chunks = np.flatnonzero(batch["problem"] == "")
        hashes = np.fromiter((id_hash(batch["id"][i]) for i in chunks), np.uint64, len(chunks))
        stored = np.zeros(n, dtype=bool)
        stored[chunks] = np.isin(hashes, self._stored)
        todo = chunks[~stored[chunks]]
        vectors = np.zeros((n, self._dim), dtype=np.float32)
        if len(todo):
            vectors[todo] = self._encode([batch["text"][i] for i in todo])
        embedded = np.zeros(n, dtype=bool)
        embedded[todo] = True
        seconds = time.perf_counter() - start
        return {
            **batch,
            "vector": vectors,
            "stored": stored,
            "embedded": embedded,
            "encode_s": np.full(n, seconds / n if n else 0.0),
        }
