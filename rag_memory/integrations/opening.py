"""The memory behind an adapter: one passed in, or one opened (or created) at a path.

Both adapters are built as `Store(memory_or_path, <framework embedding>=None, **options)`. A
`Memory` passed in stays the caller's (the store never closes it); a path the store opens is
the store's to close. A path that holds no memory yet is created with the options, so the
same line works on the first run and every later one; options only `Memory.create` takes
(they are recorded in the manifest) are refused at an open rather than dropped.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..embed import Embedder
from ..errors import EmbedderMismatchError, InvalidInputError
from ..manifest import MANIFEST_NAME
from ..memory import Memory
from .embedder import FRAMEWORKS, FrameworkEmbedder

logger = logging.getLogger(__name__)

_CREATE_OPTIONS = frozenset(inspect.signature(Memory.create).parameters) - {"cls", "path"}
_OPEN_OPTIONS = frozenset(inspect.signature(Memory.open).parameters) - {"cls", "path"}


@dataclass(frozen=True)
class Binding:
    """A store's memory, whether the store opened it (and so closes it), and the embedder
    its writes and queries embed with: the framework model's adapter, or the memory's own.
    When that is not the memory's own (a Memory passed in with a model), the store embeds
    and hands the memory vectors (`rag_memory.integrations.vectors`)."""

    memory: Memory
    owned: bool
    embedder: Embedder

    def close(self) -> None:
        if self.owned:
            self.memory.close()


def bind(
    memory_or_path: Memory | str | os.PathLike[str],
    model: Any,
    framework_type: type,
    adapter_type: type[Any],
    options: dict[str, Any],
) -> Binding:
    """The binding of a store built as `Store(memory_or_path, model, **options)`: `model`
    is a `framework_type` (wrapped in `adapter_type`, a FrameworkEmbedder taking the model),
    an `adapter_type` already, or None (the memory's own embedder)."""
    if isinstance(model, framework_type):
        adapter: FrameworkEmbedder | None = adapter_type(model)
    elif isinstance(model, adapter_type) or model is None:
        adapter = model
    else:
        raise InvalidInputError(
            f"the embedding model must be a {framework_type.__module__}."
            f"{framework_type.__qualname__} or a "
            f"{adapter_type.__name__}, got {type(model).__name__}"
        )
    memory, owned = open_memory(memory_or_path, adapter, options)
    return Binding(memory, owned, adapter or memory.embedder)


class ClosesMemory:
    """`close()` and the context manager of a store over a `Binding` (`_binding`)."""

    _binding: Binding

    def close(self) -> None:
        """Close the memory if the store opened it (one passed in stays open)."""
        self._binding.close()

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_Store = TypeVar("_Store", bound=ClosesMemory)


def open_memory(
    memory_or_path: Memory | str | os.PathLike[str],
    embedder: Embedder | None,
    options: dict[str, Any],
) -> tuple[Memory, bool]:
    """(the memory, whether the store owns it). `embedder` is the framework model wrapped as
    the memory's embedder (None: the memory's own, or `options["embedder"]`)."""
    if isinstance(memory_or_path, Memory):
        if options:
            raise InvalidInputError(
                f"memory options {sorted(options)} apply when the store opens a path; "
                "this memory is already open"
            )
        memory = memory_or_path
        if embedder is not None and memory.manifest.embedder != embedder.name:
            raise EmbedderMismatchError(
                f"{memory.path} was built with embedder {memory.manifest.embedder!r}, "
                f"not {embedder.name!r}"
            )
        owned = False
    else:
        memory = _open_path(memory_or_path, embedder, dict(options))
        owned = True
    framework_built = memory.manifest.embedder.split(":", 1)[0] in FRAMEWORKS
    if embedder is None and framework_built and not isinstance(memory.embedder, FrameworkEmbedder):
        if owned:
            memory.close()
        raise EmbedderMismatchError(
            f"{memory.path} was built with the framework embedding model "
            f"{memory.manifest.embedder!r}: pass that model to the store again"
        )
    return memory, owned


def _open_path(path: str | os.PathLike[str], embedder: Embedder | None, options: dict) -> Memory:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(
            f"memory_or_path must be a Memory or a path, got {type(path).__name__}"
        )
    if embedder is not None:
        if "embedder" in options:
            raise InvalidInputError(
                "give the embedding model once: as the store's embedding, or as embedder="
            )
        options["embedder"] = embedder
    exists = (Path(path) / MANIFEST_NAME).is_file()
    allowed = _OPEN_OPTIONS if exists else _CREATE_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        where = "opening an existing memory" if exists else "creating a memory"
        raise InvalidInputError(
            f"memory options {unknown} do not apply when {where} at {path}; "
            f"those that do: {sorted(allowed)}"
        )
    if exists:
        logger.info("opening the memory at %s", path)
        return Memory.open(Path(path), **options)
    logger.info("creating a memory at %s", path)
    return Memory.create(Path(path), **options)
