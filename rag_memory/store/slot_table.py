"""The slot table: the memory's virtual address space, in SQLite (WAL).

One row per slot address. `addr` is an AUTOINCREMENT int64, so an address is never reused
and never shifts (FAISS positions shift after remove_ids; our addresses are the FAISS ids).
A delete is a tombstone (`deleted_version`), an upsert a tombstone plus a new address. Every
write transaction bumps the memory-wide `version`, so another reader can ask what changed.
Vectors of the growing shard live in their own table `vectors` (float32 little-endian BLOBs):
a committed row is the durable copy the in-RAM growing index is rebuilt from on open. Keeping
them out of `slots` keeps those rows small, so fetching the text of search hits reads a third
of the pages it would otherwise.

Each row carries a checksum (CRC-32, `row_checksum` / `vector_checksum`: of the address, id,
text and metadata; of the address and vector blob), verified whenever a row is read, so a
damaged cell is a CorruptFileError naming the file and the address, never a changed answer;
a table of at most integrity.VERIFY_AT_OPEN_BYTES also passes `PRAGMA integrity_check` at
open (indexes agree with their table), larger ones in `rag-memory verify`. Schema 1 tables
(before checksums) still open: their rows are unverified, and a writer adds the columns.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm.auto import tqdm

from ..dedupe import text_key
from ..errors import (
    CorruptFileError,
    IdAlreadyStoredError,
    LexicalIndexMissingError,
    RagMemoryError,
    ReadOnlyError,
    StorageError,
    UnknownIdError,
)
from ..fsutil import check_writable, storage_error, storage_errors, unwritable
from ..index.base import TableSnapshot
from ..integrity import hashed_at_open, unit_rows_problem
from ..types import Slot, SlotRow
from ..validation import is_int
from . import lexical
from .filters import limit_error
from .lexical import LexicalConfig
from .row_cache import RowCache

logger = logging.getLogger(__name__)

TABLE_FILE = "slots.sqlite"
SCHEMA_VERSION = 3
ROW_CHECKSUMS_SINCE = 2  # schema 1 tables have no checksum columns
# Schema 3 adds each slot's write time, expiry time and exact-dedupe key (rag_memory.dedupe);
# rows written before it have none (NULL: no known write time, never expire).
SLOT_TIMES_SINCE = 3
# The `shard` column: 0 while a slot's vector is in the growing shard (and its blob in
# `vectors`), a sealed shard's id once sealed, RETIRED_SHARD once a deleted slot's shard is
# gone (compacted away). Compare with these names, not by truthiness.
GROWING_SHARD = 0
RETIRED_SHARD = -1
_SQLITE_MAGIC = b"SQLite format 3\x00"
ROW_CACHE_BYTES = 32 << 20  # hot slots' rows kept in RAM for hydrating hits
# SQLite primary result codes (https://www.sqlite.org/rescode.html) that say the storage
# failed, not the data: (the message SQLite gives it, the errno it stands for). Python 3.10's
# sqlite3 exposes only the message; 3.11 adds `sqlite_errorcode`.
_STORAGE_RESULTS: dict[int, tuple[str, int | None]] = {
    5: ("database is locked", errno.EBUSY),  # SQLITE_BUSY
    8: ("attempt to write a readonly database", errno.EROFS),  # SQLITE_READONLY
    10: ("disk I/O error", errno.EIO),  # SQLITE_IOERR
    13: ("database or disk is full", errno.ENOSPC),  # SQLITE_FULL
    14: ("unable to open database file", None),  # SQLITE_CANTOPEN
}
_CORRUPT_RESULTS = {11: "database disk image is malformed", 26: "file is not a database"}
_CODE_OF_MESSAGE = {message: code for code, (message, _) in _STORAGE_RESULTS.items()} | {
    message: code for code, message in _CORRUPT_RESULTS.items()
}

# Partial indexes: the next expiry and the expired slots are one index probe, and a memory
# without ttls pays nothing; an exact-dedupe lookup is one probe per new text.
_TIME_INDEXES = """
CREATE INDEX slots_expiry ON slots(expires_at)
    WHERE deleted_version IS NULL AND expires_at IS NOT NULL;
CREATE INDEX slots_text_key ON slots(text_key) WHERE deleted_version IS NULL;
"""
_SCHEMA = (
    """
CREATE TABLE slots (
    addr INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    shard INTEGER NOT NULL,
    added_version INTEGER NOT NULL,
    deleted_version INTEGER,
    checksum INTEGER,
    written_at REAL,
    expires_at REAL,
    text_key INTEGER
);
CREATE UNIQUE INDEX slots_live_id ON slots(id) WHERE deleted_version IS NULL;
CREATE INDEX slots_added ON slots(added_version);
CREATE INDEX slots_deleted ON slots(deleted_version);
"""
    + _TIME_INDEXES
    + """
CREATE TABLE vectors (addr INTEGER PRIMARY KEY, vector BLOB NOT NULL, checksum INTEGER);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
)


