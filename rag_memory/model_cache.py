"""Model files derived once and kept on disk: a GGUF dequantised to safetensors (generate/),
an embedder exported to ONNX (embed/onnx_export.py).

A folder is built in a temp folder beside its target and renamed into place, so a build that
is killed never leaves a half model where a later load would read it; its marker (written
last, inside the temp folder) names the source it was built from and every file with its size,
and a load checks it before trusting the folder. A killed build's temp folder names the
process that made it and is removed by the next build of the same target once that process is
gone. Nothing here unpickles: the files are safetensors, JSON and ONNX protobufs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = "rag_memory_conversion.json"


def cache_root() -> Path:
    """Where derived models are kept: $RAG_MEMORY_CACHE or ~/.cache/rag_memory."""
    return Path(os.environ.get("RAG_MEMORY_CACHE", Path.home() / ".cache" / "rag_memory"))


def weights_stamp(folder: Path) -> str:
    """The weight files of a model folder by name, size and mtime: a model retrained in the
    same folder gets a new stamp, and so a new key for whatever was derived from it."""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def is_complete(folder: Path, stamp: str) -> bool:
    """`folder` holds a whole build from the source `stamp`: its marker names that source and
    the files it lists exist with the sizes it recorded."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        return marker.get("source") == stamp and all(
            (folder / n).stat().st_size == size for n, size in marker["files"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        if folder.exists():
            logger.warning("derived model %s is incomplete or stale; building it again", folder)
        return False


def _owner_alive(temp: Path) -> bool:
    """Whether the process named in a temp folder's name (.TARGET.PID.RANDOM) still runs."""
    try:
        pid = int(temp.name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(target: Path) -> None:
    """Remove the temp folders that killed builds of `target` left beside it."""
    if not target.parent.is_dir():
        return
    for temp in target.parent.glob(f".{target.name}.*"):
        if temp.is_dir() and not _owner_alive(temp):
            logger.info("removing %s, left by a build that did not finish", temp)
            shutil.rmtree(temp, ignore_errors=True)


def build_atomically(target: Path, stamp: str, write: Callable[[Path], None]) -> None:
    """Build `target` by `write(temp_folder)`, then mark and rename it into place whole.

    A target already there (stale or incomplete) is replaced as a whole; a failure removes the
    temp folder and leaves any earlier target as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a derived model is not a secret
    try:
        write(tmp)
        files = {f.name: f.stat().st_size for f in tmp.iterdir() if f.is_file()}
        (tmp / MARKER).write_text(json.dumps({"source": stamp, "files": files}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
