"""Reading a FAISS IVF file safely: its structure is parsed and checked before FAISS sees it.

FAISS trusts the lengths inside its files. One flipped byte in a list size or a vector length
makes `read_index` allocate that many entries (its deserialisation limit defaults to 1 TiB per
vector), and with IO_FLAG_MMAP it maps lists at offsets computed from those sizes without
comparing them to the file's length. So before a file goes to FAISS, `parse_ivf` walks the
layout FAISS writes for the indexes this package writes (faiss/impl/index_write.cpp: an
IndexIVFFlat "IwFl", IndexIVFScalarQuantizer "IwSq" (fp16 only) or IndexIVFPQ "IwPQ" over an
IndexFlatIP quantizer "IxFI", no direct map, array inverted lists "ilar") with every length
checked against the bytes the file has left, and requires the file to end exactly where the
layout does. Nothing is allocated from a length the file cannot hold; `read_index` then runs
with FAISS's own limit lowered to the file's size. The layout found is returned, so the caller
can compare it with what the manifest and the router say the file must be (`SealedShard` does:
kind, dim, count, partitions, centroids, PQ codebook, and every id against the shard's `.addr`).
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import CorruptFileError
from .codecs import IVF_FLAT, IVF_FP16, IVF_PQ

INDEX_FOURCC = {b"IwFl": IVF_FLAT, b"IwSq": IVF_FP16, b"IwPQ": IVF_PQ}
_QUANTIZER_FOURCC = b"IxFI"  # IndexFlat with METRIC_INNER_PRODUCT
_INVLISTS_FOURCC = b"ilar"
_HEADER_DUMMY = 1 << 20  # FAISS writes this constant twice in every index header
_METRIC_INNER_PRODUCT = 0
_limit_lock = threading.Lock()  # FAISS's deserialisation limit is one process-wide setting


@dataclass(frozen=True)
class IvfLayout:
    """What an IVF file holds, as parsed (offsets are bytes from the start of the file)."""

    kind: str  # one of codecs.SEALED_KINDS
    dim: int
    ntotal: int
    centroids: np.ndarray  # (nlist, dim) float32: the quantizer's
    code_size: int  # bytes per stored vector in the inverted lists
    pq: tuple[int, int, np.ndarray] | None  # (M, nbits, codebook floats) of an IVF-PQ file
    list_sizes: np.ndarray  # (nlist,) int64
    list_offsets: np.ndarray  # (nlist,) int64: where each list's codes start

    @property
    def nlist(self) -> int:
        return len(self.list_sizes)

    @property
    def derived_bytes(self) -> int:
        """The largest table FAISS derives on reading (IVF-PQ's precomputed table of
        nlist * M * 2**nbits floats, IndexIVFPQ.precompute_table); 0 for IVF-Flat."""
        return 0 if self.pq is None else 4 * self.nlist * (self.pq[0] << self.pq[1])


class _Reader:
    """Sequential reads of a file, each length checked against what the file has left."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd
        self.size = os.fstat(fd).st_size
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise CorruptFileError(
                self.path,
                f"{what} needs {n} bytes at offset {self.pos}, but the file has {self.size}",
            )
        data = os.pread(self.fd, n, self.pos)
        if len(data) != n:
            raise CorruptFileError(self.path, f"short read of {what} at offset {self.pos}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> int:
        """Step over `n` bytes without reading them; returns where they start."""
        start = self.pos
        if n < 0 or start + n > self.size:
            raise CorruptFileError(
                self.path, f"{what} needs {n} bytes at offset {start}, but the file has {self.size}"
            )
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def u64(self, what: str) -> int:
        return int(self.unpack("Q", what)[0])

    def expect(self, value: object, found: object, what: str) -> None:
        if found != value:
            raise CorruptFileError(self.path, f"{what} is {found!r}, expected {value!r}")

    def floats(self, what: str) -> np.ndarray:
        """A FAISS float vector: its length (floats), then the floats."""
        count = self.u64(f"{what} length")
        return np.frombuffer(self.take(4 * count, what), dtype="<f4").astype(np.float32)

    def index_header(self, what: str) -> tuple[int, int]:
        """FAISS's common index header: (d, ntotal); trained, inner product."""
        d, ntotal, dummy1, dummy2, trained, metric = self.unpack("iqqqBi", what)
        self.expect((_HEADER_DUMMY, _HEADER_DUMMY), (dummy1, dummy2), f"{what} reserved fields")
        self.expect(1, trained, f"{what} is_trained")
        self.expect(_METRIC_INNER_PRODUCT, metric, f"{what} metric")
        if d <= 0 or ntotal < 0:
            raise CorruptFileError(self.path, f"{what} has dim {d} and {ntotal} vectors")
        return d, ntotal


def parse_ivf(path: Path) -> IvfLayout:
    """The layout of the IVF file at `path`, every length checked against the file's size;
    CorruptFileError naming the file for anything else (another index type, another metric,
    a length the file cannot hold, bytes left over)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise CorruptFileError(path, "missing") from None
    try:
        return _parse(_Reader(path, fd))
    finally:
        os.close(fd)


def _parse(r: _Reader) -> IvfLayout:
    fourcc = r.take(4, "index type")
    if fourcc not in INDEX_FOURCC:
        raise CorruptFileError(r.path, f"index type {fourcc!r} is not one of {list(INDEX_FOURCC)}")
    kind = INDEX_FOURCC[fourcc]
    dim, ntotal = r.index_header("index header")
    nlist, _nprobe = r.unpack("QQ", "nlist, nprobe")
    r.expect(_QUANTIZER_FOURCC, r.take(4, "quantizer type"), "quantizer type")
    qdim, qtotal = r.index_header("quantizer header")
    r.expect((dim, nlist), (qdim, qtotal), "quantizer (dim, centroids)")
    centroids = r.floats("quantizer centroids")
    r.expect(nlist * dim, centroids.size, "quantizer centroid floats")
    r.expect(0, r.unpack("B", "direct map type")[0], "direct map type")
    r.expect(0, r.u64("direct map length"), "direct map length")
    pq = None
    code_size = 4 * dim
    if kind == IVF_FP16:
        code_size = _fp16_codes(r, dim)
    if kind == IVF_PQ:
        r.expect(1, r.unpack("B", "by_residual")[0], "by_residual")
        code_size = r.u64("code size")
        pq_dim, m, nbits = r.unpack("QQQ", "PQ (d, M, nbits)")
        if pq_dim != dim or not (0 < m <= dim and dim % m == 0 and 0 < nbits <= 16):
            raise CorruptFileError(r.path, f"PQ d={pq_dim}, M={m}, nbits={nbits} for dim {dim}")
        r.expect((m * nbits + 7) // 8, code_size, "PQ code size")
        codebook = r.floats("PQ codebook")
        r.expect(dim << nbits, codebook.size, "PQ codebook floats")
        pq = (m, nbits, codebook)
    r.expect(_INVLISTS_FOURCC, r.take(4, "inverted lists type"), "inverted lists type")
    r.expect((nlist, code_size), r.unpack("QQ", "inverted lists (nlist, code size)"), "lists")
    sizes = _list_sizes(r, nlist)
    r.expect(ntotal, int(sizes.sum()), "vectors in the inverted lists")
    offsets = np.zeros(nlist, dtype=np.int64)
    for i in np.flatnonzero(sizes):
        offsets[i] = r.skip(int(sizes[i]) * (code_size + 8), f"inverted list {i}")
    if r.pos != r.size:
        raise CorruptFileError(r.path, f"{r.size - r.pos} bytes after the end of the index")
    return IvfLayout(
        kind, dim, ntotal, centroids.reshape(nlist, dim), code_size, pq, sizes, offsets
    )


def _fp16_codes(r: _Reader, dim: int) -> int:
    """The scalar quantizer of an IVF-fp16 file (faiss/impl/index_write.cpp,
    write_ScalarQuantizer, then the code size and by_residual): fp16, nothing trained, 2 bytes
    per dimension, no residual. Returns the code size."""
    qtype, _rangestat, _rangestat_arg = r.unpack("iif", "scalar quantizer type and range")
    r.expect(faiss.ScalarQuantizer.QT_fp16, qtype, "scalar quantizer type")
    sizes = r.unpack("QQ", "scalar quantizer (d, code size)")
    r.expect((dim, 2 * dim), sizes, "scalar quantizer (d, code size)")
    r.expect(0, r.floats("scalar quantizer training").size, "scalar quantizer trained floats")
    r.expect(2 * dim, r.u64("code size"), "code size")
    r.expect(0, r.unpack("B", "by_residual")[0], "by_residual")
    return 2 * dim


def _list_sizes(r: _Reader, nlist: int) -> np.ndarray:
    """The lists' sizes: "full" (one per list) or "sprs" ((list, size) pairs, non-empty only)."""
    list_type = r.take(4, "list size format")
    count = r.u64("list size vector length")
    raw = np.frombuffer(r.take(8 * count, "list sizes"), dtype="<u8")
    if (raw > r.size).any():  # each entry counts vectors or lists: none exceeds the bytes
        raise CorruptFileError(r.path, "a list size exceeds what the file can hold")
    raw = raw.astype(np.int64)
    if list_type == b"full":
        r.expect(nlist, count, "list size vector length")
        return raw
    if list_type != b"sprs" or count % 2:
        raise CorruptFileError(r.path, f"list size format {list_type!r} with {count} entries")
    lists, sizes = raw[0::2], raw[1::2]
    if (lists >= nlist).any() or (np.diff(lists) <= 0).any() or (sizes <= 0).any():
        raise CorruptFileError(r.path, "sparse list sizes are out of order or out of range")
    full = np.zeros(nlist, dtype=np.int64)
    full[lists] = sizes
    return full


def list_ids(path: Path, layout: IvfLayout) -> np.ndarray:
    """Every id stored in the inverted lists, list after list (8 bytes per vector read)."""
    parts = []
    with open(path, "rb") as f:
        for i in np.flatnonzero(layout.list_sizes):
            n = int(layout.list_sizes[i])
            data = os.pread(f.fileno(), 8 * n, int(layout.list_offsets[i]) + n * layout.code_size)
            if len(data) != 8 * n:
                raise CorruptFileError(path, f"short read of inverted list {i}'s ids")
            parts.append(np.frombuffer(data, dtype="<i8"))
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def read_index(path: Path, layout: IvfLayout, flags: int = 0) -> faiss.Index:
    """faiss.read_index of a file parsed as `layout` (`parse_ivf`), with FAISS's per-vector
    deserialisation limit lowered for the call to what the file can hold: its size, or the
    table FAISS derives from what it holds if larger. RuntimeError and MemoryError become
    CorruptFileError naming the file."""
    # + 4: FAISS requires each vector to be strictly below the limit
    limit = max(path.stat().st_size, layout.derived_bytes) + 4
    with _limit_lock:
        previous = faiss.get_deserialization_vector_byte_limit()
        faiss.set_deserialization_vector_byte_limit(limit)
        try:
            return faiss.read_index(str(path), flags)
        except (RuntimeError, MemoryError) as exc:
            raise CorruptFileError(path, f"unreadable FAISS index ({exc})") from None
        finally:
            faiss.set_deserialization_vector_byte_limit(previous)
