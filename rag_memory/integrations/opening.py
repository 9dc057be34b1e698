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
from pathlib import Path
from typing import Any

from ..embed import Embedder
from ..errors import EmbedderMismatchError, InvalidInputError
from ..manifest import MANIFEST_NAME
from ..memory import Memory
from .embedder import FRAMEWORKS

logger = logging.getLogger(__name__)

_CREATE_OPTIONS = frozenset(inspect.signature(Memory.create).parameters) - {"cls", "path"}
_OPEN_OPTIONS = frozenset(inspect.signature(Memory.open).parameters) - {"cls", "path"}


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
    if embedder is None and memory.manifest.embedder.split(":", 1)[0] in FRAMEWORKS:
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
