"""The router: the trained coarse quantizer, its partition groups, and the empty IVF index
every sealed shard is cut from (in FAISS terms the IVF "template"; the file names keep the
older name codec.faiss).

The router's centroids partition the vector space (IVF, Jegou et al. 2011). Partitions are
grouped by k-means over the centroids, so the nprobe partitions near a query tend to fall in
few groups. A sealed shard holds one group: an IVF index whose quantizer holds only that
group's centroids (a vector's nearest centroid overall is also its nearest within its own
group, so assignments and PQ residuals agree with the router's) and whose PQ codebook is the
one trained for the whole memory. A query's coarse assignment is computed once, by the router,
and handed to each shard in its local partition numbering (SPANN keeps its centroids in memory
the same way); no shard carries a copy of all the centroids.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ..errors import CorruptFileError
from ..fsutil import atomic_write_bytes
from ..integrity import check_checksum, sha256_file
from .codecs import IVF_PQ, PQ_NBITS, new_ivf, new_pq_template
from .ivf_file import IvfLayout, parse_ivf, read_index
from .plan import MAX_POINTS_PER_CENTROID, PQ_TRAIN_POINTS_PER_CENTROID

if TYPE_CHECKING:
    from ..manifest import RouterRecord

logger = logging.getLogger(__name__)

ROUTER_FILE = "codec.faiss"
GROUPS_FILE = "codec.groups.npy"
TRAIN_SEED = 1234  # k-means and training samples are seeded: a rebuild trains the same router
_NPY_HEADER_MAX = 4096  # bytes: a .npy header of one int64 vector is 128


def _serialize(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def training_sample(vectors: np.ndarray, n: int, seed: int = TRAIN_SEED) -> np.ndarray:
    """`n` rows drawn uniformly without replacement (all rows, in order, if there are fewer):
    the first rows of a corpus are often one source or one topic, not a sample of it."""
    if len(vectors) <= n:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), n, replace=False))
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def _kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Spherical k-means centroids (unit vectors: inner product = cosine)."""
    km = faiss.Kmeans(
        points.shape[1],
        k,
        niter=20,
        spherical=True,
        seed=seed,
        max_points_per_centroid=MAX_POINTS_PER_CENTROID,
        min_points_per_centroid=1,
    )
    km.train(np.ascontiguousarray(points, dtype=np.float32))
    return km.centroids


@dataclass(frozen=True)
class RouterInfo:
    """What the manifest records about the router files."""

    kind: str
    nlist: int
    groups: int
    sha256: str
    groups_sha256: str

    @classmethod
    def from_record(cls, record: RouterRecord) -> RouterInfo:
        """The part of the manifest's router record that describes the files."""
        return cls(record.kind, record.nlist, record.groups, record.sha256, record.groups_sha256)


