"""Opening a memory by what its folder holds: a sharded root (sharded.json) as a
`ShardedMemory`, anything else as a `Memory`. Ray is imported only for a sharded root, so the
CLI and the evaluation, which open both through here, never import it for a plain memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ..memory import Memory
from .layout import SHARDED_MANIFEST, read_manifest

if TYPE_CHECKING:
    from .sharded import ShardedMemory

    AnyMemory: TypeAlias = Memory | ShardedMemory  # what `open_read_only` opens


def is_sharded(path: str | Path) -> bool:
    """Whether `path` is the root of a sharded memory (its manifest is written last, so a
    creation that was interrupted is not one)."""
    return (Path(path) / SHARDED_MANIFEST).is_file()


def open_read_only(path: str | Path, **options: Any) -> AnyMemory:
    """The memory at `path` opened `read_only=True`, with `options` (cache, ...) that
    `Memory.open` and `ShardedMemory.open` share; a sharded one joins or starts a Ray runtime
    (`ShardedMemory.open`'s address=None) and leaves it when closed."""
    if not is_sharded(path):
        return Memory.open(path, read_only=True, **options)
    from .sharded import ShardedMemory

    return ShardedMemory.open(path, read_only=True, **options)


@contextmanager
def open_members(root: str | Path, **options: Any) -> Iterator[list[Memory]]:
    """Every member of the sharded memory at `root`, in shard order, each opened
    `read_only=True` as the ordinary memory directory it is (`options` as for `Memory.open`):
    what reads a member's own files (its stored vectors, its index) goes through here. No Ray:
    the members are read from this process, beside any shard actors that hold them."""
    base = Path(root)
    manifest = read_manifest(base)
    with ExitStack() as stack:
        yield [
            stack.enter_context(Memory.open(m.directory(base.resolve()), read_only=True, **options))
            for m in manifest.members
        ]
