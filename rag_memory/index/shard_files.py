"""Writing sealed shards: pure functions over explicit inputs, as faiss `contrib/ondisk.py`
writes and merges IVF shards; the index that owns the shards swaps what they return in.

Files, all written once and never modified (replaced by compaction):
    NNNNNN.faiss  the IVF index (FAISS native format)
    NNNNNN.addr   int64 slot addresses, sorted
    NNNNNN.vec    float32 full-precision vectors in .addr order
Every file is fsynced, then the directory, before a function returns, so a manifest that
names the shard (the commit point) never names a file that is not on disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ..fsutil import fsync_dir, storage_errors
from ..manifest import ShardInfo
from .router import Router

if TYPE_CHECKING:
    from .sealed import SealedShard

SHARDS_DIR = "shards"  # under the memory directory: the router and sealed shard files
SHARD_EXTENSIONS = ("faiss", "addr", "vec")


def shard_paths(directory: Path, shard_id: int) -> dict[str, Path]:
    stem = directory / f"{shard_id:06d}"
    return {ext: stem.with_suffix(f".{ext}") for ext in SHARD_EXTENSIONS}


def _write_file(path: Path, write: Callable[[Callable[[bytes], object]], object]) -> str:
    """`write(sink)` into a new file at `path`, then flush and fsync it; returns the SHA-256
    of the bytes given to `sink` (hashed as written: no second read, and the checksum is of
    what was meant, so a write the disk damaged is caught at the next open). An OSError (a
    full disk, an I/O error) comes out as a StorageError naming the file."""
    digest = hashlib.sha256()
    with storage_errors(path, "writing"), open(path, "wb") as f:

        def sink(data: bytes) -> object:
            digest.update(data)
            return f.write(data)

        write(sink)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def write_shard(
    directory: Path,
    shard_id: int,
    router: Router,
    group: int,
    addrs: np.ndarray,
    vectors: np.ndarray,
) -> ShardInfo:
    """Build and durably write one shard of `group` (its files are fsynced before return)."""
    order = np.argsort(addrs, kind="stable")
    addrs, vectors = np.ascontiguousarray(addrs[order]), np.ascontiguousarray(vectors[order])
    index = router.new_shard_index(group)
    index.add_with_ids(vectors, addrs)
    return _write_files(directory, shard_id, index, router.kind, group, addrs, vectors)


def merge_shards(
    directory: Path, shard_id: int, router: Router, group: int, shards: list[SealedShard]
) -> ShardInfo:
    """One shard holding the live vectors of several shards of `group`, durably written.

    The shards share the group's quantizer and the memory's PQ codebook, so their inverted
    lists are concatenated code by code (IndexIVF.merge_from, as faiss.contrib.ondisk merges
    IVF shards) and tombstones removed by id: nothing is re-encoded, and merging stays linear
    in bytes however often a group is merged. Extra RAM: one merged group."""
    merged = router.new_shard_index(group)
    parts_a, parts_v, gone = [], [], []
    for shard in shards:
        tombstones = shard.tombstones  # one snapshot: deletes may arrive while this runs
        # a private RAM copy: merge_from empties its source, which must not be the served index
        merged.merge_from(shard.open_index("ram")[1], 0)
        keep = ~np.isin(shard.addrs, tombstones)
        parts_a.append(shard.addrs[keep])
        parts_v.append(shard.all_vectors(0, len(shard))[keep])
        gone.append(tombstones)
    tombstones = np.concatenate(gone)
    if len(tombstones):
        merged.remove_ids(faiss.IDSelectorBatch(tombstones))
    addrs, vectors = np.concatenate(parts_a), np.concatenate(parts_v)
    del parts_v
    order = np.argsort(addrs, kind="stable")
    return _write_files(
        directory, shard_id, merged, router.kind, group, addrs[order], vectors[order]
    )


def _write_files(
    directory: Path,
    shard_id: int,
    index: faiss.IndexIVF,
    kind: str,
    group: int,
    addrs: np.ndarray,
    vectors: np.ndarray,
) -> ShardInfo:
    paths = shard_paths(directory, shard_id)
    # Through our own file object: FAISS's own writer reports a failed fclose (a full disk)
    # only on stderr, which would leave a short file behind a manifest that names it.
    faiss_sha256 = _write_file(
        paths["faiss"], lambda sink: faiss.write_index(index, faiss.PyCallbackIOWriter(sink))
    )
    addr_sha256 = _write_file(paths["addr"], lambda sink: sink(addrs.astype("<i8").tobytes()))
    vec_sha256 = _write_file(paths["vec"], lambda sink: sink(vectors.astype("<f4").tobytes()))
    fsync_dir(directory)
    return ShardInfo(
        shard_id=shard_id,
        kind=kind,
        tier="disk",
        count=len(addrs),
        file=f"{directory.name}/{shard_id:06d}",
        sha256=addr_sha256,
        group=group,
        heat=0.0,
        faiss_sha256=faiss_sha256,
        vec_sha256=vec_sha256,
    )


def remove_shard_files(directory: Path, shard_id: int) -> None:
    for path in shard_paths(directory, shard_id).values():
        path.unlink(missing_ok=True)
