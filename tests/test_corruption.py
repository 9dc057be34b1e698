"""Damaged files are refused on open with an error naming the file; nothing is unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import build_sealed_memory, unit_vectors

from rag_memory import CorruptFileError, Memory


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    path = tmp_path / "m"
    with Memory.create(path, dim=8) as mem:
        mem.add([f"t{i}" for i in range(300)], vectors=unit_vectors(300, 8))
    return path


def _edit_manifest(path: Path, **changes) -> None:
    """A manifest that says something else but is otherwise well formed: without its own
    checksum (as older manifests are), so the structural checks below are what refuse it."""
    data = json.loads((path / "manifest.json").read_text())
    data.pop("checksum", None)
    data.update(changes)
    (path / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "manifest.json").write_bytes(b"\xff\xfe\x00"), "not valid JSON"),
        (lambda p: (p / "manifest.json").write_text("[1, 2]"), "JSON object"),
        (lambda p: _edit_manifest(p, format_version=99), "format_version 99"),
        (lambda p: _edit_manifest(p, format="chroma"), "format"),
        (lambda p: _edit_manifest(p, dim="8"), "'dim' must be int"),
        (lambda p: _edit_manifest(p, dim=12), "dim 8 does not match"),
        (lambda p: _edit_manifest(p, extra=1), "unknown keys ['extra']"),
        (lambda p: _edit_manifest(p, shards=[{"shard_id": 1}]), "shards[0]"),
        (lambda p: _edit_manifest(p, metric="l2"), "metric"),
    ],
)
def test_bad_manifest(stored: Path, damage, message: str) -> None:
    damage(stored)
    with pytest.raises(CorruptFileError) as info:
        Memory.open(stored)
    assert info.value.path.name in ("manifest.json", "slots.sqlite")
    assert message in str(info.value)


def test_truncated_sqlite(stored: Path) -> None:
    db = stored / "slots.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError, match="slots.sqlite"):
        Memory.open(stored)


def test_garbage_sqlite(stored: Path) -> None:
    (stored / "slots.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptFileError, match="slots.sqlite: not an SQLite database"):
        Memory.open(stored)


def test_missing_sqlite(stored: Path) -> None:
    (stored / "slots.sqlite").unlink()
    with pytest.raises(CorruptFileError, match="slots.sqlite: missing"):
        Memory.open(stored)


def _tamper(stored: Path, sql: str, params=()) -> None:
    conn = sqlite3.connect(stored / "slots.sqlite")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_bad_vector_blob(stored: Path) -> None:
    _tamper(stored, "UPDATE vectors SET vector = ? WHERE addr = 7", (b"\x00" * 5,))
    with pytest.raises(CorruptFileError, match="slot address 7: vector blob holds 5 bytes"):
        Memory.open(stored)


def test_nan_vector_blob(stored: Path) -> None:
    _tamper(
        stored,
        "UPDATE vectors SET vector = ? WHERE addr = 3",
        (np.full(8, np.nan, dtype="<f4").tobytes(),),
    )
    with pytest.raises(CorruptFileError, match="NaN"):
        Memory.open(stored)


def test_count_mismatch(stored: Path) -> None:
    _tamper(stored, "UPDATE meta SET value = 5 WHERE key = 'live'")
    with pytest.raises(CorruptFileError, match="slot count 5"):
        Memory.open(stored)


def test_failed_open_releases_the_writer_lock(stored: Path) -> None:
    _tamper(stored, "UPDATE meta SET value = 5 WHERE key = 'live'")
    with pytest.raises(CorruptFileError):
        Memory.open(stored)
    _tamper(stored, "UPDATE meta SET value = 300 WHERE key = 'live'")
    with Memory.open(stored) as mem:
        assert len(mem) == 300


# -- sealed shards: every file a memory reads is verified (issue #12, defects 3, 4, 8, 11) ----


@pytest.fixture(params=["ivf_flat", "ivf_pq"])
def sealed(request, tmp_path: Path) -> Path:
    path = tmp_path / request.param
    build_sealed_memory(path, request.param)
    return path


def _shard(path: Path, shard_id: int = 1, ext: str = "faiss") -> Path:
    return path / "shards" / f"{shard_id:06d}.{ext}"


def _patch(file: Path, offset: int, data: bytes) -> None:
    raw = bytearray(file.read_bytes())
    raw[offset : offset + len(data)] = data
    file.write_bytes(bytes(raw))


def _addrs(path: Path, shard_id: int) -> np.ndarray:
    return np.fromfile(_shard(path, shard_id, "addr"), dtype="<i8")


def _id_offset(file: Path, addr: int) -> int:
    """Where the int64 id `addr` sits in a shard's inverted lists (ids follow the codes)."""
    offset = file.read_bytes().rfind(struct.pack("<q", int(addr)))
    assert offset > 0
    return offset


