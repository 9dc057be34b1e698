"""The lexical index: BM25 over the slots' words, an SQLite FTS5 table inside slots.sqlite.

Why FTS5 and not a separate BM25 library: the slot table already lives in SQLite, and an
FTS5 table written in the *same transaction* as a slot stays coherent with every write and
crash for free (kill -9 can never leave a slot without its words or words without a slot).
FTS5's `bm25()` is Okapi BM25 with k1 = 1.2, b = 0.75 (https://www.sqlite.org/fts5.html,
"The bm25() function"); txtai's BEIR comparison measured it at 0.666 nDCG@10 on SciFact
with the same tokenizer as Elasticsearch's 0.661.

Layout (the "external content" form of FTS5, section 4.4.3 of the FTS5 docs): the index
stores no copy of the text. Its content is the view `slots_lexical` over the live rows of
`slots`: a title column (the string under `LexicalConfig.title_key` in the slot's metadata,
which `rag-memory build` fills from a corpus's title field) and a body column (the slot text,
less the "title " prefix the build prepends, so no word is counted twice). Rows are
inserted after a slot's row and removed ('delete' command, which needs the values indexed)
before its tombstone, both in the slot table's write transaction.

Queries: user text is never passed to MATCH as syntax. Its words (`\\w+` runs) are each
quoted as an FTS5 string and OR-joined (FTS5 ANDs bare terms, which would make a long
question match nothing), so `NEAR(" AND OR *` searches for the words near, and, or.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import InvalidInputError
from ..validation import config_from_dict, is_number

logger = logging.getLogger(__name__)

FTS_TABLE = "slots_fts"
CONTENT_VIEW = "slots_lexical"
DEFAULT_TOKENIZER = "porter unicode61 remove_diacritics 2"
# A query's words beyond this many (after removing repeats) are ignored, with a log line: a
# pasted page as a query would otherwise make one MATCH scan every posting list it names.
MAX_QUERY_TERMS = 256
REBUILD_BATCH = 20_000  # rows per INSERT while (re)building, one progress step each
_TOKENIZER_WORDS = re.compile(r"^[A-Za-z0-9_]+( [A-Za-z0-9_]+)*$")
_KEY = re.compile(r"^[A-Za-z0-9_]+$")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class LexicalConfig:
    """How a memory's lexical (BM25) index tokenizes and weighs text; recorded in the
    manifest at create (`Memory.create(lexical=...)`).

    Attributes:
        tokenizer: the FTS5 `tokenize` option. The default is Unicode-aware word splitting
            with diacritics folded and Porter stemming on top, the setting txtai and
            Anserini report BEIR figures with.
        title_key: metadata key whose string value fills the title column (None: no title
            column content; every word is in the body).
        title_weight, body_weight: per-column weights of `bm25()`. FTS5 sums a word's
            weighted counts over the columns before BM25's saturation (fts5_aux.c), as BM25F
            does, so 1 and 1 score like one flat "title text" field. A title word counting
            twice was measured best-but-one on SciFact train (lexical nDCG@10 0.7038 vs
            0.7009 at 1, 0.6979 at 0.5, 0.7065 at 3; hybrid 0.7375 vs 0.7360, 0.7337,
            0.7383): 2 rather than the top point, whose lead is within noise.
    """

    tokenizer: str = DEFAULT_TOKENIZER
    title_key: str | None = "title"
    title_weight: float = 2.0
    body_weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.tokenizer, str) or not _TOKENIZER_WORDS.match(self.tokenizer):
            raise InvalidInputError(
                "LexicalConfig.tokenizer must be FTS5 tokenizer words (letters, digits, _) "
                f"separated by single spaces, e.g. {DEFAULT_TOKENIZER!r}; got {self.tokenizer!r}"
            )
        key = self.title_key
        if key is not None and (not isinstance(key, str) or not _KEY.match(key)):
            raise InvalidInputError(
                f"LexicalConfig.title_key must be None or a metadata key of letters, digits "
                f"and _, got {key!r}"
            )
        for name in ("title_weight", "body_weight"):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"LexicalConfig.{name} must be a number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        _check_tokenizer(self.tokenizer)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LexicalConfig:
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_lexical(lexical: LexicalConfig | dict | bool | None) -> LexicalConfig | None:
    """`Memory.create(lexical=...)`: True = the defaults, False/None = no lexical index."""
    if lexical is True:
        return LexicalConfig()
    if lexical is False or lexical is None:
        return None
    if isinstance(lexical, dict):
        return LexicalConfig.from_dict(lexical)
    if isinstance(lexical, LexicalConfig):
        return lexical
    raise InvalidInputError(
        f"lexical must be a LexicalConfig, a dict, a bool or None, got {type(lexical).__name__}"
    )


def _check_tokenizer(tokenizer: str) -> None:
    """SQLite itself says whether it knows the tokenizer (a throwaway in-memory table)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{tokenizer}')")
    except sqlite3.Error as exc:
        raise InvalidInputError(
            f"LexicalConfig.tokenizer {tokenizer!r} is refused by SQLite FTS5 ({exc})"
        ) from None
    finally:
        conn.close()


