"""I/O faults on the write path, and read-only media (issue 12, defects 9 and 10).

SQLite's own testing style (https://www.sqlite.org/testing.html, "I/O error testing"): run one
fixed sequence of writes and fail the file system at every step, then check what is left.
Writers run in child processes so that limits and injected faults never reach pytest:

- disk full: a small tmpfs (we are root here, as in CI), filled by the writes themselves;
- RLIMIT_FSIZE with SIGXFSZ ignored: a write past the limit fails with EFBIG;
- EIO on fsync: an LD_PRELOAD shim, built with the system's cc, fails the Nth fsync or
  fdatasync of the process once. It sits in front of libc, so it reaches SQLite's own syncs
  (libsqlite3 is a shared library) as well as ours.

After each run: the failing call raised a StorageError (a RagMemoryError) with the OS or SQLite
error chained; the memory opens at once, read-only and then as a writer, and holds exactly the
acknowledged writes, the failed call wholly applied or not at all (a write that raised is
stored only when what failed was the seal that followed its commit, never slots.sqlite); and
it takes further writes. CI runs a sample of the fault points; the whole sweep, with a table:

    RAG_MEMORY_FAULT_SWEEP=full python -m pytest tests/test_io_faults.py -s -k sweep
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import report_probe

from rag_memory import Memory, RagMemoryError
from rag_memory.errors import DiskFullError, NotWritableError, StorageError
from rag_memory.index.codecs import SEALED_KINDS
from rag_memory.index.config import IndexConfig

DIM = 16
TESTS = Path(__file__).resolve().parent
FULL_SWEEP = os.environ.get("RAG_MEMORY_FAULT_SWEEP") in ("full", "1")
FSYNC_AT = "RAG_MEMORY_FAIL_FSYNC_AT"  # read by the shim: the 1-based fsync call that fails
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def config(kind: str) -> IndexConfig:
    return IndexConfig(
        kind=kind,
        seal_threshold=300,
        nlist=8,
        nprobe=8,
        pq_m=4 if kind == "ivf_pq" else None,
        shard_groups=2,
        merge_threshold=2,
        rebalance_every=0,
    )


# The writes every run makes, in order: (operation, first slot number, count).
SCRIPT: list[tuple[str, int, int]] = [
    ("create", 0, 0),
    ("add", 0, 200),
    ("add", 200, 200),  # crosses seal_threshold: this add seals
    ("upsert", 0, 50),
    ("delete", 50, 30),
    ("add", 400, 200),
    ("compact", 0, 0),
    ("delete", 100, 20),
    ("upsert", 400, 20),
    ("compact", 0, 0),
]


def slot_id(i: int) -> str:
    return f"s{i}"


def text(i: int, step: int) -> str:
    return f"slot {i} written by step {step}"


def vector(i: int, step: int) -> np.ndarray:
    """Slot i's vector as written by step `step` (an upsert writes a new one)."""
    x = np.random.default_rng([i, step]).standard_normal(DIM).astype(np.float32)
    return x / np.linalg.norm(x)


State = dict[str, int]  # live slot id -> the step that wrote its text and vector


def apply_step(state: State, step: int) -> State:
    """The state after SCRIPT[step] succeeds."""
    op, first, count = SCRIPT[step]
    new = dict(state)
    for i in range(first, first + count):
        if op == "delete":
            del new[slot_id(i)]
        elif op in ("add", "upsert"):
            new[slot_id(i)] = step
    return new


def run_step(mem: Memory | None, path: Path, kind: str, step: int) -> Memory | None:
    op, first, count = SCRIPT[step]
    if op == "create":
        return Memory.create(path, dim=DIM, index=config(kind), cache=None)
    assert mem is not None
    ids = [slot_id(i) for i in range(first, first + count)]
    if op == "delete":
        mem.delete(ids)
    elif op == "compact":
        mem.compact()
    else:
        texts = [text(i, step) for i in range(first, first + count)]
        vectors = np.stack([vector(i, step) for i in range(first, first + count)])
        (mem.add if op == "add" else mem.upsert)(texts, ids=ids, vectors=vectors)
    return mem


