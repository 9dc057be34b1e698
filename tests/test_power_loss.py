"""Power loss, simulated: what survives a power cut is what was fsynced, not what was written.

kill -9 keeps the page cache, so it cannot show a missing fsync. This test records every
fsync and rename our own code makes while a memory adds, deletes, seals and compacts, and
builds at each step the directory a power cut would leave, by the POSIX rules (as LazyFS and
ALICE model them, Pillai et al., OSDI 2014): a file's surviving content is its content at its
last fsync (nothing if never fsynced), and a name created, renamed or removed survives only
once its directory has been fsynced. SQLite makes its own commits durable (WAL,
synchronous=FULL; its fsyncs are in C and not seen here), so the image takes the slot table's
committed state at that step. Every image must open at once as a writer and hold every
acknowledged write, each slot found by its own vector.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import SMALL_IVF, report_probe, unit_vectors

from rag_memory import Memory
from rag_memory.store.slot_table import TABLE_FILE, SlotTable

DIM = 16
VECTORS = unit_vectors(1400, DIM, seed=11)
SQLITE_FILES = (TABLE_FILE, f"{TABLE_FILE}-wal", f"{TABLE_FILE}-shm")


@dataclass
class DurableModel:
    """What a power cut would leave of the directories under `root`."""

    root: Path
    content: dict[int, bytes] = field(default_factory=dict)  # inode -> content at last fsync
    names: dict[Path, dict[str, int]] = field(default_factory=dict)  # dir -> name -> inode
    images: list[tuple[dict[Path, dict[str, bytes]], bytes]] = field(default_factory=list)

    def start(self) -> None:
        """Everything present now is durable (written and synced before the test)."""
        for directory in (self.root, self.root / "shards"):
            self.sync_dir(directory)
            for ino in self.names[directory].values():
                self.content.setdefault(ino, b"")
            for name, ino in self.names[directory].items():
                self.content[ino] = (directory / name).read_bytes()

    def fsync(self, fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.is_dir():
            self.sync_dir(path)
        elif self.root in path.parents:
            self.content[os.fstat(fd).st_ino] = path.read_bytes()
        self.snapshot()

    def sync_dir(self, directory: Path) -> None:
        if directory == self.root or directory.parent == self.root:
            self.names[directory] = {
                p.name: p.stat().st_ino
                for p in directory.iterdir()
                if p.is_file() and p.name not in SQLITE_FILES
            }

    def snapshot(self) -> None:
        """The image a power cut now would leave: our files by the rules, the table as
        committed."""
        files = {
            d: {name: self.content.get(ino, b"") for name, ino in names.items()}
            for d, names in self.names.items()
        }
        source = sqlite3.connect(self.root / TABLE_FILE)
        try:
            table = source.serialize()
        finally:
            source.close()
        self.images.append((files, table))

    def write_image(self, index: int, target: Path) -> None:
        files, table = self.images[index]
        for directory, entries in files.items():
            out = target / directory.relative_to(self.root)
            out.mkdir(parents=True, exist_ok=True)
            for name, data in entries.items():
                (out / name).write_bytes(data)
        (target / TABLE_FILE).write_bytes(table)  # the committed pages, WAL included


def _ids(rows: range) -> list[str]:
    return [f"v{i}" for i in rows]


def test_every_power_cut_image_opens_with_every_acknowledged_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m"
    with Memory.create(path, dim=DIM, index=SMALL_IVF, cache=None) as mem:
        mem.add(_ids(range(300)), ids=_ids(range(300)), vectors=VECTORS[:300])
    model = DurableModel(path)
    model.start()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        model.fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    for method in ("write", "tombstone", "apply_sealing"):  # the table's commits
        real = getattr(SlotTable, method)

        def committed(self, *args, _real=real, **kwargs):
            out = _real(self, *args, **kwargs)
            model.snapshot()
            return out

        monkeypatch.setattr(SlotTable, method, committed)

    # (image index once acknowledged, ids added, ids deleted)
    acked: list[tuple[int, set[str], set[str]]] = [(0, set(_ids(range(300))), set())]
    model.snapshot()
    with Memory.open(path, cache=None) as mem:
        steps = [
            ("add", range(300, 700)),  # seals
            ("delete", range(0, 40)),
            ("add", range(700, 1100)),  # seals again, then merges
            ("delete", range(300, 330)),
            ("compact", None),
            ("add", range(1100, 1400)),
        ]
        for step, rows in steps:
            if step == "add":
                mem.add(_ids(rows), ids=_ids(rows), vectors=VECTORS[rows.start : rows.stop])
                acked.append((len(model.images), set(_ids(rows)), set()))
            elif step == "delete":
                mem.delete(_ids(rows))
                acked.append((len(model.images), set(), set(_ids(rows))))
            else:
                mem.compact()
    monkeypatch.undo()
    assert len(model.images) > 30
    failures: list[str] = []
    lost = wrong = 0
    for index in range(len(model.images)):
        image = tmp_path / f"image{index}"
        model.write_image(index, image)
        live: set[str] = set()
        for acked_at, added, deleted in acked:
            if acked_at <= index + 1:  # acknowledged before (or at) this image
                live = (live | added) - deleted
        try:
            mem = Memory.open(image, cache=None)  # at once: no error, no second try
        except Exception as exc:
            failures.append(f"image {index}: {type(exc).__name__}: {exc}")
            continue
        with mem:
            ordered = sorted(live)
            lost += mem.contains(ordered).count(False)
            stored = [s.id for slots, _ in mem.iter_vectors() for s in slots]
            hits = mem.search(VECTORS[[int(i[1:]) for i in stored]], k=1)
            wrong += sum(h[0].id != i for h, i in zip(hits, stored, strict=True))
    report_probe(
        "power-cut images (adds, deletes, seals, compaction)",
        len(model.images),
        crashes=len(failures),
        lost=lost,
        wrong=wrong,
    )
    assert failures == [] and lost == 0 and wrong == 0