def _schema(config: LexicalConfig) -> tuple[str, str]:
    """(the content view's SQL, the FTS5 table's SQL) for `config`, as sqlite_master keeps
    them: comparing them with the stored ones says whether the index was built this way."""
    title = (
        "''"
        if config.title_key is None
        else f"CASE WHEN json_type(metadata, '$.\"{config.title_key}\"') = 'text' "
        f"THEN json_extract(metadata, '$.\"{config.title_key}\"') ELSE '' END"
    )
    view = (
        f"CREATE VIEW {CONTENT_VIEW} AS SELECT addr, title, "
        "CASE WHEN title <> '' AND substr(text, 1, length(title) + 1) = title || ' ' "
        "THEN substr(text, length(title) + 2) ELSE text END AS body "
        f"FROM (SELECT addr, text, {title} AS title FROM slots WHERE deleted_version IS NULL)"
    )
    table = (
        f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, body, content='{CONTENT_VIEW}', "
        f"content_rowid='addr', tokenize='{config.tokenizer}')"
    )
    return view, table


def is_built(conn: sqlite3.Connection, config: LexicalConfig) -> bool:
    """Whether the database holds the lexical index `config` describes. The index is built
    in one transaction and then kept in step by every write, so present means complete."""
    stored = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name IN (?, ?)", (CONTENT_VIEW, FTS_TABLE)
        ).fetchall()
    )
    view, table = _schema(config)
    return stored.get(CONTENT_VIEW) == view and stored.get(FTS_TABLE) == table


def build(conn: sqlite3.Connection, config: LexicalConfig, live_rows: int) -> None:
    """(Re)create the index for every live slot, inside the caller's write transaction (a
    crash leaves the old state, never half an index); a progress bar per REBUILD_BATCH rows."""
    conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    conn.execute(f"DROP VIEW IF EXISTS {CONTENT_VIEW}")
    view, table = _schema(config)
    conn.execute(view)
    conn.execute(table)
    last = 0
    with tqdm(total=live_rows, desc="lexical index", unit="slot", disable=live_rows < 1) as bar:
        while True:
            rows = conn.execute(
                f"SELECT addr, title, body FROM {CONTENT_VIEW} WHERE addr > ? "
                "ORDER BY addr LIMIT ?",
                (last, REBUILD_BATCH),
            ).fetchall()
            if not rows:
                break
            conn.executemany(f"INSERT INTO {FTS_TABLE}(rowid, title, body) VALUES (?, ?, ?)", rows)
            last = rows[-1][0]
            bar.update(len(rows))
    logger.info("lexical index built over %d slots (tokenizer %r)", live_rows, config.tokenizer)