def describe(exc: BaseException) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    return {
        # raised by the seal that add/upsert run after committing their rows (issue 12 item 7)
        "in_seal": any(f.name == "seal" and f.filename.endswith("tiered.py") for f in frames),
        "error": type(exc).__name__,
        "storage": isinstance(exc, StorageError),
        "rag": isinstance(exc, RagMemoryError),
        "errno": getattr(exc, "errno", None),
        "path": str(getattr(exc, "path", "")),
        "cause": type(exc.__cause__).__name__ if exc.__cause__ is not None else None,
        "message": str(exc)[:300],
    }


def child_main(path: str, kind: str, fsize: int) -> None:
    """The writer in a child process: run SCRIPT until a step raises, print one JSON line
    per step, close, and print how many fsyncs it made (when the shim is loaded)."""
    if fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    mem = None
    for step in range(len(SCRIPT)):
        try:
            mem = run_step(mem, Path(path), kind, step)
        except Exception as exc:
            print(json.dumps({"step": step, "ok": False, **describe(exc)}), flush=True)
            break
        print(json.dumps({"step": step, "ok": True}), flush=True)
    closed: dict = {"closed": True}
    if mem is not None:
        try:
            mem.close()
        except Exception as exc:
            closed = {"closed": False, **describe(exc)}
    calls = getattr(ctypes.CDLL(None), "rag_memory_fsync_calls", None)
    closed["fsync_calls"] = calls() if calls is not None else None
    print(json.dumps(closed), flush=True)


# -- the fault sources --------------------------------------------------------------------
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

static long calls = 0;

long rag_memory_fsync_calls(void) { return calls; }

static int fail_now(void) {
    const char *at = getenv("RAG_MEMORY_FAIL_FSYNC_AT");
    ++calls;
    return at != NULL && atol(at) == calls;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (fail_now()) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (fail_now()) { errno = EIO; return -1; }
    return real(fd);
}
"""


@pytest.fixture(scope="session")
def fsync_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LD_PRELOAD library that fails the Nth fsync/fdatasync with EIO."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the fsync fault shim")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "shim.c").write_text(SHIM_SOURCE)
    library = folder / "libfailfsync.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-o", str(library), str(folder / "shim.c"), "-ldl"],
        check=True,
        capture_output=True,
    )
    return library


class Tmpfs:
    """A tmpfs mounted on a folder (root only), remountable to another size or read-only."""

    def __init__(self, where: Path) -> None:
        self.where = where
        where.mkdir(parents=True, exist_ok=True)
        self.mounted = False

    def mount(self, size: int) -> None:
        self._mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"])
        self.mounted = True

    def remount(self, options: str) -> None:
        self._mount(["-o", f"remount,{options}"])

    def unmount(self) -> None:
        if self.mounted:
            # lazily: a test that failed may still hold files open there
            subprocess.run(["umount", "--lazy", str(self.where)], check=True)
            self.mounted = False

    def _mount(self, args: list[str]) -> None:
        done = subprocess.run(["mount", *args, str(self.where)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    fs = Tmpfs(tmp_path / "mnt")
    yield fs
    fs.unmount()


# -- one run and its checks ---------------------------------------------------------------
@dataclass
class Tally:
    """What a sweep found, for the issue's table."""

    runs: int = 0
    clean: int = 0  # the failing call raised a StorageError with its cause chained
    raw: list[str] = field(default_factory=list)  # raised something else
    not_openable: list[str] = field(default_factory=list)  # first reopen failed
    lost: list[str] = field(default_factory=list)  # reopened state != acknowledged
    silent: list[str] = field(default_factory=list)  # nothing raised, memory left degraded
    no_fault: int = 0  # the fault point was past the script's end: nothing failed

    def row(self, name: str) -> str:
        return (
            f"| {name} | {self.runs} | {self.clean} | {len(self.raw)} | "
            f"{len(self.not_openable)} | {len(self.lost)} | {len(self.silent)} | "
            f"{self.no_fault} |"
        )

    def assert_clean(self) -> None:
        assert not self.raw, "raw errors:\n" + "\n".join(self.raw)
        assert not self.not_openable, "not openable at once:\n" + "\n".join(self.not_openable)
        assert not self.lost, "data lost or half-applied:\n" + "\n".join(self.lost)
        assert not self.silent, "degraded without an error:\n" + "\n".join(self.silent)


def run_child(path: Path, kind: str, fsize: int = 0, env: dict | None = None) -> list[dict]:
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from test_io_faults import child_main\n"
        "child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), kind, str(fsize)],
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines and "closed" in lines[-1], done.stderr[-3000:]
    return lines


