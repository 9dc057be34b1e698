"""Damaged files are refused on open with an error naming the file; nothing is unpickled."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from helpers import unit_vectors

from rag_memory import CorruptFileError, Memory


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    path = tmp_path / "m"
    with Memory.create(path, dim=8) as mem:
        mem.add([f"t{i}" for i in range(300)], vectors=unit_vectors(300, 8))
    return path


def _edit_manifest(path: Path, **changes) -> None:
    data = json.loads((path / "manifest.json").read_text())
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