def _open_and_read(path: Path) -> None:
    with Memory.open(path, read_only=True) as mem:
        mem.search(unit_vectors(4, 16, seed=3), k=10)
        for _ in mem.iter_vectors():
            pass


def test_faiss_id_swapped_for_another_slot(sealed: Path) -> None:
    """The id of one vector overwritten with another live slot's address: an exact match
    for the first would answer the second at score 1.0."""
    faiss_file = _shard(sealed)
    victim, other = _addrs(sealed, 1)[3], _addrs(sealed, 2)[-1]
    _patch(faiss_file, _id_offset(faiss_file, victim), struct.pack("<q", int(other)))
    with pytest.raises(CorruptFileError) as info:
        _open_and_read(sealed)
    assert info.value.path == faiss_file


def test_faiss_id_missing_from_addr(sealed: Path) -> None:
    """An id that .addr does not hold (a raw IndexError in IVF-PQ re-ranking before)."""
    faiss_file = _shard(sealed)
    victim = _addrs(sealed, 1)[5]
    _patch(faiss_file, _id_offset(faiss_file, victim), struct.pack("<q", 10**9))
    with pytest.raises(CorruptFileError) as info:
        _open_and_read(sealed)
    assert info.value.path == faiss_file


@pytest.mark.parametrize(
    "where",
    ["ntotal", "list_sizes", "quantizer", "code", "truncated", "extended", "zeroed"],
)
def test_faiss_damage_is_refused(sealed: Path, where: str) -> None:
    faiss_file = _shard(sealed, 3)
    data = faiss_file.read_bytes()
    ilar = data.find(b"ilar")
    if where == "ntotal":
        _patch(faiss_file, 8, struct.pack("<q", 391 + 1))
    elif where == "list_sizes":  # the first list's size in the "full" size vector
        _patch(faiss_file, ilar + 32, struct.pack("<Q", 1))
    elif where == "quantizer":  # one float of the shard's own centroids
        _patch(faiss_file, data.find(b"IxFI") + 4 + 33 + 8 + 21, b"\x5a")
    elif where == "code":  # a byte of the first inverted list's codes
        nlist = struct.unpack_from("<Q", data, ilar + 4)[0]
        assert data[ilar + 20 : ilar + 24] == b"full"
        first_codes = ilar + 24 + 8 + 8 * nlist + 2  # after the list-size vector
        _patch(faiss_file, first_codes, bytes([data[first_codes] ^ 0x10]))
    elif where == "truncated":
        faiss_file.write_bytes(data[:-9])
    elif where == "extended":
        faiss_file.write_bytes(data + b"\x00" * 16)
    else:
        faiss_file.write_bytes(b"\x00" * len(data))
    with pytest.raises(CorruptFileError) as info:
        _open_and_read(sealed)
    assert info.value.path == faiss_file


def test_faiss_missing(sealed: Path) -> None:
    _shard(sealed, 2).unlink()
    with pytest.raises(CorruptFileError, match="000002.faiss: missing"):
        Memory.open(sealed, read_only=True)


def test_faiss_of_another_kind(tmp_path: Path) -> None:
    """A shard file copied from a memory of the other kind (same dim, same partitions) is
    refused, not searched with wrong scores."""
    flat, pq = tmp_path / "flat", tmp_path / "pq"
    build_sealed_memory(flat, "ivf_flat")
    build_sealed_memory(pq, "ivf_pq")
    shutil.copyfile(_shard(pq, 1), _shard(flat, 1))
    with pytest.raises(CorruptFileError) as info:
        _open_and_read(flat)
    assert info.value.path == _shard(flat, 1)


_BOUNDED_OPEN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from rag_memory import CorruptFileError, Memory
try:
    Memory.open(sys.argv[1], read_only=True).close()
    print("opened")
except CorruptFileError as exc:
    print("CorruptFileError", exc.path.name)
except BaseException as exc:
    print("raw", type(exc).__name__)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)