def journal_mode(path: Path) -> str:
    """The slot table's SQLite journal mode: readers beside a writer need "wal"."""
    conn = sqlite3.connect(path / "slots.sqlite")
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def memory_state(mem: Memory) -> dict[str, tuple[str, np.ndarray]]:
    state: dict[str, tuple[str, np.ndarray]] = {}
    for slots, vectors in mem.iter_vectors(batch=256):
        for slot, v in zip(slots, vectors, strict=True):
            state[slot.id] = (slot.text, v)
    assert len(state) == len(mem)
    return state


def same(found: dict[str, tuple[str, np.ndarray]], expected: State) -> bool:
    if found.keys() != expected.keys():
        return False
    return all(
        found[k][0] == text(int(k[1:]), step)
        and np.allclose(found[k][1], vector(int(k[1:]), step), atol=1e-6)
        for k, step in expected.items()
    )


def check_run(
    tally: Tally, label: str, path: Path, kind: str, lines: list[dict], cause: set[int]
) -> None:
    """Judge one run: the failure, the reopened memory, and that it still takes writes."""
    tally.runs += 1
    steps = [line for line in lines if "step" in line]
    failed = steps[-1] if not steps[-1]["ok"] else None
    done = [s["step"] for s in steps if s["ok"]]
    before: State = {}
    for step in done:
        before = apply_step(before, step)
    closing = lines[-1]
    if not closing["closed"]:
        tally.raw.append(f"{label}: close() raised {closing}")
    if failed is None:
        tally.no_fault += 1
    elif failed["storage"] and failed["cause"] and failed["errno"] in cause:
        tally.clean += 1
    else:
        tally.raw.append(f"{label}: step {failed['step']} {SCRIPT[failed['step']]}: {failed}")
    if failed is not None and failed["step"] == 0:  # create failed: it must leave no memory
        try:
            Memory.create(path, dim=DIM, index=config(kind), cache=None).close()
        except Exception as exc:
            tally.not_openable.append(f"{label}: create again raised {describe(exc)}")
        return
    after = before if failed is None else apply_step(before, failed["step"])
    if journal_mode(path) != "wal":
        tally.silent.append(f"{label}: slots.sqlite left in journal mode {journal_mode(path)}")
    try:
        with Memory.open(path, read_only=True, cache=None) as mem:
            seen = memory_state(mem)
        with Memory.open(path, cache=None) as mem:
            state = memory_state(mem)
            mem.add(["one more"], ids=["extra"], vectors=vector(10**6, 0)[None])
            if len(mem) > config(kind).seal_threshold:  # fewer cannot train IVF-PQ's codebook
                mem.compact()
            assert mem.get("extra")[0].text == "one more"
    except Exception as exc:
        tally.not_openable.append(f"{label}: {describe(exc)}")
        return
    if not (same(seen, before) or same(seen, after)) or not (
        same(state, before) or same(state, after)
    ):
        tally.lost.append(f"{label}: reopened state is neither before nor after {failed}")
    elif failed is not None and not same(state, before):
        # The call raised yet its rows are there: only the seal that add/upsert run after
        # committing the rows may do that (until a failed seal is deferred maintenance).
        if SCRIPT[failed["step"]][0] not in ("add", "upsert") or not failed["in_seal"]:
            tally.lost.append(f"{label}: step {failed['step']} raised but was stored: {failed}")


def sample(points: list[int], n: int, seed: str) -> list[int]:
    """All points on a full sweep, else n of them, seeded (the same ones every run)."""
    if FULL_SWEEP or len(points) <= n:
        return points
    return sorted(random.Random(seed).sample(points, n))


def report(tally: Tally, name: str) -> None:
    report_probe(
        name,
        tally.runs,
        clean_errors=tally.clean,
        crashes=len(tally.raw) + len(tally.not_openable),
        lost=len(tally.lost),
        wrong=len(tally.silent),
    )
    print(
        "\n| probe | runs | clean StorageErrors | raw errors | not openable at once | "
        "data lost | silently degraded | no fault hit |\n|---|---|---|---|---|---|---|---|\n"
        + tally.row(name)
    )


