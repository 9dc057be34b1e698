"""`rag-memory verify DIR`: check every file of a memory in full, whatever its size.

Opening a memory checks what is cheap (integrity.py: structure always, checksums of files up
to VERIFY_AT_OPEN_BYTES, rows as they are read); this step does the rest, for files too large
to hash on every open and for rows no query has read: the manifest and its checksum, the
router files, each shard's .addr, .faiss (structure, ids against .addr, checksum) and .vec
(checksum, every row a unit vector), SQLite's own `PRAGMA integrity_check`, every slot row's
checksum, every growing vector and the lexical index (FTS5 'integrity-check': it holds the
words of the live slots and no others); then a read-only open, which cross-checks the
counts. Each damaged file is reported by name, and checking goes on with the next file, so
one run names them all (as `git fsck` and `sqlite3 .dbinfo` do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from .errors import CorruptFileError, RagMemoryError, StorageError
from .index.router import Router, RouterInfo
from .index.sealed import SealedShard
from .index.shard_files import SHARDS_DIR
from .integrity import hashed_at_open
from .manifest import MANIFEST_NAME, Manifest, ShardInfo, read_manifest
from .store.slot_table import TABLE_FILE, SlotTable

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class VerifyReport:
    """What `verify_memory` checked and what it found damaged."""

    path: Path
    checked: list[str] = field(default_factory=list)  # what was checked, in order
    problems: list[RagMemoryError] = field(default_factory=list)  # each names its file

    @property
    def ok(self) -> bool:
        return not self.problems

    def damaged_files(self) -> list[Path]:
        return [p.path for p in self.problems if isinstance(p, CorruptFileError)]

    def check(self, what: str, check: Callable[[], T]) -> T | None:
        """Run one check; a damaged file is recorded (and the next check still runs)."""
        self.checked.append(what)
        try:
            return check()
        except CorruptFileError as exc:
            logger.warning("damaged: %s", exc)
            self.problems.append(exc)
        except RagMemoryError as exc:  # not a damaged file, but the memory does not open
            self.problems.append(exc)
        except (OSError, MemoryError) as exc:  # unreadable: a problem of this file, not the end
            logger.warning("unreadable: %s: %s", what, exc)
            self.problems.append(StorageError(self.path / what, f"{type(exc).__name__}: {exc}"))
        return None


def verify_memory(path: str | Path) -> VerifyReport:
    """Check every file of the memory at `path` in full; NotAMemoryError if it is none."""
    from .memory import Memory  # the facade imports this package's parts; import it late

    directory = Path(path)
    report = VerifyReport(directory)
    manifest = report.check(MANIFEST_NAME, lambda: read_manifest(directory))
    if manifest is None:
        return report
    report.check(TABLE_FILE, lambda: _verify_table(directory / TABLE_FILE, manifest))
    router = None
    if manifest.router is not None:
        r = manifest.router
        info = RouterInfo.from_record(r)
        router = report.check(
            f"{SHARDS_DIR}/router",
            lambda: Router.load(directory / SHARDS_DIR, info, manifest.dim),
        )
    if router is not None:
        for shard_info in manifest.shards:
            report.check(
                shard_info.file, partial(_verify_shard, directory, shard_info, router, manifest.dim)
            )
    if report.ok:  # the cross-file checks of an open (counts of the table and the shards)
        report.check("open", lambda: Memory.open(directory, read_only=True).close())
    return report


def _verify_table(path: Path, manifest: Manifest) -> None:
    table = SlotTable(path, manifest.dim, read_only=True, lexical=manifest.lexical_config())
    # a small table is checked as it opens
    try:
        if not hashed_at_open(path):
            table.check_integrity()
        table.verify_rows()
        table.growing_vectors()
        table.check_lexical()  # the words indexed are those of the live slots
    finally:
        table.close()


def _verify_shard(directory: Path, info: ShardInfo, router: Router, dim: int) -> None:
    shard = SealedShard(directory, info, router, dim)
    try:
        shard.verify_fully()
    finally:
        shard.close()