def index_rows(conn: sqlite3.Connection, first_addr: int) -> None:
    """Index the live slots at addresses >= `first_addr` (the rows a write just inserted)."""
    conn.execute(
        f"INSERT INTO {FTS_TABLE}(rowid, title, body) "
        f"SELECT addr, title, body FROM {CONTENT_VIEW} WHERE addr >= ?",
        (first_addr,),
    )


def unindex_rows(conn: sqlite3.Connection, in_list: str) -> None:
    """Remove the slots of `in_list` (a JSON array of addresses) from the index; called
    before they are tombstoned, while the view still shows the values that were indexed."""
    conn.execute(
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, body) "
        f"SELECT 'delete', addr, title, body FROM {CONTENT_VIEW} "
        "WHERE addr IN (SELECT value FROM json_each(?))",
        (in_list,),
    )


def optimize(conn: sqlite3.Connection) -> None:
    """Merge the index's segments into one, which drops what deletes left behind (FTS5
    'optimize'); compaction's counterpart for the lexical leg."""
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")


def unmatched_rows(conn: sqlite3.Connection) -> tuple[int, int]:
    """(slots indexed that are not live, live slots not indexed), from the index's per-row
    size table: a read-only check that the index and the slots agree row for row."""
    sizes = f"{FTS_TABLE}_docsize"
    ghosts = conn.execute(
        f"SELECT count(*) FROM {sizes} WHERE id NOT IN "
        "(SELECT addr FROM slots WHERE deleted_version IS NULL)"
    ).fetchone()[0]
    missing = conn.execute(
        f"SELECT count(*) FROM slots WHERE deleted_version IS NULL AND addr NOT IN "
        f"(SELECT id FROM {sizes})"
    ).fetchone()[0]
    return ghosts, missing


def check_words(conn: sqlite3.Connection) -> None:
    """FTS5 'integrity-check' with rank = 1: every word indexed is one of its row's, as the
    content view tokenizes it now (an sqlite3.DatabaseError, SQLITE_CORRUPT, if not). A
    command, so it needs a connection that may write; the caller rolls back around it."""
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('integrity-check', 1)")


def match_expression(text: str) -> str | None:
    """An FTS5 MATCH string that ORs the words of `text`, each quoted (so nothing in user text
    is FTS5 syntax), or None when the text has no words (only punctuation or spaces)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    if not words:
        return None
    if len(words) > MAX_QUERY_TERMS:
        logger.info("lexical query of %d words: the first %d are used", len(words), MAX_QUERY_TERMS)
        words = words[:MAX_QUERY_TERMS]
    return " OR ".join(f'"{w}"' for w in words)  # \w+ holds no quote: nothing to escape


def search(
    conn: sqlite3.Connection,
    config: LexicalConfig,
    text: str,
    k: int,
    where: tuple[str, Sequence[Any]] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, addresses) of the top-k live slots for `text` by BM25, best first. Scores
    are `-bm25()` (FTS5 returns lower-is-better), so higher is better as for cosines. A
    compiled `where` runs inside the same statement, so k hits come back whenever k matching
    slots contain a query word. Ties are broken by address."""
    expression = match_expression(text)
    if expression is None:
        return np.empty(0, np.float64), np.empty(0, np.int64)
    weights = (config.title_weight, config.body_weight)
    sql = f"SELECT rowid, bm25({FTS_TABLE}, ?, ?) AS s FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
    params: list[Any] = [*weights, expression]
    if where is not None:
        # `+rowid`: a bare `rowid IN (...)` is handed to FTS5 as rowid = ? constraints, one
        # MATCH evaluation per slot the filter lets through; the unary + keeps it a test of
        # each match against the list, which SQLite builds once
        sql += " AND +rowid IN (SELECT addr FROM slots WHERE deleted_version IS NULL AND "
        sql += f"{where[0]})"
        params.extend(where[1])
    rows = conn.execute(sql + " ORDER BY s, rowid LIMIT ?", [*params, k]).fetchall()
    addrs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((-r[1] for r in rows), dtype=np.float64, count=len(rows))
    return scores, addrs
