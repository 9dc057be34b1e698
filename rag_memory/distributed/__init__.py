"""A memory sharded over Ray actors (`ShardedMemory`) and its distributed build.

Needs the `ray` extra (`pip install 'rag_memory[ray]'`); `import rag_memory` never imports
this package, nor Ray.
"""

try:
    import ray  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is installed in CI
    raise ModuleNotFoundError(
        "rag_memory.distributed needs Ray: pip install 'rag_memory[ray]'", name=exc.name
    ) from exc

from .layout import SHARDED_MANIFEST
from .sharded import ShardedMemory

__all__ = ["SHARDED_MANIFEST", "ShardedMemory"]