# -- the sweeps ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SEALED_KINDS)
def test_sweep_disk_full_on_a_small_tmpfs(tmpfs: Tmpfs, kind: str) -> None:
    """Each run on a tmpfs of another size fills it at another step; space is freed (the
    tmpfs grown) before the memory is reopened."""
    sizes = list(range(32 << 10, 800 << 10, 16 << 10))
    tally = Tally()
    for size in sample(sizes, 2, f"tmpfs-{kind}"):
        tmpfs.mount(size)
        path = tmpfs.where / "m"
        lines = run_child(path, kind)
        tmpfs.remount("size=64m")  # the operator frees space
        # SQLite reports a full disk met while growing its -shm as SQLITE_IOERR
        check_run(tally, f"tmpfs {size >> 10} KiB", path, kind, lines, {errno.ENOSPC, errno.EIO})
        tmpfs.unmount()
    report(tally, f"disk full (tmpfs), {kind}")
    tally.assert_clean()
    assert tally.clean >= 1, "no run filled the disk: nothing was tested"


@pytest.mark.parametrize("kind", SEALED_KINDS)
def test_sweep_file_size_limit(tmp_path: Path, kind: str) -> None:
    """RLIMIT_FSIZE at many limits: the first file to outgrow it fails the write (EFBIG)."""
    limits = list(range(16 << 10, 640 << 10, 16 << 10))
    tally = Tally()
    for limit in sample(limits, 2, f"fsize-{kind}"):
        path = tmp_path / f"m{limit}"
        lines = run_child(path, kind, fsize=limit)
        # SQLite reports a short write as SQLITE_FULL, a failed one as SQLITE_IOERR
        causes = {errno.EFBIG, errno.ENOSPC, errno.EIO}
        check_run(tally, f"RLIMIT_FSIZE {limit >> 10} KiB", path, kind, lines, causes)
    report(tally, f"RLIMIT_FSIZE, {kind}")
    tally.assert_clean()
    assert tally.clean >= 1


@pytest.mark.parametrize("kind", SEALED_KINDS)
def test_sweep_eio_on_fsync(tmp_path: Path, fsync_shim: Path, kind: str) -> None:
    """Fail the Nth fsync/fdatasync of the writer with EIO, for N over every sync it makes."""
    env = {**ENV, "LD_PRELOAD": str(fsync_shim)}
    total = run_child(tmp_path / "count", kind, env=env)[-1]["fsync_calls"]
    assert total and total > 20, f"the shim saw {total} syncs: is it loaded?"
    tally = Tally()
    for n in sample(list(range(1, total + 1)), 3, f"fsync-{kind}"):
        path = tmp_path / f"m{n}"
        lines = run_child(path, kind, env={**env, FSYNC_AT: str(n)})
        check_run(tally, f"fsync #{n} of {total}", path, kind, lines, {errno.EIO})
    report(tally, f"EIO on fsync #N of {total}, {kind}")
    tally.assert_clean()


# -- defect 9, one by one ------------------------------------------------------------------
CREATES_UNDER_EIO = textwrap.dedent("""
    import ctypes, json, os, sys
    from rag_memory import Memory
    calls = ctypes.CDLL(None).rag_memory_fsync_calls
    for k in range(1, 9):  # create fails its kth sync (it makes 7)
        os.environ["%s"] = str(calls() + k)
        out = {"k": k, "ok": True}
        try:
            Memory.create(f"{sys.argv[1]}/m{k}", dim=16, cache=None).close()
        except Exception as exc:
            out = {"k": k, "ok": False, "error": type(exc).__name__, "cause": repr(exc.__cause__)}
        del os.environ["%s"]
        print(json.dumps(out), flush=True)
""") % (FSYNC_AT, FSYNC_AT)