class Router:
    """The coarse quantizer, its partition groups and the shard template."""

    def __init__(self, template: faiss.IndexIVF, groups: np.ndarray, kind: str) -> None:
        self.template = template
        self.kind = kind
        self.groups = groups  # partition -> group
        self.nlist: int = template.nlist  # read on every search: a plain int, not a SWIG call
        self.quantizer = faiss.downcast_index(template.quantizer)
        self.centroids = self.quantizer.reconstruct_n(0, template.nlist)
        # partition -> its number inside its group's shard index
        self.local = np.zeros(len(groups), dtype=np.int64)
        for g in range(self.n_groups):
            members = np.flatnonzero(groups == g)
            self.local[members] = np.arange(len(members))

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1

    @classmethod
    def train(
        cls,
        sample: np.ndarray,
        kind: str,
        nlist: int,
        pq_m: int,
        n_groups: int,
        seed: int = TRAIN_SEED,
    ) -> Router:
        """Train the router on `sample` (a random sample of the data, see `training_sample`)
        with `nlist` partitions as chosen by `plan.clamp_nlist`, and for IVF-PQ the codebook,
        on a random subset of 2**PQ_NBITS * PQ_TRAIN_POINTS_PER_CENTROID rows (see there)."""
        n, dim = sample.shape
        logger.info("training router: %d partitions on %d vectors (%s)", nlist, n, kind)
        centroids = _kmeans(sample, nlist, seed) if nlist > 1 else sample.mean(0, keepdims=True)
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(
            np.ascontiguousarray(centroids / np.linalg.norm(centroids, axis=1, keepdims=True))
        )
        if kind == IVF_PQ:
            template = new_pq_template(quantizer, nlist, pq_m)
            pq_points = PQ_TRAIN_POINTS_PER_CENTROID * (1 << PQ_NBITS)
            template.train(training_sample(sample, pq_points, seed + 2))
        else:
            template = new_ivf(kind, quantizer, nlist)
        template.own_fields = True
        quantizer.this.disown()  # the template owns and frees its quantizer
        n_groups = max(1, min(n_groups, nlist))
        if n_groups == 1:
            groups = np.zeros(nlist, dtype=np.int64)
        else:
            group_centres = faiss.IndexFlatIP(dim)
            group_centres.add(_kmeans(quantizer.reconstruct_n(0, nlist), n_groups, seed + 1))
            groups = group_centres.search(quantizer.reconstruct_n(0, nlist), 1)[1][:, 0]
            groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)  # no empty groups
        return cls(template, groups, kind)

    def route(self, queries: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The `nprobe` nearest partitions of each query: (similarities, partition ids)."""
        return self.quantizer.search(queries, min(nprobe, self.nlist))

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The partition of each vector."""
        return self.quantizer.search(vectors, 1)[1][:, 0]

    def empty_index(self) -> faiss.IndexIVF:
        """A copy of the trained, empty IVF index over all partitions (for comparing a plain
        FAISS IVF index against the memory on the same centroids)."""
        return faiss.clone_index(self.template)

    def new_shard_index(self, group: int) -> faiss.IndexIVF:
        """An empty trained IVF index over the partitions of `group` (local numbering)."""
        quantizer = faiss.IndexFlatIP(self.template.d)
        quantizer.add(np.ascontiguousarray(self.centroids[self.groups == group]))
        index = new_ivf(self.kind, quantizer, quantizer.ntotal, like=self.template)
        index.own_fields = True
        quantizer.this.disown()
        return index

    def local_assignment(self, lists: np.ndarray, group: int) -> np.ndarray:
        """Router partition ids -> `group`'s local ids, -1 where a partition is elsewhere
        (FAISS skips negative list numbers in search_preassigned)."""
        return np.where(self.groups[lists] == group, self.local[lists], -1)

    def save(self, directory: Path) -> RouterInfo:
        atomic_write_bytes(directory / ROUTER_FILE, _serialize(self.template))
        groups_path = directory / GROUPS_FILE
        groups = io.BytesIO()
        np.save(groups, self.groups, allow_pickle=False)
        atomic_write_bytes(groups_path, groups.getvalue())
        return RouterInfo(
            self.kind,
            self.nlist,
            self.n_groups,
            sha256_file(directory / ROUTER_FILE),
            sha256_file(groups_path),
        )

    @classmethod
    def load(cls, directory: Path, info: RouterInfo, dim: int) -> Router:
        """Read and validate the router files against the manifest's record: checksums
        first, then the structure (`ivf_file.parse_ivf`), so no read is larger than the file."""
        path, groups_path = directory / ROUTER_FILE, directory / GROUPS_FILE
        for p, expected in ((path, info.sha256), (groups_path, info.groups_sha256)):
            if not p.is_file():
                raise CorruptFileError(p, "missing")
            check_checksum(p, expected, always=True)
        layout = parse_ivf(path)
        if (layout.kind, layout.dim, layout.nlist, layout.ntotal) != (
            info.kind,
            dim,
            info.nlist,
            0,
        ):
            raise CorruptFileError(
                path,
                f"expected an empty {info.kind} index of dim {dim} with {info.nlist} partitions",
            )
        template = read_index(path, layout)
        if groups_path.stat().st_size > _NPY_HEADER_MAX + 8 * info.nlist:
            raise CorruptFileError(groups_path, f"larger than {info.nlist} partition groups")
        try:
            groups = np.load(groups_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CorruptFileError(groups_path, f"unreadable ({exc})") from None
        if (
            groups.shape != (info.nlist,)
            or groups.dtype != np.int64
            or groups.min() < 0
            or groups.max() != info.groups - 1
        ):
            raise CorruptFileError(groups_path, "partition groups do not match the codec")
        return cls(template, groups, info.kind)

    def check_shard_layout(self, path: Path, layout: IvfLayout, group: int) -> None:
        """A shard file of `group` must be cut from this router: same kind and dim, the
        group's centroids bit for bit, and for IVF-PQ the memory's codebook. A shard from
        another memory, or with a damaged quantizer, is refused before it is searched."""
        centroids = self.centroids[self.groups == group]
        if layout.kind != self.kind or layout.dim != self.template.d:
            raise CorruptFileError(
                path,
                f"a {layout.kind} index of dim {layout.dim}; this memory's shards are "
                f"{self.kind} of dim {self.template.d}",
            )
        if layout.centroids.shape != centroids.shape or not np.array_equal(
            layout.centroids.view(np.uint32), centroids.view(np.uint32)
        ):
            raise CorruptFileError(
                path,
                f"its quantizer is not the router's {len(centroids)} centroids of group {group}",
            )
        if self.kind == IVF_PQ:
            pq = self.template.pq
            codebook = faiss.vector_to_array(pq.centroids)
            if layout.pq is None or (layout.pq[0], layout.pq[1]) != (pq.M, pq.nbits):
                raise CorruptFileError(path, f"PQ parameters differ from the router's M={pq.M}")
            if not np.array_equal(layout.pq[2].view(np.uint32), codebook.view(np.uint32)):
                raise CorruptFileError(path, "its PQ codebook is not the router's")
