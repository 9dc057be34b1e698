"""A memory directory on disk: making a new one, and opening the parts of an existing one.

manifest.json  written last by `create_directory`: its presence marks a complete memory
slots.sqlite   the slot table
shards/        the router and sealed shard files
LOCK           the writer's flock
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from .embed import Embedder
from .errors import EmbedderMismatchError, MemoryExistsError
from .fsutil import check_writable, storage_errors
from .index.config import IndexConfig
from .index.shard_files import SHARDS_DIR
from .locks import LOCK_NAME, WriterLock
from .manifest import Manifest, read_manifest, write_manifest
from .store.lexical import LexicalConfig
from .store.slot_table import TABLE_FILE, SlotTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryFiles:
    """What `Memory` is built from: the manifest, the embedder, the open slot table and the
    writer lock (None for a read-only open)."""

    manifest: Manifest
    embedder: Embedder
    table: SlotTable
    writer_lock: WriterLock | None


def create_directory(
    directory: Path,
    embedder: Embedder,
    dim: int,
    config: IndexConfig,
    budgets: dict[str, int | None],
    lexical: LexicalConfig | None,
    lock_timeout: float | None,
    ttl: float | None = None,
) -> MemoryFiles:
    """Make a new memory in `directory` (absent, empty, or holding only the LOCK a failed
    create left), its manifest written last. If a step fails (a full disk, read-only media),
    what this call wrote is removed again, so the same create can be retried."""
    if directory.exists() and (
        not directory.is_dir() or any(p.name != LOCK_NAME for p in directory.iterdir())
    ):
        raise MemoryExistsError(
            f"{directory} already exists and is not empty; use Memory.open to open a memory"
        )
    with storage_errors(directory, "creating the memory"):
        directory.mkdir(parents=True, exist_ok=True)
        lock = _writer_lock(directory, lock_timeout)
    try:
        with storage_errors(directory, "creating the memory"):
            (directory / SHARDS_DIR).mkdir(exist_ok=True)
        table = SlotTable.create(directory / TABLE_FILE, dim, lexical)
        try:
            manifest = Manifest(
                embedder=embedder.name,
                dim=dim,
                index=config.to_dict(),
                budgets=budgets,
                lexical=None if lexical is None else lexical.to_dict(),
                ttl=ttl,
            )
            write_manifest(directory, manifest)
        except BaseException:
            table.close()
            raise
    except BaseException:
        _remove_all_but_lock(directory)
        lock.release()
        raise
    return MemoryFiles(manifest, embedder, table, lock)


def _remove_all_but_lock(directory: Path) -> None:
    """Undo a failed create (the caller holds the lock, so no other process is creating it):
    the LOCK stays, as the one file `create_directory` accepts in a directory it is given."""
    for path in directory.iterdir():
        if path.name == LOCK_NAME:
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:  # the original failure is the one to report
            logger.warning("could not remove %s after a failed create: %s", path, exc)


def _writer_lock(directory: Path, lock_timeout: float | None) -> WriterLock:
    """The writer's flock, after checking that a writer may write here at all (read-only
    media or another user's directory is a NotWritableError that says to open read-only)."""
    check_writable(directory, directory / SHARDS_DIR, directory / LOCK_NAME)
    with storage_errors(directory / LOCK_NAME, "opening the writer lock"):
        return WriterLock(directory, lock_timeout)


def open_directory(
    directory: Path,
    embedder: str | Embedder | None,
    device: str | None,
    read_only: bool,
    lock_timeout: float | None,
) -> MemoryFiles:
    """Open an existing memory's parts; its own embedder only (another is refused)."""
    manifest = read_manifest(directory)
    name = embedder.name if isinstance(embedder, Embedder) else embedder
    if name is not None and name != manifest.embedder:
        raise EmbedderMismatchError(
            f"{directory} was built with embedder {manifest.embedder!r}, not {name!r}"
        )
    if not isinstance(embedder, Embedder):
        embedder = Embedder(manifest.embedder, device=device)
    lock = None if read_only else _writer_lock(directory, lock_timeout)
    try:
        if lock is not None:  # the writer we waited for may have sealed meanwhile
            manifest = read_manifest(directory)
        table = SlotTable(
            directory / TABLE_FILE,
            manifest.dim,
            read_only=read_only,
            lexical=manifest.lexical_config(),
        )
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return MemoryFiles(manifest, embedder, table, lock)