def test_eio_while_creating_is_an_error_never_a_memory_without_wal(
    tmp_path: Path, fsync_shim: Path
) -> None:
    """The switch to WAL reports an I/O error only when its row is fetched; unread, a
    memory came out in rollback-journal mode, where a reader blocks the writer."""
    env = {**ENV, "LD_PRELOAD": str(fsync_shim)}
    code = [sys.executable, "-c", CREATES_UNDER_EIO, str(tmp_path)]
    done = subprocess.run(code, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    for line in map(json.loads, done.stdout.splitlines()):
        path = tmp_path / f"m{line['k']}"
        if line["ok"]:
            assert journal_mode(path) == "wal", line
        else:
            assert line["error"] == "StorageError" and line["cause"] != "None", line
            assert [p.name for p in path.iterdir()] == ["LOCK"]  # what create wrote is gone
            Memory.create(path, dim=DIM, cache=None).close()  # and it can be retried
        with Memory.open(path, cache=None) as mem:
            assert len(mem) == 0


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of `directory` up to `leave` bytes free; returns the filler."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_full_disk_on_a_write_is_a_disk_full_error_not_a_failed_rollback(tmpfs: Tmpfs) -> None:
    tmpfs.mount(4 << 20)
    path = tmpfs.where / "m"
    mem = Memory.create(path, dim=DIM, cache=None)
    mem.add(["kept"], ids=["kept"], vectors=vector(0, 0)[None])
    filler = fill(tmpfs.where)
    ids = [slot_id(i) for i in range(1, 2001)]
    texts = [text(i, 1) * 20 for i in range(1, 2001)]
    vectors = np.stack([vector(i, 1) for i in range(1, 2001)])
    with pytest.raises(DiskFullError) as caught:
        mem.add(texts, ids=ids, vectors=vectors)
    exc = caught.value
    assert isinstance(exc, StorageError) and isinstance(exc, RagMemoryError)
    assert exc.errno == errno.ENOSPC and exc.path == path / "slots.sqlite"
    assert isinstance(exc.__cause__, sqlite3.OperationalError)
    assert "database or disk is full" in str(exc) and "rollback" not in str(exc)
    # nothing of the call was applied: in this process, and after freeing space, a retry
    assert len(mem) == 1 and mem.contains(ids[:3]) == [False] * 3
    filler.unlink()
    mem.add(texts, ids=ids, vectors=vectors)
    mem.close()
    with Memory.open(path, read_only=True, cache=None) as mem:
        assert len(mem) == 2001 and mem.search(vectors[:1], k=1)[0][0].id == ids[0]


def test_full_disk_while_writing_a_shard_names_the_shard_file(tmpfs: Tmpfs) -> None:
    tmpfs.mount(8 << 20)
    path = tmpfs.where / "m"
    mem = Memory.create(path, dim=DIM, index=config("ivf_flat"), cache=None)
    ids = [slot_id(i) for i in range(280)]
    mem.add(ids, ids=ids, vectors=np.stack([vector(i, 0) for i in range(280)]))
    filler = fill(tmpfs.where, leave=8 << 10)  # room for the router, not for every shard
    with pytest.raises(DiskFullError) as caught:
        mem.compact()
    exc = caught.value
    assert exc.errno == errno.ENOSPC and exc.path.parent == path / "shards", exc
    assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.ENOSPC
    mem.close()
    filler.unlink()
    with Memory.open(path, cache=None) as mem:  # the first open after the failure succeeds
        assert [s.id for s in mem.get(ids)] == ids
        mem.compact()
        assert mem.stats()["index"]["kind_chosen"] == "ivf_flat"
        found = mem.search(np.stack([vector(i, 0) for i in range(280)]), k=1)
        assert [hits[0].id for hits in found] == ids


# -- defect 10: read-only media -------------------------------------------------------------
def build_sealed_memory(path: Path) -> tuple[np.ndarray, list[list[str]]]:
    """A closed memory with sealed shards and a growing shard; its queries and their hits."""
    queries = np.stack([vector(i, 0) for i in range(0, 450, 9)])
    with Memory.create(path, dim=DIM, index=config("ivf_flat"), cache=None) as mem:
        for first in (0, 300):
            ids = [slot_id(i) for i in range(first, first + 150 if first else 300)]
            mem.add(ids, ids=ids, vectors=np.stack([vector(int(i[1:]), 0) for i in ids]))
        mem.delete([slot_id(3)])
        assert mem.index.sealed_shards and len(mem.index.growing)
        hits = [[h.id for h in row] for row in mem.search(queries, k=5)]
    return queries, hits


def test_read_only_file_system_serves_readers_and_refuses_writers(tmpfs: Tmpfs) -> None:
    tmpfs.mount(16 << 20)
    path = tmpfs.where / "m"
    queries, hits = build_sealed_memory(path)
    tmpfs.remount("ro")
    with Memory.open(path, read_only=True, cache=None) as mem:
        assert len(mem) == 449
        assert [[h.id for h in row] for row in mem.search(queries, k=5)] == hits
        assert mem.get(slot_id(7))[0].text == slot_id(7)
    with pytest.raises(NotWritableError, match="read_only=True") as caught:
        Memory.open(path, cache=None)
    assert caught.value.errno == errno.EROFS and caught.value.path == path
    with pytest.raises(NotWritableError) as caught:
        Memory.create(tmpfs.where / "new", dim=DIM)
    assert caught.value.errno == errno.EROFS
    tmpfs.remount("rw")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["LOCK", "manifest.json", "shards", "slots.sqlite"]  # nothing written


def test_a_wal_left_by_a_writer_that_did_not_close(tmpfs: Tmpfs) -> None:
    """On read-only media a -wal/-shm pair is read as it is (SQLite >= 3.22); a non-empty
    -wal without its -shm cannot be, and says so instead of serving an older state."""
    tmpfs.mount(16 << 20)
    path = tmpfs.where / "m"
    queries, hits = build_sealed_memory(path)
    code = (
        "import os, sys, numpy as np\nfrom rag_memory import Memory\n"
        "mem = Memory.open(sys.argv[1], cache=None)\n"
        "mem.add(['late'], ids=['late'], vectors=np.eye(1, 16, dtype='float32'))\n"
        "os._exit(0)  # no close: the commit stays in the WAL\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], env=ENV, check=True)
    wal, shm = path / "slots.sqlite-wal", path / "slots.sqlite-shm"
    assert wal.stat().st_size > 0 and shm.exists()
    tmpfs.remount("ro")
    with Memory.open(path, read_only=True, cache=None) as mem:
        assert len(mem) == 450 and mem.get("late")[0].text == "late"
        assert [[h.id for h in row] for row in mem.search(queries, k=5)][1:] == hits[1:]
    tmpfs.remount("rw")
    shm.unlink()
    tmpfs.remount("ro")
    with pytest.raises(NotWritableError, match="holds commits not yet in the database") as caught:
        Memory.open(path, read_only=True, cache=None)
    assert caught.value.errno == errno.EROFS


def test_writer_close_checkpoints_the_wal_even_beside_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "m"
    queries, hits = build_sealed_memory(path)
    reader = Memory.open(path, read_only=True, cache=None)
    writer = Memory.open(path, cache=None)
    writer.add(["late"], ids=["late"], vectors=vector(999, 0)[None])
    assert len(reader) == 450  # the reader's connection reads the WAL, so SQLite keeps it
    writer.close()
    wal = path / "slots.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "the closed writer left its WAL"
    reader.close()


NOBODY = 65534
AS_NOBODY = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from rag_memory import Memory
    from rag_memory.errors import NotWritableError
    path, queries, warm = sys.argv[1], np.load(sys.argv[2]), sys.argv[3]
    with Memory.open(warm, read_only=True, cache=None) as mem:  # lazy imports, as root:
        mem.search(queries, k=5)  # nobody may not read this Python's site-packages
    os.setgid(%d)
    os.setuid(%d)
    with Memory.open(path, read_only=True, cache=None) as mem:
        hits = [[h.id for h in row] for row in mem.search(queries, k=5)]
        out = {"len": len(mem), "hits": hits}
    try:
        Memory.open(path, cache=None)
    except NotWritableError as exc:
        out["writer"] = [exc.errno, str(exc)]
    print(json.dumps(out))
""") % (NOBODY, NOBODY)


def test_a_memory_this_user_may_read_but_not_write(tmp_path: Path) -> None:
    """Readable, not writable by the user (root's memory opened by nobody): readers are
    served, a writer is told to open it read-only."""
    if os.geteuid() != 0:
        pytest.skip("switching to another user (nobody) needs root")
    base = Path(tempfile.mkdtemp(prefix="rag-memory-ro-", dir="/tmp"))  # tmp_path is 0700
    try:
        path = base / "m"
        queries, hits = build_sealed_memory(path)
        np.save(base / "queries.npy", queries)
        shutil.copytree(path, tmp_path / "warm")
        for folder, _, files in os.walk(base):
            os.chmod(folder, 0o555)
            for name in files:
                os.chmod(Path(folder) / name, 0o444)
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                AS_NOBODY,
                str(path),
                str(base / "queries.npy"),
                str(tmp_path / "warm"),
            ],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout)
        assert out["len"] == 449 and out["hits"] == hits
        assert out["writer"][0] == errno.EACCES and "read_only=True" in out["writer"][1]
    finally:
        for folder, _, _ in os.walk(base):
            os.chmod(folder, 0o755)
        shutil.rmtree(base)
