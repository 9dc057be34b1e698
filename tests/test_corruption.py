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
from click.testing import CliRunner
from helpers import build_sealed_memory, unit_vectors

from rag_memory import CorruptFileError, Memory, integrity
from rag_memory.cli import main
from rag_memory.index.codecs import SEALED_KINDS
from rag_memory.store.slot_table import row_checksum
from rag_memory.verify import verify_memory


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
        (lambda p: _edit_manifest(p, lexical={"tokenizer": "x'y"}), "lexical: "),
        (lambda p: _edit_manifest(p, lexical=[1]), "'lexical' must be"),
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


@pytest.fixture(scope="module")
def sealed_clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean sealed memory of each kind, built once: tests damage copies."""
    root = tmp_path_factory.mktemp("sealed")
    for kind in SEALED_KINDS:
        build_sealed_memory(root / kind, kind)
    return root


@pytest.fixture(params=SEALED_KINDS)
def sealed(request, sealed_clean: Path, tmp_path: Path) -> Path:
    path = tmp_path / request.param
    shutil.copytree(sealed_clean / request.param, path)
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


def _first_code_offset(data: bytes) -> int:
    """A byte of the first inverted list's codes: they follow the "full" list-size vector."""
    ilar = data.find(b"ilar")
    nlist = struct.unpack_from("<Q", data, ilar + 4)[0]
    assert data[ilar + 20 : ilar + 24] == b"full"
    return ilar + 24 + 8 + 8 * nlist + 2


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
        code = _first_code_offset(data)
        _patch(faiss_file, code, bytes([data[code] ^ 0x10]))
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


def test_faiss_of_another_kind(sealed_clean: Path, tmp_path: Path) -> None:
    """A shard file copied from a memory of the other kind (same dim, same partitions) is
    refused, not searched with wrong scores."""
    flat = tmp_path / "flat"
    shutil.copytree(sealed_clean / "ivf_flat", flat)
    shutil.copyfile(_shard(sealed_clean / "ivf_pq", 1), _shard(flat, 1))
    with pytest.raises(CorruptFileError) as info:
        _open_and_read(flat)
    assert info.value.path == _shard(flat, 1)


_BOUNDED_OPEN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from rag_memory import CorruptFileError, Memory
from rag_memory.resources import peak_rss_bytes
for path in sys.argv[1:]:
    try:
        Memory.open(path, read_only=True).close()
        print("opened")
    except CorruptFileError as exc:
        print("CorruptFileError", exc.path.name)
    except BaseException as exc:
        print("raw", type(exc).__name__)
print(peak_rss_bytes() >> 20)  # VmHWM: ru_maxrss would carry pytest's own peak over
"""


def _craft_length(path: Path, target: str) -> str:
    """Write one huge length into a file of the memory at `path`; the file's name."""
    faiss_file = _shard(path, 3)
    data = faiss_file.read_bytes()
    ilar = data.find(b"ilar")
    if target == "size_vector":  # the list-size vector's length
        _patch(faiss_file, ilar + 24, struct.pack("<Q", 1 << 31))
    elif target == "list_size":  # one list's size
        _patch(faiss_file, ilar + 32, struct.pack("<Q", 1 << 28))
    elif target == "quantizer":  # the shard quantizer's float count
        _patch(faiss_file, data.find(b"IxFI") + 4 + 33, struct.pack("<Q", 1 << 29))
    else:  # the router's, its checksum rewritten to match: read bounded all the same
        faiss_file = path / "shards" / "codec.faiss"
        _patch(faiss_file, faiss_file.read_bytes().find(b"IxFI") + 37, struct.pack("<Q", 1 << 29))
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["codec"]["sha256"] = hashlib.sha256(faiss_file.read_bytes()).hexdigest()
        manifest.pop("checksum", None)
        (path / "manifest.json").write_text(json.dumps(manifest))
    return faiss_file.name


