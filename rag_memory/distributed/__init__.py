"""A memory sharded over Ray actors (`ShardedMemory`) and its distributed build.

Needs the `ray` extra (`pip install 'rag_memory[ray]'`) for `ShardedMemory` and the build;
`import rag_memory` never imports this package, nor Ray. The package itself, its file layout
(`layout`) and `opening` import no Ray: the CLI and the evaluation tell a sharded root from
a memory directory without it, and import Ray only to open one. `ShardedMemory` is imported
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .layout import SHARDED_MANIFEST

if TYPE_CHECKING:
    from .sharded import ShardedMemory

__all__ = ["SHARDED_MANIFEST", "ShardedMemory"]


def __getattr__(name: str) -> Any:
    """`ShardedMemory`, imported (with Ray) when first asked for."""
    if name != "ShardedMemory":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - the extra is installed in CI
        raise ModuleNotFoundError(
            "rag_memory.distributed needs Ray: pip install 'rag_memory[ray]'", name=exc.name
        ) from exc
    from .sharded import ShardedMemory

    globals()[name] = ShardedMemory  # asked once
    return ShardedMemory
