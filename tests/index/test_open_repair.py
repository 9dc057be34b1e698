"""Open-time repair and sealing failures: a stale manifest is refused with nothing deleted, the
first reopen after a crash between the manifest and the slot-table commits succeeds and equals
the acknowledged state, a failed seal never fails the write that triggered it, and a config
FAISS cannot train is refused at create."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import SMALL_IVF, report_probe, unit_vectors

from rag_memory import CorruptFileError, InvalidInputError, Memory, StorageError, fsutil
from rag_memory.index import maintenance, sealed_set, tiered
from rag_memory.store.slot_table import SlotTable

DIM = 16
CONFIG = replace(SMALL_IVF, merge_threshold=10)  # merged by compact() only
VECTORS = unit_vectors(2000, DIM, seed=3)
TOMBSTONES = [f"v{i}" for i in range(100, 160)]


def _add(mem: Memory, start: int, stop: int) -> None:
    ids = [f"v{i}" for i in range(start, stop)]
    mem.add(ids, ids=ids, vectors=VECTORS[start:stop])


def _assert_holds(mem: Memory, live: list[int]) -> None:
    """Exactly the `live` slots, each found by its own vector at rank 1."""
    assert len(mem) == len(live)
    hits = mem.search(VECTORS[live], k=1)
    assert [h[0].id for h in hits] == [f"v{i}" for i in live]


def _shard_files(path: Path) -> set[str]:
    return {p.name for p in (path / "shards").iterdir()}


def test_stale_manifest_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "m"
    with Memory.create(path, dim=DIM, index=CONFIG, cache=None) as mem:
        _add(mem, 0, 600)  # first seal
        first = (path / "manifest.json").read_bytes()
        _add(mem, 600, 1200)  # second seal
    latest = (path / "manifest.json").read_bytes()
    files = _shard_files(path)
    (path / "manifest.json").write_bytes(first)  # a backup restored file by file
    for read_only in (False, True):
        with pytest.raises(CorruptFileError, match="ahead of") as info:
            Memory.open(path, cache=None, read_only=read_only)
        assert info.value.path.name == "manifest.json"
        assert _shard_files(path) == files
    report_probe("stale manifest restored (writer and reader open)", 2, clean_errors=2)
    (path / "manifest.json").write_bytes(latest)
    with Memory.open(path, cache=None) as mem:
        _assert_holds(mem, list(range(1200)))


# The child seals or merges; a delete lands while the new shards are built outside the lock,
# then the process dies right after the manifest commit, before the slot table's.
CRASH_CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from helpers import unit_vectors
    from rag_memory import Memory
    from rag_memory.index import tiered
    from rag_memory.store.slot_table import SlotTable
    path, step = sys.argv[1], sys.argv[2]
    vectors = unit_vectors(2000, 16, seed=3)
    mem = Memory.open(path, cache=None)
    build = tiered.write_group_shards if step == "seal" else tiered.merge_shards
    def build_then_delete(*args, **kwargs):
        out = build(*args, **kwargs)
        if step == "seal":
            doomed = ["v5", "v6"]
        else:  # two live slots of the shard being merged (slot v<i> sits at address i + 1)
            part = args[4][0]
            live = part.addrs[~np.isin(part.addrs, part.tombstones)]
            doomed = [f"v{a - 1}" for a in live[:2]]
        mem.delete(doomed)  # lands after the build's snapshot
        print(" ".join(doomed), flush=True)
        return out
    setattr(tiered, build.__name__, build_then_delete)
    SlotTable.apply_sealing = lambda *a, **k: os._exit(0)  # dies after the manifest commit
    if step == "seal":
        ids = [f"v{i}" for i in range(1200, 1300)]
        mem.add(ids, ids=ids, vectors=vectors[1200:1300])  # crosses the threshold
    else:
        mem.compact()
    os._exit(1)
""")


@pytest.mark.parametrize("step", ["seal", "merge"])
def test_first_reopen_after_a_crash_between_the_commits_succeeds(tmp_path: Path, step: str) -> None:
    path = tmp_path / "m"
    config = CONFIG if step == "merge" else replace(CONFIG, seal_threshold=1300)
    with Memory.create(path, dim=DIM, index=config, cache=None) as mem:
        _add(mem, 0, 1200)
        if step == "merge":
            mem.delete(TOMBSTONES)  # one in every group: the compaction merges them all
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, str(path), step], env=env, capture_output=True
    )
    assert child.returncode == 0, child.stderr.decode()[-3000:]
    gone = {int(i[1:]) for i in child.stdout.decode().split()}
    assert len(gone) == 2
    if step == "merge":
        gone |= {int(i[1:]) for i in TOMBSTONES}
    stored = 1300 if step == "seal" else 1200
    with Memory.open(path, cache=None) as mem:  # the first reopen
        _assert_holds(mem, [i for i in range(stored) if i not in gone])
        report_probe(f"kill -9 between the manifest and table commits ({step})", 1)
        mem.compact()
        _assert_holds(mem, [i for i in range(stored) if i not in gone])
    with Memory.open(path, cache=None) as mem:
        _assert_holds(mem, [i for i in range(stored) if i not in gone])


