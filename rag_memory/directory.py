"""A memory directory on disk: making a new one, and opening the parts of an existing one.

manifest.json  written last by `create_directory`: its presence marks a complete memory
slots.sqlite   the slot table
shards/        the router and sealed shard files
LOCK           the writer's flock
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .embed import Embedder
from .errors import EmbedderMismatchError, MemoryExistsError
from .index.config import IndexConfig
from .index.shard_files import SHARDS_DIR
from .locks import WriterLock
from .manifest import Manifest, read_manifest, write_manifest
from .store.slot_table import TABLE_FILE, SlotTable


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
    lock_timeout: float | None,
) -> MemoryFiles:
    """Make a new memory in `directory` (absent or empty), its manifest written last."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise MemoryExistsError(
            f"{directory} already exists and is not empty; use Memory.open to open a memory"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SHARDS_DIR).mkdir(exist_ok=True)
    lock = WriterLock(directory, lock_timeout)
    table = SlotTable.create(directory / TABLE_FILE, dim)
    manifest = Manifest(embedder=embedder.name, dim=dim, index=config.to_dict(), budgets=budgets)
    write_manifest(directory, manifest)
    return MemoryFiles(manifest, embedder, table, lock)


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
    lock = None if read_only else WriterLock(directory, lock_timeout)
    try:
        table = SlotTable(directory / TABLE_FILE, manifest.dim, read_only=read_only)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return MemoryFiles(manifest, embedder, table, lock)
