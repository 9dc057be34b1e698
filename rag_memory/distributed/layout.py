"""The sharded memory's own files: `sharded.json` at its root, and where each member lives.

A sharded memory is a root folder holding `sharded.json` (written last at create, atomically,
so a folder without it is not a sharded memory) and a writer lock, and N member memories,
each an ordinary memory directory that `Memory.open` opens on its own. The manifest records
what every client must agree on: the shard count and the routing rule (changing either would
send an id's upsert to another shard than its first write), the embedder and dimension, and
per member its directory and, for members on a node's local disk, that node.

Two layouts (README "Scaling on Ray"):
- shared filesystem (NFS, Lustre, a local run): members under the root (`shard-000`, ...),
  relative paths, `node` null: any node's actor can open any member;
- local disks: `member_root` names a folder that exists on every node (e.g. /mnt/nvme/rag),
  members get absolute paths under it and each member is pinned to the node (by IP) that
  holds its directory: its actor is scheduled there and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, NotAMemoryError
from ..fsutil import atomic_write_bytes, storage_errors
from ..id_hash import id_hash
from ..validation import json_object_problem

SHARDED_MANIFEST = "sharded.json"
FORMAT = 1
# The routing rule, by name: an id's shard is id_hash(id) mod shards (rag_memory.id_hash).
ROUTING = "blake2b64-mod"
MAX_SHARDS = 1_024


def shard_of(ids: list[str], shards: int) -> list[int]:
    """Each id's shard under `ROUTING`: the same for an id's add, upsert, get and delete, in
    every client and process."""
    return [id_hash(i) % shards for i in ids]


@dataclass(frozen=True)
class Member:
    """One member memory: its directory (relative to the root, or absolute on its node) and
    the IP of the node that holds it (None: any node can open it)."""

    path: str
    node: str | None = None

    def directory(self, root: Path) -> Path:
        return root / self.path  # an absolute path stays itself


@dataclass(frozen=True)
class ShardedManifest:
    shards: int
    embedder: str
    dim: int
    members: tuple[Member, ...]
    routing: str = ROUTING
    format: int = FORMAT

    def to_json(self) -> bytes:
        record = {
            "format": self.format,
            "shards": self.shards,
            "routing": self.routing,
            "embedder": self.embedder,
            "dim": self.dim,
            "members": [{"path": m.path, "node": m.node} for m in self.members],
        }
        return json.dumps(record, indent=2).encode()


def member_paths(root: Path, shards: int, member_root: Path | None) -> list[str]:
    """Member directories: under the root, or under `member_root` (named after the root, so
    two sharded memories can share one member_root)."""
    if member_root is None:
        return [f"shard-{i:03d}" for i in range(shards)]
    return [str(member_root / f"{root.name}.shard-{i:03d}") for i in range(shards)]


def write_manifest(root: Path, manifest: ShardedManifest) -> None:
    atomic_write_bytes(root / SHARDED_MANIFEST, manifest.to_json())


_FIELDS: dict[str, Any] = {
    "format": int,
    "shards": int,
    "routing": str,
    "embedder": str,
    "dim": int,
    "members": list,
}


def read_manifest(root: Path) -> ShardedManifest:
    """The manifest at `root`, validated field by field (CorruptFileError names the problem);
    NotAMemoryError where there is none."""
    path = root / SHARDED_MANIFEST
    if not path.is_file():
        raise NotAMemoryError(f"{root} is not a sharded memory (no {SHARDED_MANIFEST})")
    with storage_errors(path, "read"):
        raw = path.read_bytes()
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"is not valid JSON: {exc}") from None
    problem = json_object_problem(record, _FIELDS, SHARDED_MANIFEST)
    if problem is None and record["format"] != FORMAT:
        problem = f"format {record['format']} is not {FORMAT} (written by another version)"
    if problem is None and record["routing"] != ROUTING:
        problem = f"routing rule {record['routing']!r} is not {ROUTING!r}"
    if problem is None and not 1 <= record["shards"] <= MAX_SHARDS:
        problem = f"shards {record['shards']} is not in 1..{MAX_SHARDS}"
    if problem is None and len(record["members"]) != record["shards"]:
        problem = f"lists {len(record['members'])} members for {record['shards']} shards"
    members: list[Member] = []
    for i, m in enumerate(record["members"] if problem is None else []):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("path"), str)
            or not m["path"]
            or not (m.get("node") is None or isinstance(m["node"], str))
        ):
            problem = f"members[{i}] must be {{'path': str, 'node': str | null}}, got {m!r}"
            break
        members.append(Member(m["path"], m.get("node")))
    if problem is not None:
        raise CorruptFileError(path, problem)
    return ShardedManifest(
        record["shards"], record["embedder"], record["dim"], tuple(members), record["routing"]
    )
