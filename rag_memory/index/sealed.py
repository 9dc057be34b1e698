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
"""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import CorruptFileError
from ..manifest import ShardInfo
from .base import Route, ShardHits
from .router import Router, sha256_file
from .shard_files import shard_paths

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
        if sha256_file(self.paths["addr"]) != info.sha256:
            raise CorruptFileError(self.paths["addr"], "checksum does not match the manifest")
        self.addrs = np.fromfile(self.paths["addr"], dtype="<i8").astype(np.int64, copy=False)
        if info.count > 1 and not (np.diff(self.addrs) > 0).all():
            raise CorruptFileError(self.paths["addr"], "addresses are not strictly increasing")
        self._vec_file = open(self.paths["vec"], "rb")
        # Sizes as opened: a writer may retire (delete) these files while a reader still
        # serves them from its open descriptors and maps.
        self.file_bytes = {ext: path.stat().st_size for ext, path in self.paths.items()}
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
        return self.index_bytes if self.tier != "disk" else self.file_bytes["faiss"]

    # -- tiers -------------------------------------------------------------------------
    def open_index(self, tier: str) -> tuple[faiss.Index, faiss.IndexIVF]:
        """Load the index for `tier` without touching the shard: (search index, CPU index)."""
        path = str(self.paths["faiss"])
        try:
            cpu = faiss.read_index(path, faiss.IO_FLAG_MMAP if tier in ("disk", "gpu") else 0)
        except RuntimeError as exc:
            raise CorruptFileError(path, f"unreadable FAISS index ({exc})") from None
        if (
            not isinstance(cpu, faiss.IndexIVF)
            or cpu.d != self.dim
            or cpu.ntotal != self.info.count
            or cpu.nlist != int((self._router.groups == self.group).sum())
        ):
            raise CorruptFileError(
                path,
                f"expected an IVF index of dim {self.dim} holding "
                f"{self.info.count} vectors of group {self.group}",
            )
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
    def index_bytes(self) -> int:
        """Bytes the index occupies when held in RAM or on the GPU."""
        return self.file_bytes["faiss"] + self.addrs.nbytes

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
        nq, nprobe = local.shape
        scores = np.empty((nq, k), dtype=np.float32)
        addrs = np.empty((nq, k), dtype=np.int64)
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if selector is not None:
            params.sel = selector
        index.search_preassigned_c(
            nq,
            faiss.swig_ptr(queries),
            k,
            faiss.swig_ptr(local),
            faiss.swig_ptr(coarse),
            faiss.swig_ptr(scores),
            faiss.swig_ptr(addrs),
            False,
            params,
        )
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
        the kernel's page cache), so re-ranking never makes the file count against RSS.
        """
        if self._vec_map is None:  # an empty shard holds no vector to read
            return np.empty((0, self.dim), dtype=np.float32)
        rows = np.searchsorted(self.addrs, addrs)
        table = np.frombuffer(self._vec_map, dtype="<f4").reshape(-1, self.dim)
        out = table[rows].astype(np.float32)
        del table
        self._vec_map.madvise(mmap.MADV_DONTNEED)
        return out

    def all_vectors(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the .vec file (compaction streams through it)."""
        data = os.pread(
            self._vec_file.fileno(), 4 * self.dim * (stop - start), 4 * self.dim * start
        )
        return np.frombuffer(data, dtype="<f4").reshape(-1, self.dim).astype(np.float32)

    def close(self) -> None:
        self._index = self._cpu_index = None
        if self._vec_map is not None:
            self._vec_map.close()
        self._vec_file.close()


def _empty_hits(nq: int, k: int) -> ShardHits:
    """No candidates: FAISS's own padding (score -inf, address -1)."""
    return ShardHits(
        np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64), 0, 0
    )
