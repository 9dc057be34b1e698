"""The build checkpoint: DIR/build_checkpoint.json, replaced atomically after every committed block.

Resuming relies on determinism, not on saved data: the same command reads the same corpus
into the same blocks, so the checkpoint only records how many blocks are committed. A block
is committed by one `Memory.add` (one SQLite transaction), and the checkpoint is written just
after it; a kill between the two leaves the checkpoint one block behind, which the pipeline
detects (all of that block's ids are stored) and skips. JSON only, validated strictly on read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError
from ..fsutil import atomic_write_bytes
from ..validation import json_object_problem

CHECKPOINT_NAME = "build_checkpoint.json"
FORMAT = "rag_memory.build_checkpoint"
VERSION = 1
_TYPES = {  # every field of Checkpoint, as read back from JSON
    "fingerprint": str,
    "command": dict,
    "blocks_done": int,
    "slots_before": int,
    "done": bool,
    "format": str,
    "version": int,
}


@dataclass(frozen=True)
class Checkpoint:
    """How far a build got."""

    fingerprint: str  # sha256 of the command's inputs (see `fingerprint`)
    command: dict[str, Any]  # those inputs, to name the difference when a rerun does not match
    blocks_done: int  # blocks 0..blocks_done-1 are committed
    slots_before: int  # slots the memory held before this build began (--append)
    done: bool  # the build finished
    format: str = FORMAT
    version: int = VERSION

    def advance(self, blocks_done: int) -> Checkpoint:
        return replace(self, blocks_done=blocks_done)


def fingerprint(command: dict[str, Any]) -> str:
    """A stable hash of the build's inputs: what determines the blocks and their vectors."""
    return hashlib.sha256(json.dumps(command, sort_keys=True).encode()).hexdigest()


def source_identity(path: Path) -> dict[str, Any]:
    """Path, size and mtime of the corpus: a rerun on an edited file must not resume."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_checkpoint(directory: Path, checkpoint: Checkpoint) -> None:
    data = json.dumps(asdict(checkpoint), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(directory / CHECKPOINT_NAME, data.encode())


def read_checkpoint(directory: Path) -> Checkpoint | None:
    """The checkpoint in `directory`, None if there is none; CorruptFileError if it is bad."""
    path = directory / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"unreadable checkpoint ({exc})") from None
    problem = json_object_problem(data, _TYPES, "a checkpoint")
    if problem is not None:
        raise CorruptFileError(path, problem)
    if data["format"] != FORMAT or data["version"] != VERSION:
        raise CorruptFileError(path, f"not a version-{VERSION} build checkpoint")
    if data["blocks_done"] < 0 or data["slots_before"] < 0:
        raise CorruptFileError(path, "negative counts")
    if data["fingerprint"] != fingerprint(data["command"]):
        raise CorruptFileError(path, "fingerprint does not match the recorded command")
    return Checkpoint(**data)