# A row is hidden from reads once its expiry time has passed (`?` = the clock's now).
_UNEXPIRED = "(expires_at IS NULL OR expires_at > ?)"


# Slot rows are read by `addr IN (?, ...)` with exactly as many placeholders as addresses up to
# this many (a search's k), beyond it with the next power of two, padded with an address no
# row has: a few dozen statement shapes, all within sqlite3's statement cache (128).
_EXACT_WIDTH_MAX = 32
_MAX_WIDTH = 4096  # addresses per statement (SQLite allows 32,766 parameters)
_NO_ADDR = -1  # addresses are AUTOINCREMENT rowids, >= 1


def _statement_width(n: int) -> int:
    return n if n <= _EXACT_WIDTH_MAX else 1 << (n - 1).bit_length()


def row_checksum(
    addr: Any,
    slot_id: Any,
    text: Any,
    metadata: Any,
    written_at: Any = None,
    expires_at: Any = None,
) -> int:
    """CRC-32 of a slot row's immutable cells (any type a damaged cell may come back as);
    its times count where it has a write time (rows written before schema 3 have none)."""
    cells: tuple[Any, ...] = (addr, slot_id, text, metadata)
    if written_at is not None:
        cells += (written_at, expires_at)
    return zlib.crc32("\x00".join(map(str, cells)).encode("utf-8", "surrogatepass"))


def vector_checksum(addr: int, blob: Any) -> int:
    """CRC-32 of a growing vector's blob, seeded with its address."""
    data = blob if isinstance(blob, bytes) else str(blob).encode()
    return zlib.crc32(data, zlib.crc32(int(addr).to_bytes(8, "little", signed=True)))


def _in_list(values: Sequence[Any]) -> str:
    """One JSON parameter for `IN (SELECT value FROM json_each(?))`: no SQLite variable limit."""
    return json.dumps(list(values))


