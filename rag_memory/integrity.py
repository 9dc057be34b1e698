"""The rules every file a memory reads back is checked by: checksums, and what a stored
vector must be.

Two depths of checking, chosen per file by its size:

- a file of at most VERIFY_AT_OPEN_BYTES is hashed (SHA-256) at open and compared with the
  checksum the manifest recorded for it, so any damage, down to one flipped bit, is a
  `CorruptFileError` before a search can read it;
- a larger file gets the cheap structural checks at open only (sizes, headers, ids, see
  `index/ivf_file.py`), and the rows read later are checked as they are read
  (`check_unit_rows`); `rag-memory verify DIR` (`verify.py`) hashes and checks every file
  whatever its size.

Hashing costs about 1 s per GiB on one core here, and a disk-tier shard is memory-mapped so
that its unprobed lists are never read: hashing it on every open would read it all. 64 MiB
keeps a full open-time check under ~0.1 s per file while covering every shard of a small or
medium memory (a seal of 100,000 384-d vectors writes ~150 MiB in all, split over its groups).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .errors import CorruptFileError

VERIFY_AT_OPEN_BYTES = 64 << 20
# Stored vectors are unit rows (validation renormalises any row more than 1e-5 off), so a
# stored norm further than this from 1 is damage (a flipped exponent or sign-bit pattern,
# zeros, NaN); the slack over 1e-5 absorbs float32 rounding of the norm itself. A flip in a
# low mantissa bit keeps the norm: that is what the checksums are for.
STORED_NORM_TOLERANCE = 1e-4
_HASH_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in blocks (bounded memory whatever its size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def hashed_at_open(path: Path) -> bool:
    """Whether `path` is small enough to be checked in full at every open."""
    return path.stat().st_size <= VERIFY_AT_OPEN_BYTES


def check_checksum(path: Path, expected: str | None, always: bool = False) -> None:
    """Compare `path`'s SHA-256 with the one recorded (None: not recorded, e.g. a manifest
    written before it was; nothing to compare). Files larger than VERIFY_AT_OPEN_BYTES are
    hashed only when `always` (the verify step)."""
    if expected is None or not (always or hashed_at_open(path)):
        return
    if sha256_file(path) != expected:
        raise CorruptFileError(path, "checksum does not match the manifest")


def unit_rows_problem(vectors: np.ndarray) -> tuple[int, str] | None:
    """(first bad row, what is wrong with it) unless every row of `vectors` (n, dim) is a
    finite unit vector; then None."""
    if not len(vectors):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    bad = ~(np.abs(norms - 1.0) <= STORED_NORM_TOLERANCE)  # NaN compares False: bad too
    if not bad.any():
        return None
    row = int(np.argmax(bad))
    what = (
        "holds NaN or inf" if not np.isfinite(vectors[row]).all() else f"has norm {norms[row]:.6g}"
    )
    return row, f"{what}, not a unit vector (tolerance {STORED_NORM_TOLERANCE})"


def check_unit_rows(vectors: np.ndarray, path: Path, where: str, first_row: int = 0) -> None:
    """CorruptFileError naming `path`, `where` and the row (numbered from `first_row`) unless
    every row of `vectors` is a finite unit vector."""
    problem = unit_rows_problem(vectors)
    if problem is not None:
        raise CorruptFileError(path, f"{where}: row {first_row + problem[0]} {problem[1]}")