def test_a_failed_table_commit_leaves_a_memory_that_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """I/O errors on the slot-table commits of a compaction: the manifest already names the
    new shards. Deletes of their slots, a seal that must wait for the table, the next open
    and the next compaction all agree on every slot."""
    path = tmp_path / "m"
    real = SlotTable.apply_sealing
    broken = {"on": True}

    def failing(self, *args, **kwargs):
        if broken["on"]:
            raise OSError(errno.EIO, "Input/output error")
        return real(self, *args, **kwargs)

    with Memory.create(path, dim=DIM, index=CONFIG, cache=None) as mem:
        _add(mem, 0, 1200)
        mem.delete(TOMBSTONES)
        monkeypatch.setattr(SlotTable, "apply_sealing", failing)
        monkeypatch.setattr(maintenance, "RETRY_SECONDS", 0.0)
        with pytest.raises(OSError):  # the first merge commits; the second waits for the table
            mem.compact()
        assert mem.stats()["maintenance"]["slot_table_behind_manifest"]
        merged = max(mem.index.sealed_shards, key=lambda s: s.shard_id)
        doomed = [int(a) - 1 for a in merged.addrs[:2]]  # slot v<i> sits at address i + 1
        mem.delete([f"v{i}" for i in doomed])  # tombstones of a shard the table does not know
        _add(mem, 1200, 1700)  # its seal waits for the table: deferred, the write succeeds
        assert "Input/output error" in mem.stats()["maintenance"]["last_error"]
        live = [i for i in range(1700) if i not in doomed and not 100 <= i < 160]
        _assert_holds(mem, live)
    for read_only in (True, False):  # still failing: it opens, the table's record deferred
        with Memory.open(path, cache=None, read_only=read_only) as mem:
            _assert_holds(mem, live)
    broken["on"] = False
    with Memory.open(path, cache=None) as mem:  # the writer records the commit, then works
        _assert_holds(mem, live)
        _add(mem, 1700, 1710)
        mem.compact()
        live += list(range(1700, 1710))
        _assert_holds(mem, live)
    with Memory.open(path, cache=None) as mem:
        _assert_holds(mem, live)
        assert mem.stats()["maintenance"]["slot_table_behind_manifest"] is False


@pytest.mark.parametrize(
    "failing", [(tiered, "write_group_shards"), (sealed_set, "write_manifest")]
)
def test_a_failed_seal_is_deferred_not_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: tuple
) -> None:
    """The disk fills while the shard files or the manifest (the commit point) are written."""
    path = tmp_path / "m"
    module, name = failing
    real = getattr(module, name)
    failures = {"left": 1}

    def disk_full_once(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, disk_full_once)
    monkeypatch.setattr(maintenance, "RETRY_SECONDS", 0.0)
    with Memory.create(path, dim=DIM, index=CONFIG, cache=None) as mem:
        _add(mem, 0, 300)
        _add(mem, 300, 450)  # reaches the threshold: the seal fails, the write does not
        report = mem.stats()["maintenance"]
        assert report["failures"] == 1
        assert "No space left" in report["last_error"]
        assert not any(s["sealed"] for s in mem.stats()["shards"])
        assert sorted(os.listdir(path / "shards")) == []  # nothing half-written left
        _assert_holds(mem, list(range(450)))
        _add(mem, 450, 460)  # the next write retries the seal, which now succeeds
        assert any(s["sealed"] for s in mem.stats()["shards"])
        assert mem.stats()["maintenance"]["last_error"] is None
        _assert_holds(mem, list(range(460)))
    with Memory.open(path, cache=None) as mem:
        _assert_holds(mem, list(range(460)))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"kind": "ivf_pq", "pq_m": 7}, "pq_m"),
        ({"kind": "ivf_pq", "pq_m": 32}, "pq_m"),
        ({"kind": "ivf_pq", "seal_threshold": 100}, "seal_threshold"),
    ],
)
def test_a_config_faiss_cannot_train_is_refused_at_create(
    tmp_path: Path, config: dict, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Memory.create(tmp_path / "m", dim=DIM, index=config)
    assert not (tmp_path / "m").exists()


def test_a_manifest_renamed_but_not_synced_keeps_what_the_old_one_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory fsync after the manifest's rename fails: the new manifest is in place
    but a power cut could restore the old one, whose shard files must still be there; the
    next commit syncs first, and the memory then works on."""
    path = tmp_path / "m"
    with Memory.create(path, dim=DIM, index=CONFIG, cache=None) as mem:
        _add(mem, 0, 1200)
        mem.delete(TOMBSTONES)
        live = [i for i in range(1200) if not 100 <= i < 160]
        old_manifest = (path / "manifest.json").read_bytes()
        real = fsutil.fsync_dir

        def failing(directory: Path) -> None:
            if directory == path:
                raise StorageError(directory, "syncing failed: Input/output error", errno.EIO)
            real(directory)

        monkeypatch.setattr(fsutil, "fsync_dir", failing)
        monkeypatch.setattr(sealed_set, "fsync_dir", failing)
        with pytest.raises(StorageError):  # the 1st merge is in place, the 2nd cannot sync it
            mem.compact()
        assert "syncing the manifest" in mem.stats()["maintenance"]["last_error"]
        _assert_holds(mem, live)
        cut = tmp_path / "power-cut"  # what a power cut now could leave: the old manifest
        shutil.copytree(path, cut)
        (cut / "manifest.json").write_bytes(old_manifest)
        with Memory.open(cut, cache=None) as image:
            _assert_holds(image, live)
        monkeypatch.setattr(fsutil, "fsync_dir", real)
        monkeypatch.setattr(sealed_set, "fsync_dir", real)
        mem.compact()
        _assert_holds(mem, live)
    with Memory.open(path, cache=None) as mem:
        _assert_holds(mem, live)
        assert {p.name.split(".")[0] for p in (path / "shards").iterdir()} == {
            f"{s['shard_id']:06d}" for s in mem.stats()["shards"] if s["sealed"]
        } | {"codec"}