class SlotTable:
    """SQLite-backed slot records. Writes come from one thread at a time (the caller's lock);
    reads may come from any thread, each on its own connection."""

    def __init__(
        self, path: Path, dim: int, read_only: bool, lexical: LexicalConfig | None = None
    ) -> None:
        """`lexical`: the lexical index the manifest asks for (None: none). A writer builds
        it when the table lacks it (a memory written before lexical indexes, or a changed
        tokenizer); a reader serves lexical searches only once it is there."""
        self.path = path
        self.dim = dim
        self.read_only = read_only
        self.lexical = lexical
        self._lexical_ready = False
        self._local = threading.local()
        self._serials = itertools.count()  # numbers this table's reader connections
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._schema = SCHEMA_VERSION  # of the table as last connected to
        self._rows = RowCache(ROW_CACHE_BYTES)
        if not path.is_file():
            raise CorruptFileError(path, "missing")
        self._writer = None
        try:
            self._writer = None if read_only else self._connect()
            if self._writer is not None and self._schema < ROW_CHECKSUMS_SINCE:
                self._add_checksum_columns()
            if self._writer is not None and self._schema < SLOT_TIMES_SINCE:
                self._add_time_columns()
            if self._writer is not None and lexical is not None:
                self.build_lexical(lexical, only_if_missing=True)
            if hashed_at_open(path):
                self.check_integrity()
        except BaseException:
            self.close()
            raise

    # -- connections -------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, dim: int, lexical: LexicalConfig | None = None) -> SlotTable:
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                # fetched: an I/O error switching to WAL comes with the row, not at execute
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()
                if mode != [("wal",)]:
                    raise StorageError(path, f"cannot switch to WAL mode (it stays {mode})")
                conn.executescript(
                    "BEGIN;"
                    + _SCHEMA
                    + f"INSERT INTO meta VALUES ('schema_version', {SCHEMA_VERSION});"
                    f"INSERT INTO meta VALUES ('dim', {int(dim)});"
                    "INSERT INTO meta VALUES ('version', 0);"
                    "INSERT INTO meta VALUES ('live', 0);"
                    "INSERT INTO meta VALUES ('generation', 0);"
                    "COMMIT;"
                )
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _failure(path, exc, "creating", f"cannot be created ({exc})") from exc
        return cls(path, dim, read_only=False, lexical=lexical)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise CorruptFileError(self.path, "missing")
        with storage_errors(self.path, "reading"), open(self.path, "rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                raise CorruptFileError(self.path, "not an SQLite database (bad header)")
        if self.read_only:
            uri = f"file:{quote(str(self.path))}?{_read_only_mode(self.path)}"
        else:
            check_writable(self.path.parent, *_database_files(self.path))
            uri = f"file:{quote(str(self.path))}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            problem = f"unreadable SQLite database ({exc})"
            raise _failure(self.path, exc, "opening", problem) from exc
        try:
            self._check_meta(conn)
        except BaseException:
            conn.close()
            raise
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _check_meta(self, conn: sqlite3.Connection) -> None:
        """Set up a new connection and check the table is this memory's, of a known schema."""
        try:
            # FULL: a commit is on disk before add() returns (survives power loss, not only
            # kill -9).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            problem = f"unreadable SQLite database ({exc})"
            raise _failure(self.path, exc, "opening", problem) from exc
        if meta.get("schema_version") not in range(1, SCHEMA_VERSION + 1):
            raise CorruptFileError(
                self.path, f"schema_version {meta.get('schema_version')} is not {SCHEMA_VERSION}"
            )
        self._schema = meta["schema_version"]
        if meta.get("dim") != self.dim:
            raise CorruptFileError(
                self.path, f"dim {meta.get('dim')} does not match the manifest's {self.dim}"
            )
        missing = [k for k in ("version", "live", "generation") if not is_int(meta.get(k))]
        if missing:
            raise CorruptFileError(self.path, f"meta table lacks integer {missing}")

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            raise ReadOnlyError(f"{self.path} is open read-only")
        return self._writer

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._local.serial = next(self._serials)
        return conn

    def close(self) -> None:
        """Close every connection; the writer first checkpoints the WAL into the database
        file and truncates it, so a closed memory is whole in slots.sqlite alone (what a
        reader on read-only media, which cannot use the WAL, needs: `_read_only_mode`)."""
        if self._writer is not None:
            try:
                busy = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error as exc:  # nothing is lost: the WAL stays and is replayed
                logger.warning("%s: checkpoint on close failed (%s); the WAL stays", self.path, exc)
            else:
                if busy:
                    logger.info("%s: a reader holds the WAL; it stays until it closes", self.path)
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the writer connection: BEGIN IMMEDIATE, the caller's
        statements, COMMIT (see `_run_transaction`)."""
        return self._run_transaction(self._writer_connection(), "BEGIN IMMEDIATE", "writing")

    def _read_snapshot(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction on this thread's connection: every statement inside sees one
        committed state (WAL snapshot isolation). Nested, it joins the open one."""
        conn = self._reader()
        if conn.in_transaction:
            return nullcontext(conn)
        return self._run_transaction(conn, "BEGIN", "reading")

    @contextmanager
    def _run_transaction(
        self, conn: sqlite3.Connection, begin: str, action: str
    ) -> Iterator[sqlite3.Connection]:
        """`begin`, the caller's statements, COMMIT. On any error it is rolled back unless
        SQLite has already done so (it may after SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY:
        "Response To Errors Within A Transaction", https://www.sqlite.org/lang_transaction.html),
        so the error raised is the one that happened: an SQLite storage failure as a
        StorageError with its cause, any other SQLite error as a CorruptFileError."""
        try:
            conn.execute(begin)
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as failed:
                    logger.warning("%s: rollback after %r failed: %s", self.path, exc, failed)
            if isinstance(exc, sqlite3.Error):
                raise _failure(self.path, exc, action, f"{action} failed ({exc})") from exc
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _failure(self.path, exc, "reading", f"read failed ({exc})") from exc

    def _add_checksum_columns(self) -> None:
        """Schema 1 -> 2: checksum columns (NULL, unverified, for the rows already stored)."""
        with self._transaction() as conn:
            conn.execute("ALTER TABLE slots ADD COLUMN checksum INTEGER")
            conn.execute("ALTER TABLE vectors ADD COLUMN checksum INTEGER")
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (ROW_CHECKSUMS_SINCE,)
            )
        self._schema = ROW_CHECKSUMS_SINCE

    def _add_time_columns(self) -> None:
        """Schema 2 -> 3: write time, expiry time and dedupe key columns. Rows already stored
        get no times (unknown write time, no expiry) and their dedupe keys, in one
        transaction."""
        with self._transaction() as conn:
            for column in ("written_at REAL", "expires_at REAL", "text_key INTEGER"):
                conn.execute(f"ALTER TABLE slots ADD COLUMN {column}")
            for statement in _TIME_INDEXES.split(";"):
                if statement.strip():
                    conn.execute(statement)
            live = conn.execute(
                "SELECT addr, text FROM slots WHERE deleted_version IS NULL"
            ).fetchall()
            conn.executemany(
                "UPDATE slots SET text_key = ? WHERE addr = ?",
                (
                    (text_key(text), addr)
                    for addr, text in tqdm(live, desc="dedupe keys", disable=len(live) < 100_000)
                ),
            )
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SLOT_TIMES_SINCE,)
            )
        self._schema = SLOT_TIMES_SINCE

    def _checksum_column(self, column: str) -> str:
        """`column` where the table has checksums, else NULL (a schema 1 table)."""
        return self._column(column, ROW_CHECKSUMS_SINCE)

    def _column(self, column: str, since: int) -> str:
        """`column` where the table's schema has it (from schema `since` on), else NULL."""
        self._reader()  # connected, so the schema is known
        return column if self._schema >= since else "NULL"

    def _times_columns(self) -> str:
        """The write and expiry time columns for a SELECT (NULLs before schema 3)."""
        return ", ".join(self._column(c, SLOT_TIMES_SINCE) for c in ("written_at", "expires_at"))

    def _verify_rows(self, rows: Sequence[tuple]) -> None:
        """Rows (id, text, metadata, addr, checksum, written_at, expires_at, ...):
        CorruptFileError for the first whose checksum does not match its cells (NULL:
        written before checksums)."""
        for slot_id, text, metadata, addr, checksum, written, expires, *_ in rows:
            if checksum is not None and checksum != row_checksum(
                addr, slot_id, text, metadata, written, expires
            ):
                raise CorruptFileError(
                    self.path, f"slot address {addr}: the row does not match its checksum"
                )

    def verify_rows(self, batch: int = 10_000) -> int:
        """Check every row's checksum, deleted rows included (the verify step; reads the
        whole table in address order, `batch` rows at a time). Returns the rows checked."""
        checked, last = 0, 0
        while True:
            rows = self._query(
                f"SELECT id, text, metadata, addr, {self._checksum_column('checksum')}, "
                f"{self._times_columns()} FROM slots WHERE addr > ? ORDER BY addr LIMIT ?",
                (last, batch),
            )
            if not rows:
                return checked
            self._verify_rows(rows)
            checked, last = checked + len(rows), rows[-1][3]

    def check_integrity(self) -> None:
        """PRAGMA integrity_check (b-trees, and every index agrees with its table): a
        CorruptFileError listing what SQLite found."""
        problems = [r[0] for r in self._query("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            raise CorruptFileError(self.path, "integrity check failed: " + "; ".join(problems))

    # -- the lexical index ---------------------------------------------------------------
    def build_lexical(self, config: LexicalConfig, only_if_missing: bool = False) -> bool:
        """(Re)build the lexical index as `config` says, in one transaction; with
        `only_if_missing`, only when the table does not already hold exactly that index.
        Returns whether it built."""
        with self._transaction() as conn:
            if only_if_missing and lexical.is_built(conn, config):
                built = False
            else:
                live = conn.execute("SELECT value FROM meta WHERE key = 'live'").fetchone()[0]
                lexical.build(conn, config, live)
                built = True
        self.lexical, self._lexical_ready = config, True
        return built

    def has_lexical(self) -> bool:
        """Whether lexical searches can be served: the manifest asks for an index and the
        table holds it (a reader re-checks until the writer has built it)."""
        if not self._lexical_ready and self.lexical is not None:
            config = self.lexical
            try:
                self._lexical_ready = lexical.is_built(self._reader(), config)
            except sqlite3.DatabaseError as exc:
                raise _failure(self.path, exc, "reading", f"read failed ({exc})") from exc
        return self._lexical_ready

    def lexical_search(
        self, text: str, k: int, where: tuple[str, Sequence[Any]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, addresses) of the top-k live slots for `text` by BM25 (see
        `lexical.search`); LexicalIndexMissingError when there is no index to search."""
        if not self.has_lexical() or self.lexical is None:
            raise LexicalIndexMissingError(
                f"{self.path.parent} has no lexical index, so lexical and hybrid search are "
                f"not available (dense search is); build it with `rag-memory reindex "
                f"{self.path.parent}` (or open the memory once for writing)"
            )
        try:
            return lexical.search(self._reader(), self.lexical, text, k, where)
        except sqlite3.DatabaseError as exc:  # a filter past SQLite's limits is not damage
            too_large = limit_error(exc)
            if too_large is None:
                raise _failure(self.path, exc, "reading", f"read failed ({exc})") from exc
            raise too_large from None

    def optimize_lexical(self) -> None:
        """Merge the lexical index's segments (drops what deletes left); part of compaction."""
        if self._lexical_ready:
            with self._transaction() as conn:
                lexical.optimize(conn)

    def check_lexical(self) -> None:
        """The lexical index agrees with the live slots, or a CorruptFileError: row for row
        always; word for word too (FTS5 'integrity-check', a command SQLite runs only on a
        connection that may write) where this process may write the table, in a transaction
        rolled back at once. Nothing to check without an index."""
        if not self.has_lexical():
            return
        try:
            ghosts, missing = lexical.unmatched_rows(self._reader())
            if ghosts or missing:
                raise CorruptFileError(
                    self.path,
                    f"the lexical index does not match the slots: {ghosts} indexed rows are "
                    f"not live slots, {missing} live slots are not indexed",
                )
            if os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK):
                conn = sqlite3.connect(self.path, isolation_level=None)
                try:
                    conn.execute("BEGIN")
                    lexical.check_words(conn)
                finally:
                    conn.close()  # closing rolls the transaction back
        except sqlite3.DatabaseError as exc:
            if _result_code(exc) in _STORAGE_RESULTS:
                raise _failure(self.path, exc, "reading", str(exc)) from exc
            raise CorruptFileError(
                self.path, f"the lexical index does not match the slots ({exc})"
            ) from exc

    # -- counters ----------------------------------------------------------------------
    def version(self) -> int:
        return self._query("SELECT value FROM meta WHERE key = 'version'")[0][0]

    def live_count(self) -> int:
        """Live slots, expired ones included (they are live until compaction retires them)."""
        return self._query("SELECT value FROM meta WHERE key = 'live'")[0][0]

    # -- expiry ------------------------------------------------------------------------
    def _unexpired(self) -> str:
        """The SQL test that a row has not expired at the statement's `?` (bound to now);
        rows written before schema 3 never expire."""
        self._reader()  # connected, so the schema is known
        return _UNEXPIRED if self._schema >= SLOT_TIMES_SINCE else "(? IS NOT NULL)"

    def unexpired_where(
        self, where: tuple[str, Sequence[Any]] | None, now: float
    ) -> tuple[str, list[Any]]:
        """A compiled `where` (or none) AND-ed with "not expired at `now`"."""
        if where is None:
            return self._unexpired(), [now]
        return f"({where[0]}) AND {self._unexpired()}", [*where[1], now]

    def next_expiry(self, after: float = -math.inf) -> float:
        """The earliest expiry time later than `after` of a live slot (inf: none); one index
        probe."""
        if self._column("expires_at", SLOT_TIMES_SINCE) == "NULL":
            return math.inf
        (value,) = self._query(
            "SELECT min(expires_at) FROM slots WHERE deleted_version IS NULL "
            "AND expires_at IS NOT NULL AND expires_at > ?",
            (after,),
        )[0]
        return math.inf if value is None else float(value)

    def expired_addrs(self, now: float) -> np.ndarray:
        """Addresses of the live slots expired at `now` (hidden from reads)."""
        if self.next_expiry() > now:
            return np.empty(0, np.int64)
        rows = self._query(
            "SELECT addr FROM slots WHERE deleted_version IS NULL AND expires_at <= ?", (now,)
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    # -- dedupe ------------------------------------------------------------------------
    def exact_twins(
        self, keys: Sequence[int], where: tuple[str, Sequence[Any]] | None, now: float
    ) -> list[tuple[int, str, str, int]]:
        """(addr, id, text, text_key) of the visible slots whose dedupe key is one of `keys`
        and which pass `where` (the write's scope)."""
        scope, params = self.unexpired_where(where, now)
        return self._query(
            "SELECT addr, id, text, text_key FROM slots WHERE deleted_version IS NULL AND "
            f"text_key IN (SELECT value FROM json_each(?)) AND {scope}",
            (_in_list(list(keys)), *params),
        )

    # -- writes ------------------------------------------------------------------------
    def write(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadata: Sequence[str],
        vectors: np.ndarray,
        replace: bool | Collection[str],
        written_at: Sequence[float],
        expires_at: Sequence[float | None],
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Insert slots into the growing shard in one transaction, with their write and
        expiry times (`now`: the clock expiry is judged by).

        With replace=False an id that is already live raises IdAlreadyStoredError; with
        replace=True (or a collection holding that id) its old address is tombstoned. A slot
        that has expired is hidden, so its id is free: it is tombstoned either way. Returns
        (new addresses, replaced addresses).
        """
        with self._transaction() as conn:
            existing = conn.execute(
                "SELECT addr, id, expires_at <= ? FROM slots WHERE deleted_version IS NULL "
                "AND id IN (SELECT value FROM json_each(?))",
                (now, _in_list(ids)),
            ).fetchall()
            replaceable = (lambda _: replace) if isinstance(replace, bool) else replace.__contains__
            taken = sorted(i for _, i, expired in existing if not expired and not replaceable(i))
            if taken:
                raise IdAlreadyStoredError(
                    f"ids already stored (use upsert to replace): {taken[:5]}"
                    + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
                )
            version = self._bump_version(conn, len(ids) - len(existing))
            replaced = np.array([a for a, _, _ in existing], dtype=np.int64)
            if len(replaced):
                self._retire(conn, replaced, version)
            # AUTOINCREMENT hands out sqlite_sequence + 1 onwards; taking them explicitly
            # lets each row's checksum cover its address
            first = (
                conn.execute(
                    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'slots'), 0)"
                ).fetchone()[0]
                + 1
            )
            conn.executemany(
                "INSERT INTO slots (addr, id, text, metadata, shard, added_version, checksum, "
                "written_at, expires_at, text_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (a, i, t, m, GROWING_SHARD, version, row_checksum(a, i, t, m, w, e), w, e)
                    + (text_key(t),)
                    for a, i, t, m, w, e in zip(
                        range(first, first + len(ids)),
                        ids,
                        texts,
                        metadata,
                        written_at,
                        expires_at,
                        strict=True,
                    )
                ],
            )
            addrs = np.arange(first, first + len(ids), dtype=np.int64)
            vecs = np.ascontiguousarray(vectors, dtype="<f4")
            conn.executemany(
                "INSERT INTO vectors (addr, vector, checksum) VALUES (?, ?, ?)",
                [
                    (a, blob, vector_checksum(a, blob))
                    for a, blob in zip(addrs.tolist(), (row.tobytes() for row in vecs), strict=True)
                ],
            )
            if self._lexical_ready:
                lexical.index_rows(conn, first)
        self._rows.discard(replaced.tolist())
        return addrs, replaced

    def tombstone(self, ids: Sequence[str], now: float) -> np.ndarray:
        """Mark the live slots of `ids` deleted; UnknownIdError (and no change) if any is
        absent or expired (hidden, as from every read)."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT addr, id FROM slots WHERE deleted_version IS NULL AND id IN "
                f"(SELECT value FROM json_each(?)) AND {_UNEXPIRED}",
                (_in_list(ids), now),
            ).fetchall()
            missing = set(ids) - {i for _, i in rows}
            if missing:
                raise UnknownIdError(f"unknown ids (nothing was deleted): {sorted(missing)[:5]}")
            return self._tombstone_rows(conn, [a for a, _ in rows])

    def retire_expired(self, now: float) -> np.ndarray:
        """Tombstone every slot expired at `now` (compaction's first step); their addresses."""
        if self.next_expiry() > now:
            return np.empty(0, np.int64)
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT addr FROM slots WHERE deleted_version IS NULL AND expires_at <= ?", (now,)
            ).fetchall()
            return self._tombstone_rows(conn, [a for (a,) in rows])

    def _tombstone_rows(self, conn: sqlite3.Connection, addr_list: list[int]) -> np.ndarray:
        version = self._bump_version(conn, -len(addr_list))
        addrs = np.array(addr_list, dtype=np.int64)
        self._retire(conn, addrs, version)
        self._rows.discard(addr_list)
        return addrs

    def _retire(self, conn: sqlite3.Connection, addrs: np.ndarray, version: int) -> None:
        """Tombstone `addrs`, drop their vectors and their words (the row stays: addresses are
        never reused)."""
        in_list = _in_list(addrs.tolist())
        if self._lexical_ready:
            lexical.unindex_rows(conn, in_list)
        conn.execute(
            "UPDATE slots SET deleted_version = ? WHERE addr IN (SELECT value FROM json_each(?))",
            (version, in_list),
        )
        conn.execute(
            "DELETE FROM vectors WHERE addr IN (SELECT value FROM json_each(?))", (in_list,)
        )

    @staticmethod
    def _bump_version(conn: sqlite3.Connection, live_delta: int) -> int:
        conn.execute("UPDATE meta SET value = value + ? WHERE key = 'live'", (live_delta,))
        return conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'version' RETURNING value"
        ).fetchone()[0]

    # -- reads -------------------------------------------------------------------------
    def get(self, ids: Sequence[str], now: float) -> list[Slot]:
        """The live slots of `ids`, in the order asked; UnknownIdError if any is absent (or
        expired at `now`)."""
        rows = self._query(
            f"SELECT id, text, metadata, addr, {self._checksum_column('checksum')}, "
            f"{self._times_columns()} FROM slots WHERE deleted_version IS NULL AND id IN "
            f"(SELECT value FROM json_each(?)) AND {self._unexpired()}",
            (_in_list(ids), now),
        )
        self._verify_rows(rows)
        by_id = {r[0]: Slot(r[0], r[1], json.loads(r[2]), r[3], r[5], r[6]) for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UnknownIdError(
                f"unknown ids: {missing[:5]}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )
        return [by_id[i] for i in ids]

    def contains(self, ids: Sequence[str], now: float) -> list[bool]:
        """Whether each of `ids` is a live slot not expired at `now` (one query)."""
        rows = self._query(
            "SELECT id FROM slots WHERE deleted_version IS NULL AND id IN "
            f"(SELECT value FROM json_each(?)) AND {self._unexpired()}",
            (_in_list(ids), now),
        )
        live = {r[0] for r in rows}
        return [i in live for i in ids]

    def forget_cached_rows(self) -> None:
        """Drop the rows cached in RAM (another process may have deleted them)."""
        self._rows.clear()

    def fetch(self, addrs: Sequence[int]) -> Mapping[int, SlotRow]:
        """addr -> (id, text, metadata JSON, addr, written_at, expires_at) for the live slots among
        `addrs` (read-only; expired ones included: the read path hides those).

        The hot path of every search: hot rows come from the RowCache; the others are read
        by one `addr IN (?, ...)` statement of a few fixed widths (`_statement_width`), so
        sqlite3's statement cache serves it prepared instead of SQLite parsing a new
        statement per search (measured: 64 vs 102 us for 10 rows, 4.7 vs 5.5 ms for 1,024)."""
        return self._rows.lookup(addrs, self._load_rows)

    def _load_rows(self, addrs: list[int]) -> list[SlotRow]:
        """The live rows of `addrs`, verified. Rows are never removed (a deleted slot keeps its
        row), so an address the index holds without a row means the table is damaged."""
        if not addrs:
            return []
        unique = list(dict.fromkeys(map(int, addrs)))  # a hit may repeat across queries
        rows: list[tuple] = []
        for start in range(0, len(unique), _MAX_WIDTH):  # SQLite caps a statement's parameters
            params = unique[start : start + _MAX_WIDTH]
            width = _statement_width(len(params))
            params += [_NO_ADDR] * (width - len(params))
            rows += self._query(
                f"SELECT id, text, metadata, addr, {self._checksum_column('checksum')}, "
                f"{self._times_columns()}, deleted_version FROM slots "
                f"WHERE addr IN ({','.join('?' * width)})",
                params,
            )
        self._verify_rows(rows)
        if len(rows) != len(unique):
            missing = sorted(set(unique) - {r[3] for r in rows})
            raise CorruptFileError(self.path, f"slot address {missing[:1]} has no row")
        return [(r[0], r[1], r[2], r[3], r[5], r[6]) for r in rows if r[7] is None]

    def matching_addrs(
        self, where_sql: str, params: Sequence[Any], among: Sequence[int] | None = None
    ) -> np.ndarray:
        """Addresses of live slots whose metadata satisfies a compiled `where` predicate.

        `among` restricts the answer to those addresses (the query cache asks which slots of
        a write pass a cached entry's filter, without re-implementing the grammar).
        """
        if among is not None:
            where_sql = f"addr IN (SELECT value FROM json_each(?)) AND ({where_sql})"
            params = [_in_list(among), *params]
        rows = self._filtered(
            f"SELECT addr FROM slots WHERE deleted_version IS NULL AND {where_sql}", params
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def matching_ids(self, where: tuple[str, Sequence[Any]] | None, now: float) -> list[str]:
        """Ids of the visible slots (live, not expired at `now`) that pass a compiled `where`
        (every one when None), in address order."""
        scope, params = self.unexpired_where(where, now)
        rows = self._filtered(
            f"SELECT id FROM slots WHERE deleted_version IS NULL AND {scope} ORDER BY addr", params
        )
        return [r[0] for r in rows]

    def _filtered(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """Rows of a statement that holds a compiled filter: one past SQLite's limits on this
        build is an InvalidFilterError, not damage."""
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            too_large = limit_error(exc)
            if too_large is None:
                raise _failure(self.path, exc, "reading", f"read failed ({exc})") from exc
            raise too_large from None

    def growing_vectors(self, since_version: int = -1) -> tuple[np.ndarray, np.ndarray, int]:
        """(addrs, vectors, version) of live growing-shard slots added after `since_version`.

        Every blob is checked to hold exactly `dim` float32 values making a finite unit
        vector (integrity.STORED_NORM_TOLERANCE); a bad one is a CorruptFileError naming the
        file and the address.
        """
        with self._read_snapshot() as conn:  # one snapshot for the rows and the version
            version = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0]
            rows = conn.execute(
                f"SELECT s.addr, v.vector, {self._checksum_column('v.checksum')} "
                "FROM slots s LEFT JOIN vectors v ON v.addr = s.addr "
                "WHERE s.deleted_version IS NULL AND s.shard = ? AND s.added_version > ? "
                "ORDER BY s.addr",
                (GROWING_SHARD, since_version),
            ).fetchall()
        nbytes = 4 * self.dim
        for addr, blob, _ in rows:
            if not isinstance(blob, bytes) or len(blob) != nbytes:
                raise CorruptFileError(
                    self.path,
                    f"slot address {addr}: vector blob holds "
                    f"{len(blob) if isinstance(blob, bytes) else blob!r} bytes,"
                    f" expected {nbytes}",
                )
        addrs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(-1, self.dim)
        problem = unit_rows_problem(vectors)
        if problem is not None:
            row, what = problem
            raise CorruptFileError(self.path, f"slot address {addrs[row]}: vector {what}")
        for addr, blob, checksum in rows:
            if checksum is not None and checksum != vector_checksum(addr, blob):
                raise CorruptFileError(
                    self.path, f"slot address {addr}: vector blob does not match its checksum"
                )
        return addrs, vectors.astype(np.float32, copy=False), version

    def commit_mark(self) -> tuple[int, int]:
        """(this thread's connection, its `PRAGMA data_version`): the version changes whenever
        another connection commits (sqlite.org/pragma.html#pragma_data_version), so equal
        marks from one thread mean nothing was committed in between; a reconnected thread's
        mark differs by its connection's number. Half the cost of `counters()` (5 vs 11 us):
        a read-only replica asks before every search whether the writer committed."""
        version = self._query("PRAGMA data_version")[0][0]  # connects this thread if new
        return self._local.serial, version

    def counters(self) -> tuple[int, int]:
        """(version, generation), read in one statement: a reader's cheap "anything new?"."""
        meta = dict(
            self._query("SELECT key, value FROM meta WHERE key IN ('version', 'generation')")
        )
        return meta["version"], meta["generation"]

    def snapshot(self, since_version: int = -1) -> TableSnapshot:
        """What the index needs of the table at one instant, read in one transaction (a
        reader beside a writer must never pair rows of one commit with counts of another):
        the counters, the live growing vectors added after `since_version`, and the
        addresses deleted after it. With `since_version` < 0 (a full load) the deleted
        addresses are those whose vectors may still sit in a sealed shard (not yet
        RETIRED_SHARD); the index finds their shards by address, never by the `shard`
        column, which lags the manifest after a crash between the two commits."""
        with self._read_snapshot() as conn:
            addrs, vectors, version = self.growing_vectors(since_version)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if since_version < 0:
                deleted = conn.execute(
                    "SELECT addr FROM slots WHERE deleted_version IS NOT NULL "
                    f"AND shard != {RETIRED_SHARD}"
                ).fetchall()
            else:
                deleted = conn.execute(
                    "SELECT addr FROM slots WHERE deleted_version > ?", (since_version,)
                ).fetchall()
        return TableSnapshot(
            version=version,
            generation=meta["generation"],
            live=meta["live"],
            growing_addrs=addrs,
            growing_vectors=vectors,
            deleted=np.fromiter((r[0] for r in deleted), dtype=np.int64, count=len(deleted)),
        )

    def apply_sealing(
        self, generation: int, shards: dict[int, np.ndarray], live_shards: Sequence[int]
    ) -> None:
        """Record in one transaction that `shards` (id -> addresses) now hold those slots:
        set their `shard`, drop their growing vectors, retire (RETIRED_SHARD) tombstones of shards
        that no longer exist, and stamp the manifest `generation`. Idempotent, so replaying it
        after a crash (the index's open-time repair does) is safe."""
        with self._transaction() as conn:
            for shard_id, addrs in shards.items():
                in_list = _in_list(addrs.tolist())
                conn.execute(
                    "UPDATE slots SET shard = ? WHERE addr IN (SELECT value FROM json_each(?))",
                    (shard_id, in_list),
                )
                conn.execute(
                    "DELETE FROM vectors WHERE addr IN (SELECT value FROM json_each(?))", (in_list,)
                )
            conn.execute(
                f"UPDATE slots SET shard = {RETIRED_SHARD} WHERE shard > {GROWING_SHARD} "
                "AND shard NOT IN "
                "(SELECT value FROM json_each(?))",
                (_in_list(list(live_shards)),),
            )
            # Deleted while growing and in no shard sealed since: no file holds their vectors.
            conn.execute(
                f"UPDATE slots SET shard = {RETIRED_SHARD} WHERE shard = {GROWING_SHARD} "
                "AND deleted_version IS NOT NULL"
            )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (generation,))


def _database_files(path: Path) -> list[Path]:
    """The database file and its WAL-mode companions, the log and the shared-memory index."""
    return [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]


def _read_only_mode(path: Path) -> str:
    """URI parameters for a read-only connection to `path`, by what its directory allows.

    A WAL reader needs the -shm index (https://www.sqlite.org/wal.html, "Read-Only
    Databases"): SQLite creates it where the directory is writable, and since 3.22 reads a
    -wal/-shm pair that it cannot write. Where neither holds (a read-only file system, a
    directory of another user) the database is opened `immutable=1`: no locks, no WAL, which
    is whole only if no WAL holds commits, as the writer ensures by checkpointing and
    truncating the WAL when it closes. A non-empty WAL without its -shm (a writer that did not
    close) cannot be read there: that is a clear error, not a stale answer. An immutable
    reader does not see writes made after it opened (none can come from this user)."""
    _, wal, shm = _database_files(path)
    if os.access(path.parent, os.W_OK) or (wal.is_file() and shm.is_file()):
        return "mode=ro"
    if wal.is_file() and wal.stat().st_size:
        raise unwritable(
            path.parent,
            f"cannot read {path.name} here: {wal.name} holds commits not yet in the database "
            f"file, and SQLite needs {shm.name} beside it, which this process cannot create "
            "(a writer did not close); open the memory once with write access, or a copy of "
            "it in a writable place, to checkpoint it",
        )
    return "mode=ro&immutable=1"


def _result_code(exc: sqlite3.Error) -> int | None:
    """The SQLite primary result code of `exc` (from its message on Python 3.10)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return _CODE_OF_MESSAGE.get(str(exc)) if code is None else int(code) & 0xFF


def _failure(path: Path, exc: sqlite3.Error, action: str, problem: str) -> RagMemoryError:
    """What an SQLite error while `action` (e.g. "writing") `path` means to a caller: a
    StorageError (the errno its result code stands for) when the storage failed, else a
    CorruptFileError with `problem`. The caller chains `exc`."""
    code = _result_code(exc)
    if code not in _STORAGE_RESULTS:
        return CorruptFileError(path, problem)
    return storage_error(path, action, str(exc), _STORAGE_RESULTS[code][1])