def test_allocation_is_bounded_by_the_file(sealed_clean: Path, tmp_path: Path) -> None:
    """One crafted length must not make FAISS allocate gigabytes (RSS grew past 3 GiB, or a
    raw MemoryError): each open, in one child under a 3 GiB address-space limit, raises a
    CorruptFileError naming the file, and the child's peak RSS stays under 1 GiB."""
    paths, expected = [], []
    for target in ("size_vector", "list_size", "quantizer", "router"):
        for kind in SEALED_KINDS:
            copy = tmp_path / f"{kind}-{target}"
            shutil.copytree(sealed_clean / kind, copy)
            expected.append(f"CorruptFileError {_craft_length(copy, target)}")
            paths.append(str(copy))
    out = subprocess.run(
        [sys.executable, "-c", _BOUNDED_OPEN, *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = out.stdout.split("\n")
    assert lines[: len(paths)] == expected, out.stdout + out.stderr
    assert int(lines[len(paths)]) < 1024  # MiB


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
    assert '"nprobe": null' in text
    (sealed / "manifest.json").write_text(text.replace('"nprobe": null', '"nprobe": 3'))
    with pytest.raises(CorruptFileError, match="manifest.json: checksum"):
        Memory.open(sealed, read_only=True)


def test_growing_blob_off_unit_norm(stored: Path) -> None:
    """A finite but huge float (1e19) would make that slot the top hit of half the queries."""
    row = unit_vectors(300, 8)[11].copy()
    row[2] = 1e19
    _tamper(stored, "UPDATE vectors SET vector = ? WHERE addr = 12", (row.astype("<f4").tobytes(),))
    with pytest.raises(CorruptFileError, match="slot address 12: .*unit"):
        Memory.open(stored)


def test_reranking_an_unknown_address_is_a_clean_error(sealed_clean: Path, tmp_path: Path) -> None:
    """IVF-PQ re-ranking asked for an address the shard does not hold: a CorruptFileError
    (not a raw IndexError), and the shard still closes (no BufferError from its mmap)."""
    shutil.copytree(sealed_clean / "ivf_pq", tmp_path / "pq")
    mem = Memory.open(tmp_path / "pq")
    shard = mem.index.sealed_shards[0]
    with pytest.raises(CorruptFileError):
        shard.vectors_of(np.array([10**9], dtype=np.int64))
    mem.close()
    with Memory.open(tmp_path / "pq") as again:  # the writer lock was released
        assert len(again) == 1192


# -- slots.sqlite rows carry checksums: a flipped byte in a cell is an error, not an answer --


def _flip_in_file(file: Path, needle: bytes, at: int) -> None:
    data = file.read_bytes()
    offset = data.find(needle)
    assert offset >= 0 and data.count(needle) == 1
    _patch(file, offset + at, bytes([data[offset + at] ^ 0x01]))


@pytest.mark.parametrize("needle, at", [(b"t137", 2), (b'{"n": 5}', 6), (b"s42t42", 1)])
def test_sqlite_cell_flip_is_refused(tmp_path: Path, needle: bytes, at: int) -> None:
    """A flipped byte inside a text, metadata or id cell of slots.sqlite."""
    path = tmp_path / "m"
    with Memory.create(path, dim=8) as mem:
        mem.add(
            [f"t{i}" for i in range(300)],
            ids=[f"s{i}" for i in range(300)],
            metadata=[{"n": i} for i in range(300)],
            vectors=unit_vectors(300, 8),
        )
    _flip_in_file(path / "slots.sqlite", needle, at)
    problem = r"slots.sqlite: (slot address \d+: .*checksum|integrity check failed)"
    with pytest.raises(CorruptFileError, match=problem):
        with Memory.open(path, read_only=True) as mem:
            for _ in mem.iter_vectors():
                pass


def test_growing_vector_low_bit_flip_is_refused(stored: Path) -> None:
    """A flip in a float's lowest mantissa bit keeps the norm: only the checksum sees it."""
    conn = sqlite3.connect(stored / "slots.sqlite")
    blob = bytearray(conn.execute("SELECT vector FROM vectors WHERE addr = 20").fetchone()[0])
    conn.close()
    _flip_in_file(stored / "slots.sqlite", bytes(blob), 0)
    with pytest.raises(CorruptFileError, match="slot address 20: .*checksum"):
        Memory.open(stored, read_only=True)


def _as_schema(path: Path, schema: int) -> None:
    """Turn a slot table back into one of an older schema: 2 has no write times, expiry or
    dedupe keys; 1 not even row checksums."""
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX slots_expiry")
    conn.execute("DROP INDEX slots_text_key")
    for column in ("written_at", "expires_at", "text_key"):
        conn.execute(f"ALTER TABLE slots DROP COLUMN {column}")
    if schema == 1:
        conn.execute("ALTER TABLE slots DROP COLUMN checksum")
        conn.execute("ALTER TABLE vectors DROP COLUMN checksum")
    else:  # schema 2 checksums cover the row's cells without times
        rows = conn.execute("SELECT addr, id, text, metadata FROM slots").fetchall()
        conn.executemany(
            "UPDATE slots SET checksum = ? WHERE addr = ?",
            [(row_checksum(*row), row[0]) for row in rows],
        )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (schema,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("schema", [1, 2])
def test_older_schema_table_opens_and_is_upgraded(stored: Path, schema: int) -> None:
    """A slot table written before row checksums (schema 1) or before write times (schema 2)
    opens read-only and as writer; the writer upgrades it to the current schema, its old
    rows keep verifying (no write time, never expire), rows written from then on carry
    checksums and times, and exact dedupe finds the old rows."""
    with Memory.open(stored, read_only=True) as mem:
        before = [(h.id, h.score) for h in mem.search(unit_vectors(1, 8, seed=5)[0], k=5)]
        old_text = mem.get(before[0][0])[0].text
    _as_schema(stored / "slots.sqlite", schema)
    with Memory.open(stored, read_only=True) as mem:
        hits = mem.search(unit_vectors(1, 8, seed=5)[0], k=5)
        assert [(h.id, h.score) for h in hits] == before
        assert {h.written_at for h in hits} == {None}
    with Memory.open(stored) as mem:
        mem.add(["fresh"], ids=["fresh"], vectors=unit_vectors(1, 8, seed=6), timestamps=[7.0])
        twin = mem.add([old_text.upper()], vectors=unit_vectors(1, 8, seed=7), dedupe="exact")
        assert twin == [before[0][0]] and twin.merged == {0: before[0][0]}
    conn = sqlite3.connect(stored / "slots.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == 3
    assert conn.execute("SELECT checksum FROM slots WHERE id = 'fresh'").fetchone()[0] is not None
    conn.close()
    with Memory.open(stored, read_only=True) as mem:
        assert len(mem) == 301 and mem.get(["fresh"])[0].written_at == 7.0
        assert mem.get(before[1][0])[0].written_at is None
    assert verify_memory(stored).ok


# -- rag-memory verify DIR: everything, whatever its size ---------------------------------


def test_verify_clean_memory(sealed: Path) -> None:
    result = CliRunner().invoke(main, ["verify", str(sealed)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(": ok")


def test_verify_names_every_damaged_file(sealed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files above the open-time hashing threshold (here: all of them) open on structural
    checks alone; the verify step hashes them and names each damaged one."""
    monkeypatch.setattr(integrity, "VERIFY_AT_OPEN_BYTES", 0)
    vec = _shard(sealed, 2, "vec")
    rows = _vec_rows(sealed, 2)
    rows[[0, 1]] = rows[[1, 0]]  # two rows swapped: unit norms, right size
    rows.tofile(vec)
    faiss_file = _shard(sealed, 4)
    data = faiss_file.read_bytes()
    code = _first_code_offset(data)
    _patch(faiss_file, code, bytes([data[code] ^ 0x04]))
    _open_and_read(sealed)  # structurally sound: opens (answers may differ)
    result = CliRunner().invoke(main, ["verify", str(sealed)])
    assert result.exit_code == 1, result.output
    damaged = [line for line in result.output.splitlines() if line.startswith("damaged: ")]
    assert len(damaged) == 2 and str(vec) in result.output and str(faiss_file) in result.output
    report = verify_memory(sealed)
    assert sorted(report.damaged_files()) == sorted([faiss_file, vec])


def test_verify_runs_sqlite_integrity_check(stored: Path) -> None:
    """A slot table whose index disagrees with its rows (found by PRAGMA integrity_check)."""
    conn = sqlite3.connect(stored / "slots.sqlite")
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, 'slots(id)', 'slots(text)') "
        "WHERE name = 'slots_live_id'"
    )
    conn.commit()
    conn.close()
    report = verify_memory(stored)
    assert not report.ok and report.damaged_files() == [stored / "slots.sqlite"]
    assert "integrity check failed" in str(report.problems[0])


def test_verify_finds_a_lexical_index_out_of_step_with_the_slots(stored: Path) -> None:
    """Words indexed for a slot that is not there (a hand edit of the FTS5 tables): the
    FTS5 integrity-check of `rag-memory verify` names the slot table."""
    conn = sqlite3.connect(stored / "slots.sqlite")
    conn.execute("INSERT INTO slots_fts(rowid, title, body) VALUES (999999, '', 'ghost words')")
    conn.commit()
    conn.close()
    report = verify_memory(stored)
    assert not report.ok and report.damaged_files() == [stored / "slots.sqlite"]
    assert "lexical index does not match" in str(report.problems[0])
