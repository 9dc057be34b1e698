"""The output folder of a build: create it, resume an interrupted build in it, or refuse.

| what DIR holds                                   | result                                   |
|--------------------------------------------------|------------------------------------------|
| nothing (absent or empty)                        | a new memory                             |
| a memory + an unfinished checkpoint of this command | resume                                |
| a memory + an unfinished checkpoint of another   | BuildStateError (names the difference)   |
| an empty memory, no checkpoint (killed at start) | built into as if new                     |
| any other memory                                 | MemoryExistsError unless --append        |
| a memory creation killed before its manifest     | the partial files are removed, then new  |
| anything else                                    | MemoryExistsError                        |

A sharded memory (the Ray build) follows the same table, with its sharded.json as the
manifest and its members as the files a creation writes first.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..embed import Embedder
from ..errors import BuildStateError, MemoryExistsError
from ..index.config import IndexConfig
from ..index.plan import choose_index
from ..index.shard_files import SHARDS_DIR
from ..locks import LOCK_NAME
from ..manifest import MANIFEST_NAME
from ..memory import Memory
from ..store.slot_table import TABLE_FILE
from .checkpoint import Checkpoint, fingerprint, read_checkpoint, write_checkpoint

logger = logging.getLogger(__name__)

# What Memory.create writes before manifest.json (which it writes last).
_CREATE_FILES = {
    SHARDS_DIR,
    LOCK_NAME,
    TABLE_FILE,
    f"{TABLE_FILE}-wal",
    f"{TABLE_FILE}-shm",
    f"{TABLE_FILE}-journal",
}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _half_created(out: Path) -> bool:
    """A Memory.create killed before its manifest: only its own files, shards/ empty."""
    names = {p.name for p in out.iterdir()}
    shards = out / SHARDS_DIR
    return names <= _CREATE_FILES and (not shards.exists() or not any(shards.iterdir()))


def memory_options(
    dim: int,
    budget: int,
    expected_vectors: int | None,
    seal_threshold: int | None = None,
    lexical: bool = True,
) -> dict[str, Any]:
    """`Memory.create`'s index, ram_bytes and lexical for a build: `budget` is its RAM budget
    for sealed shards (the rest is memory-mapped from disk, and later opens keep to it) and,
    when the number of vectors to come is known, its sealed shards follow the index plan for
    that number under that budget. `seal_threshold` (None: IndexConfig's default) sets when
    the growing shard seals; `lexical` False makes a dense-only memory (no BM25 index, none of
    its cost per write). A sharded build gives every member these, for its share of vectors."""
    settings: dict[str, Any] = {}
    if seal_threshold is not None:
        settings["seal_threshold"] = seal_threshold
    if expected_vectors:
        plan = choose_index(expected_vectors, dim, budget)
        if plan.kind != "flat":
            settings.update(
                kind=plan.kind,
                nlist=plan.nlist,
                nprobe=plan.nprobe,
                pq_m=plan.pq_m or None,
                expected_vectors=expected_vectors,
            )
    index = IndexConfig(**settings) if settings else None
    return {"index": index, "ram_bytes": budget, "lexical": lexical}


def create_memory(
    path: Path,
    dim: int,
    budget: int,
    expected_vectors: int | None,
    embedder: Embedder | None = None,
    seal_threshold: int | None = None,
    lexical: bool = True,
) -> Memory:
    """The new memory of a build, made with `memory_options`."""
    options = memory_options(dim, budget, expected_vectors, seal_threshold, lexical)
    return Memory.create(path, embedder=embedder, dim=dim, **options)


_APPEND_OR_ELSEWHERE = "pass --append to add this corpus to it, or choose another --out"


def refuse_early(
    out: Path, append: bool, marker: str = MANIFEST_NAME, remedy: str = _APPEND_OR_ELSEWHERE
) -> None:
    """Refuse a rebuild of a finished build before any model is loaded (open_target decides
    every other case). `marker`: the file that makes `out` a memory (a sharded memory's is
    sharded.json); `remedy`: what the refusal tells the user to do instead."""
    if append or not (out / marker).is_file():
        return
    checkpoint = read_checkpoint(out)
    if checkpoint is not None and checkpoint.done:
        raise MemoryExistsError(f"{out} already holds a finished build; {remedy}")


class BuildTarget(Protocol):
    """What a build writes into: a `Memory`, or a sharded memory."""

    def __len__(self) -> int: ...

    def close(self) -> None: ...


M = TypeVar("M", bound=BuildTarget)


def open_target(
    out: Path,
    command: dict[str, Any],
    append: bool,
    create: Callable[[Path], M],
    open_: Callable[[Path], M],
    marker: str = MANIFEST_NAME,
    half_created: Callable[[Path], bool] = _half_created,
) -> tuple[M, Checkpoint, bool]:
    """(memory, checkpoint, resumed) for a build of `command` into `out`. `marker` is the file
    that makes `out` a memory, written last by `create`; `half_created` tells a creation
    killed before it (removed, then made again) from a folder of other files (refused)."""
    fp = fingerprint(command)
    fresh = Checkpoint(fp, command, blocks_done=0, slots_before=0, done=False)
    if out.is_dir() and not (out / marker).exists() and any(out.iterdir()):
        if not half_created(out):
            raise MemoryExistsError(f"{out} holds files and is not a memory; choose another --out")
        logger.warning("%s holds a memory creation that was interrupted; starting it again", out)
        for path in out.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        mem = create(out)
        write_checkpoint(out, fresh)
        return mem, fresh, False
    checkpoint = read_checkpoint(out) if out.is_dir() else None
    mem = open_(out)
    try:
        if checkpoint is not None and not checkpoint.done:
            if checkpoint.fingerprint != fp:
                raise BuildStateError(
                    f"{out} holds an interrupted build of a different command "
                    f"({_differences(checkpoint.command, command)}); rerun that command to "
                    f"finish it, or build into another --out"
                )
            logger.info("resuming the build in %s after block %d", out, checkpoint.blocks_done)
            return mem, checkpoint, True
        if checkpoint is None and len(mem) == 0:
            write_checkpoint(out, fresh)
            return mem, fresh, False
        if not append:
            state = "a finished build" if checkpoint is not None else "a memory"
            raise MemoryExistsError(
                f"{out} already holds {state} ({len(mem):,} slots); pass "
                f"--append to add this corpus to it, or choose another --out"
            )
        checkpoint = Checkpoint(fp, command, blocks_done=0, slots_before=len(mem), done=False)
        write_checkpoint(out, checkpoint)
        return mem, checkpoint, False
    except BaseException:
        mem.close()
        raise