"""


def _open_bounded(path: Path) -> str:
    """Open `path` in a child under a 3 GiB address-space limit: what it raised, once its
    peak RSS is checked to stay under 1 GiB."""
    out = subprocess.run(
        [sys.executable, "-c", _BOUNDED_OPEN, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = out.stdout.split("\n")
    assert len(lines) > 2 and int(lines[1]) < 1024, out.stdout + out.stderr  # MiB
    return lines[0]


@pytest.mark.parametrize("target", ["size_vector", "list_size", "quantizer"])
def test_allocation_is_bounded_by_the_file(sealed: Path, target: str) -> None:
    """One crafted length (the list-size vector's, one list's size, the quantizer's code
    count) must not make FAISS allocate gigabytes: a CorruptFileError, RSS bounded."""
    faiss_file = _shard(sealed, 3)
    data = faiss_file.read_bytes()
    ilar = data.find(b"ilar")
    if target == "size_vector":
        _patch(faiss_file, ilar + 24, struct.pack("<Q", 1 << 31))
    elif target == "list_size":
        _patch(faiss_file, ilar + 32, struct.pack("<Q", 1 << 28))
    else:
        _patch(faiss_file, data.find(b"IxFI") + 4 + 33, struct.pack("<Q", 1 << 29))
    assert _open_bounded(sealed) == f"CorruptFileError {faiss_file.name}"


def test_router_read_is_bounded(sealed: Path) -> None:
    """codec.faiss is checksummed; even a crafted one whose checksum was rewritten to match is
    read within what the file holds."""
    codec = sealed / "shards" / "codec.faiss"
    _patch(codec, codec.read_bytes().find(b"IxFI") + 4 + 33, struct.pack("<Q", 1 << 29))
    data = json.loads((sealed / "manifest.json").read_text())
    data["codec"]["sha256"] = hashlib.sha256(codec.read_bytes()).hexdigest()
    data.pop("checksum", None)
    (sealed / "manifest.json").write_text(json.dumps(data))
    assert _open_bounded(sealed) == "CorruptFileError codec.faiss"


def _vec_rows(path: Path, shard_id: int) -> np.ndarray:
    return np.fromfile(_shard(path, shard_id, "vec"), dtype="<f4").reshape(-1, 16)


def _drop_recorded_checksums(path: Path) -> None:
    """A manifest as written before .faiss / .vec checksums were recorded."""
    data = json.loads((path / "manifest.json").read_text())
    data.pop("checksum", None)
    for shard in data["shards"]:
        shard.pop("faiss_sha256", None)
        shard.pop("vec_sha256", None)
    (path / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize("damage", ["nan", "zeros", "reversed", "scaled"])
def test_vec_damage_is_refused(sealed: Path, damage: str) -> None:
    rows = _vec_rows(sealed, 2)
    if damage == "nan":
        rows[4] = np.nan
    elif damage == "zeros":
        rows[4] = 0
    elif damage == "reversed":
        rows = rows[::-1]
    else:
        rows[4] *= 1e3
    rows.astype("<f4").tofile(_shard(sealed, 2, "vec"))
    with pytest.raises(CorruptFileError) as info:
        _open_and_read(sealed)
    assert info.value.path == _shard(sealed, 2, "vec")


@pytest.mark.parametrize("damage", ["nan", "zeros", "scaled"])
def test_vec_damage_without_recorded_checksum(sealed: Path, damage: str) -> None:
    """An older manifest records no .vec checksum: rows are still checked when read."""
    _drop_recorded_checksums(sealed)
    rows = _vec_rows(sealed, 2)
    rows[4] = {"nan": np.nan, "zeros": 0.0, "scaled": 3.0}[damage] * (damage != "zeros")
    rows.astype("<f4").tofile(_shard(sealed, 2, "vec"))
    with pytest.raises(CorruptFileError) as info:
        with Memory.open(sealed, read_only=True) as mem:
            for _ in mem.iter_vectors():
                pass
    assert info.value.path == _shard(sealed, 2, "vec")


def test_old_manifest_without_checksums_opens(sealed: Path) -> None:
    with Memory.open(sealed, read_only=True) as mem:
        before = [(h.id, h.score) for h in mem.search(unit_vectors(1, 16, seed=4)[0], k=5)]
    _drop_recorded_checksums(sealed)
    with Memory.open(sealed) as mem:
        assert [(h.id, h.score) for h in mem.search(unit_vectors(1, 16, seed=4)[0], k=5)] == (
            before
        )


def test_manifest_edit_is_refused(sealed: Path) -> None:
    """A changed setting (nprobe) would change answers silently: the manifest's own checksum."""
    text = (sealed / "manifest.json").read_text()
    (sealed / "manifest.json").write_text(text.replace('"nprobe": 32', '"nprobe": 3'))
    with pytest.raises(CorruptFileError, match="manifest.json: checksum"):
        Memory.open(sealed, read_only=True)


def test_growing_blob_off_unit_norm(stored: Path) -> None:
    """A finite but huge float (1e19) would make that slot the top hit of half the queries."""
    row = unit_vectors(300, 8)[11].copy()
    row[2] = 1e19
    _tamper(stored, "UPDATE vectors SET vector = ? WHERE addr = 12", (row.astype("<f4").tobytes(),))
    with pytest.raises(CorruptFileError, match="slot address 12: .*unit"):
        Memory.open(stored)


def test_reranking_an_unknown_address_is_a_clean_error(tmp_path: Path) -> None:
    """IVF-PQ re-ranking asked for an address the shard does not hold: a CorruptFileError
    (not a raw IndexError), and the shard still closes (no BufferError from its mmap)."""
    build_sealed_memory(tmp_path / "pq", "ivf_pq")
    mem = Memory.open(tmp_path / "pq")
    shard = mem.index.sealed_shards[0]
    with pytest.raises(CorruptFileError):
        shard.vectors_of(np.array([10**9], dtype=np.int64))
    mem.close()
    with Memory.open(tmp_path / "pq") as again:  # the writer lock was released
        assert len(again) == 1192
