"""A sealed shard: one partition group's IVF index, placed in a tier (GPU, RAM or disk).

Files, all written once and never modified (replaced by compaction):
    NNNNNN.faiss  the IVF index (FAISS native format)
    NNNNNN.addr   int64 slot addresses, sorted
    NNNNNN.vec    float32 full-precision vectors in .addr order (re-ranking IVF-PQ candidates,
                  and compaction; read row by row, never loaded whole)
A disk-tier shard is opened with IO_FLAG_MMAP: its inverted lists stay in the file and only
the probed lists are paged in (FAISS wiki, "Indexes that do not fit in RAM"). A RAM-tier shard
is read whole; a GPU-tier shard is a copy on the GPU beside a memory-mapped CPU copy, which
serves the searches the GPU index cannot (IDSelector filters).

Opening a shard verifies its files (`integrity.py` says how deep, by size): each file's
size, the .addr checksum, the .faiss structure (`ivf_file.parse_ivf`: the kind, dim, count
and partitions the manifest and router say, the router's centroids and PQ codebook, every id
of the inverted lists exactly once in .addr), and the recorded .faiss / .vec checksums of
files up to VERIFY_AT_OPEN_BYTES. Rows read from .vec later are checked to be unit vectors.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import CorruptFileError
from ..integrity import check_checksum, check_unit_rows
from ..manifest import ShardInfo
from .base import Route, ShardHits
from .ivf_file import IvfLayout, list_ids, parse_ivf, read_index
from .preassigned import search_preassigned
from .router import Router
from .shard_files import shard_paths

logger = logging.getLogger(__name__)

_gpu_local = threading.local()


def gpu_resources() -> faiss.StandardGpuResources:
    """One StandardGpuResources per thread, as the FAISS GPU wiki requires."""
    res = getattr(_gpu_local, "res", None)
    if res is None:
        res = _gpu_local.res = faiss.StandardGpuResources()
    return res


class SealedShard:
    """A sealed shard's files, opened in one tier at a time (a `base.Shard`)."""

    def __init__(self, root: Path, info: ShardInfo, router: Router, dim: int) -> None:
        self.info = info
        self.shard_id, self.group, self.kind = info.shard_id, info.group, info.kind
        self.dim = dim
        self._router = router
        self.paths = shard_paths((root / info.file).parent, info.shard_id)
        for ext, size in (("addr", 8 * info.count), ("vec", 4 * dim * info.count)):
            path = self.paths[ext]
            if not path.is_file():
                raise CorruptFileError(path, "missing")
            if path.stat().st_size != size:
                raise CorruptFileError(path, f"holds {path.stat().st_size} bytes, expected {size}")
        check_checksum(self.paths["addr"], info.sha256, always=True)
        self.addrs = np.fromfile(self.paths["addr"], dtype="<i8").astype(np.int64, copy=False)
        if info.count > 1 and not (np.diff(self.addrs) > 0).all():
            raise CorruptFileError(self.paths["addr"], "addresses are not strictly increasing")
        self._layout = self._check_index_file()
        check_checksum(self.paths["vec"], info.vec_sha256)
        # Sizes as opened: a writer may retire (delete) these files while a reader still
        # serves them from its open descriptors and maps.
        self.faiss_bytes = self.paths["faiss"].stat().st_size
        self.vec_bytes = 4 * dim * info.count
        self._vec_file = open(self.paths["vec"], "rb")
        self._vec_map = (
            mmap.mmap(self._vec_file.fileno(), 0, prot=mmap.PROT_READ) if info.count else None
        )
        self.tombstones = np.empty(0, dtype=np.int64)
        self._tomb_selector: faiss.IDSelector | None = None
        self.tier = "disk"
        self._index: faiss.IndexIVF | None = None
        self._cpu_index: faiss.IndexIVF | None = None  # the GPU tier's fallback
        self.list_bytes = np.zeros(0)

    def __len__(self) -> int:
        return self.info.count

    @property
    def live_count(self) -> int:
        return self.info.count - len(self.tombstones)

    @property
    def held_bytes(self) -> int:
        return self.index_bytes if self.tier != "disk" else self.faiss_bytes

    def _check_index_file(self) -> IvfLayout:
        """The .faiss file is this shard's index: the layout the manifest and the router say
        (kind, dim, count, the group's partitions, centroids and codebook), every id of its
        inverted lists in .addr exactly once, and its recorded checksum if small enough."""
        path = self.paths["faiss"]
        layout = parse_ivf(path)
        self._router.check_shard_layout(path, layout, self.group)
        nlist = int((self._router.groups == self.group).sum())
        if self.kind != self._router.kind or (layout.ntotal, layout.nlist) != (
            self.info.count,
            nlist,
        ):
            raise CorruptFileError(
                path,
                f"holds a {layout.kind} index of {layout.ntotal} vectors in {layout.nlist} "
                f"partitions; the manifest says {self.kind}, {self.info.count} vectors of "
                f"group {self.group} ({nlist} partitions)",
            )
        if not np.array_equal(np.sort(list_ids(path, layout)), self.addrs):
            raise CorruptFileError(
                path,
                f"the ids of its inverted lists are not the addresses of {self.paths['addr'].name}",
            )
        check_checksum(path, self.info.faiss_sha256)
        return layout

    # -- tiers -------------------------------------------------------------------------
    def verify_fully(self, batch: int = 65_536) -> None:
        """The verify step's check, whatever the files' sizes: both recorded checksums, and
        every .vec row a finite unit vector."""
        check_checksum(self.paths["faiss"], self.info.faiss_sha256, always=True)
        check_checksum(self.paths["vec"], self.info.vec_sha256, always=True)
        for start in range(0, len(self), batch):
            self.all_vectors(start, min(len(self), start + batch))

    def open_index(self, tier: str) -> tuple[faiss.Index, faiss.IndexIVF]:
        """Load the index for `tier` without touching the shard: (search index, CPU index).
        The file was verified when the shard was opened; FAISS reads it bounded by its size."""
        flags = faiss.IO_FLAG_MMAP if tier in ("disk", "gpu") else 0
        cpu = read_index(self.paths["faiss"], self._layout, flags)
        if not isinstance(cpu, faiss.IndexIVF) or cpu.ntotal != self.info.count:
            raise CorruptFileError(self.paths["faiss"], "changed since the shard was opened")
        if tier == "gpu":
            return faiss.index_cpu_to_gpu(gpu_resources(), 0, cpu), cpu
        return cpu, cpu

    def install(self, loaded: tuple[faiss.Index, faiss.IndexIVF], tier: str) -> None:
        """Swap in an index from open_index (the caller holds the index's write lock)."""
        self._index, self._cpu_index = loaded
        self.tier = tier
        invlists = self._cpu_index.invlists
        code_size = invlists.code_size + 8  # + the int64 id
        self.list_bytes = (
            np.array([invlists.list_size(i) for i in range(self._cpu_index.nlist)], dtype=np.int64)
            * code_size
        )

    @property
    def cpu_index(self) -> faiss.IndexIVF:
        """The CPU index installed now (a RAM copy, or memory-mapped for the disk and GPU
        tiers): what the stacked search points into (`stacked.py`)."""
        if self._cpu_index is None:
            raise RuntimeError(f"shard {self.shard_id} has no index before install()")
        return self._cpu_index

    @property
    def index_bytes(self) -> int:
        """Bytes the index occupies when held in RAM or on the GPU."""
        return self.faiss_bytes + self.addrs.nbytes

    # -- search ------------------------------------------------------------------------
    def set_tombstones(self, tombstones: np.ndarray) -> None:
        self.tombstones = np.unique(tombstones)
        self._tomb_selector = (
            faiss.IDSelectorNot(faiss.IDSelectorBatch(self.tombstones))
            if len(self.tombstones)
            else None
        )

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, route: Route | None
    ) -> ShardHits:
        """Top-k over this shard's part of the router's assignment `route` (global partition
        ids, shape (nq, nprobe)); tombstones never answer, and with `allowed` only those
        addresses do. `bytes_scanned` counts the codes of the partitions probed."""
        if route is None:
            raise ValueError("a sealed shard is searched with the router's assignment")
        selector = self._tomb_selector
        if allowed is not None:  # live slots only: tombstones are not among them
            mine = allowed[(allowed >= self.addrs[0]) & (allowed <= self.addrs[-1])]
            if not len(mine):
                return _empty_hits(len(queries), k)
            selector = faiss.IDSelectorBatch(mine)  # must outlive the search below
        lists, coarse = route.lists, route.coarse
        local = self._router.local_assignment(lists, self.group)
        # Pack each row's own partitions to the front: FAISS reads the assignment with a row
        # stride of nprobe, and clamps nprobe to this shard's (smaller) nlist.
        valid = local >= 0
        order = np.argsort(~valid, axis=1, kind="stable")
        width = max(1, int(valid.sum(axis=1).max()))
        local = np.ascontiguousarray(np.take_along_axis(local, order, axis=1)[:, :width])
        coarse = np.ascontiguousarray(np.take_along_axis(coarse, order, axis=1)[:, :width])
        probed = self.list_bytes[local[local >= 0]]
        # The GPU copy serves unfiltered searches when its FAISS build exposes preassigned
        # search; IDSelectors (filters, tombstones) run on the memory-mapped CPU copy.
        use_gpu = (
            self.tier == "gpu" and selector is None and hasattr(self._index, "search_preassigned_c")
        )
        index = self._index if use_gpu else self._cpu_index
        if index is None:
            raise RuntimeError(
                f"shard {self.shard_id} is searched before install() or after close()"
            )
        scores, addrs = search_preassigned(index, queries, k, local, coarse, selector)
        return ShardHits(scores, addrs, int(probed.sum()), int((probed > 0).sum()))

    def stats(self) -> dict[str, Any]:
        return {
            "shard_id": self.shard_id,
            "sealed": True,
            "kind": self.kind,
            "tier": self.tier,
            "group": self.group,
            "vectors": len(self),
            "bytes": self.held_bytes,
            "tombstone_ratio": len(self.tombstones) / max(1, len(self)),
        }

    def vectors_of(self, addrs: np.ndarray) -> np.ndarray:
        """Full-precision vectors of `addrs` (all in this shard), read from the .vec file.

        The pages read are dropped from this process's resident set afterwards (they stay in
        the kernel's page cache), so re-ranking never makes the file count against RSS. No
        view of the map outlives the call, so close() can always unmap it.
        """
        if self._vec_map is None:  # an empty shard holds no vector to read
            return np.empty((0, self.dim), dtype=np.float32)
        rows = np.searchsorted(self.addrs, addrs)
        held = rows < len(self.addrs)
        held[held] = self.addrs[rows[held]] == addrs[held]
        if not held.all():
            raise CorruptFileError(
                self.paths["addr"],
                f"does not hold address {int(addrs[np.argmin(held)])}, which its index returned",
            )
        table = np.frombuffer(self._vec_map, dtype="<f4").reshape(-1, self.dim)
        try:
            out = table[rows].astype(np.float32)
        finally:
            del table
        self._vec_map.madvise(mmap.MADV_DONTNEED)
        check_unit_rows(out, self.paths["vec"], "rows read for re-ranking")
        return out

    def all_vectors(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the .vec file (compaction streams through it), checked."""
        nbytes = 4 * self.dim * (stop - start)
        data = os.pread(self._vec_file.fileno(), nbytes, 4 * self.dim * start)
        if len(data) != nbytes:
            raise CorruptFileError(self.paths["vec"], f"short read of rows {start}-{stop - 1}")
        out = np.frombuffer(data, dtype="<f4").reshape(-1, self.dim).astype(np.float32)
        check_unit_rows(out, self.paths["vec"], "a row read for compaction or iteration", start)
        return out

    def close(self) -> None:
        """Release the index and the .vec file; safe to call twice, and never raises for a
        view of the map someone still holds (the map is then freed with the view)."""
        self._index = self._cpu_index = None
        if self._vec_map is not None:
            try:
                self._vec_map.close()
            except BufferError:
                logger.warning("%s: a view of the map is still held", self.paths["vec"])
        self._vec_file.close()


def _empty_hits(nq: int, k: int) -> ShardHits:
    """No candidates: FAISS's own padding (score -inf, address -1)."""
    return ShardHits(
        np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64), 0, 0
    )
