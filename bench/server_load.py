"""Load test of a live `rag-memory serve` on 127.0.0.1, and the same searches in-process.

    python bench/server_load.py                       # 16 clients, 10,000 requests
    python bench/server_load.py --clients 32 --requests 50000

Phases, against one vectors-only memory (no model to load, so the figures are the server's):
1. mixed: `--clients` threads, each its own `RemoteMemory`, send `--requests` requests in all,
   80% searches (k=10 by vector) and 20% writes (10% add, 5% upsert, 5% delete of the
   client's own slots); every error is counted, every acknowledged write remembered;
2. search over HTTP: the mixed phase's searches again, searches only;
3. every acknowledged write checked through the server, then again on disk after the server
   stopped (SIGTERM, exit code 0): added and upserted slots hold the last text written,
   deleted ones are gone;
4. search in-process: the same searches, same threads, on `Memory.open` of the directory.
The ratio of phase 2 to phase 4 is what HTTP + JSON costs a search.

Every phase is bounded: `--timeout` seconds in all, after which the run fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import ServedMemory  # noqa: E402

from rag_memory import Memory  # noqa: E402
from rag_memory.client import RemoteMemory  # noqa: E402

DIM = 64
K = 10
# Of every 100 requests: 80 searches, then adds, upserts and deletes.
SHARES = {"search": 80, "add": 10, "upsert": 5, "delete": 5}


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_memory(path: Path, slots: int, dim: int = DIM, seed: int = 0) -> None:
    """A memory of `slots` random unit vectors (ids base-0..), no embedder loaded."""
    rng = np.random.default_rng(seed)
    with Memory.create(path, dim=dim) as mem:
        for start in range(0, slots, 1024):
            n = min(1024, slots - start)
            mem.add(
                [f"base slot {start + i}" for i in range(n)],
                ids=[f"base-{start + i}" for i in range(n)],
                vectors=unit_rows(rng, n, dim),
            )


@dataclass
class ClientLog:
    """What one client saw: seconds per request by kind, errors, and the last acknowledged
    state of each slot it wrote (its text, or None once deleted)."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SHARES})
    errors: list[str] = field(default_factory=list)
    written: dict[str, str | None] = field(default_factory=dict)


def plan(requests: int, clients: int, seed: int) -> list[list[str]]:
    """Each client's sequence of request kinds, in the shares of SHARES, shuffled."""
    kinds = [kind for kind, share in SHARES.items() for _ in range(share)]
    rng = np.random.default_rng(seed)
    sequence = [kinds[i % 100] for i in range(requests)]
    rng.shuffle(sequence)
    return [sequence[c::clients] for c in range(clients)]


def mixed_client(
    remote: RemoteMemory,
    kinds: list[str],
    queries: np.ndarray,
    client: int,
    deadline: float,
    dim: int,
) -> ClientLog:
    """One client's requests; a write counts as acknowledged once its call returned."""
    log = ClientLog()
    rng = np.random.default_rng(1000 + client)
    live: list[str] = []
    for n, kind in enumerate(kinds):
        if time.monotonic() > deadline:
            log.errors.append("deadline passed")
            break
        if kind in ("upsert", "delete") and not live:
            kind = "add"
        start = time.perf_counter()
        try:
            if kind == "search":
                hits = remote.search(queries[n % len(queries)], k=K)
                if len(hits) != K:
                    raise AssertionError(f"{len(hits)} hits, not {K}")
            elif kind == "add":
                slot_id, text = f"c{client}-{n}", f"client {client} request {n}"
                remote.add([text], ids=[slot_id], vectors=unit_rows(rng, 1, dim))
                log.written[slot_id] = text
                live.append(slot_id)
            elif kind == "upsert":
                slot_id = live[int(rng.integers(len(live)))]
                text = f"client {client} request {n} (upsert)"
                remote.upsert([text], ids=[slot_id], vectors=unit_rows(rng, 1, dim))
                log.written[slot_id] = text
            else:
                slot_id = live.pop(int(rng.integers(len(live))))
                remote.delete([slot_id])
                log.written[slot_id] = None
        except Exception as exc:  # counted: the load test's figure is the error count
            log.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            continue
        log.seconds[kind].append(time.perf_counter() - start)
    return log


def in_threads(work: Callable[[int], Any], clients: int) -> tuple[list[Any], float]:
    """`work(client)` in `clients` threads at once: (their results, wall seconds)."""
    results: list[Any] = [None] * clients
    barrier = threading.Barrier(clients + 1)

    def run(c: int) -> None:
        barrier.wait()
        results[c] = work(c)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def search_client(
    search: Callable[[np.ndarray], list[Any]], queries: np.ndarray, deadline: float
) -> list[float]:
    """Seconds of each search of `queries`, one at a time."""
    seconds = []
    for q in queries:
        if time.monotonic() > deadline:
            raise TimeoutError("the search phase passed its deadline")
        start = time.perf_counter()
        hits = search(q)
        seconds.append(time.perf_counter() - start)
        assert len(hits) == K
    return seconds


def check_written(memory: Any, written: dict[str, str | None]) -> list[str]:
    """The acknowledged writes `memory` (a Memory or a RemoteMemory) does not hold as written."""
    ids = list(written)
    wrong: list[str] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found = memory.contains(chunk)
        present = [i for i, f in zip(chunk, found, strict=True) if f]
        texts = {s.id: s.text for s in memory.get(present)} if present else {}
        for slot_id in chunk:
            if texts.get(slot_id) != written[slot_id]:
                wrong.append(
                    f"{slot_id}: {texts.get(slot_id)!r}, acknowledged {written[slot_id]!r}"
                )
    return wrong


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {f"p{p}": float(np.percentile(ms, p)) for p in (50, 95, 99)}


@dataclass
class LoadReport:
    requests: int
    errors: list[str]
    acknowledged_writes: int  # slots written (their last acknowledged state is checked)
    write_calls: int  # adds, upserts and deletes acknowledged
    wrong_via_server: list[str]
    wrong_on_disk: list[str]
    server_exit: int
    rows: dict[str, dict[str, float]]  # phase -> n, p50, p95, p99 (ms), throughput (req/s)

    @property
    def search_ratio(self) -> dict[str, float]:
        http, local = self.rows["search over HTTP"], self.rows["search in-process"]
        return {
            "p50": http["p50"] / local["p50"],
            "p99": http["p99"] / local["p99"],
            "throughput": local["req/s"] / http["req/s"],
        }


def run_load(
    directory: Path,
    *,
    clients: int = 16,
    requests: int = 10_000,
    dim: int = DIM,
    timeout_s: float = 600.0,
    seed: int = 0,
) -> LoadReport:
    """The four phases (module docstring) on the memory at `directory`."""
    deadline = time.monotonic() + timeout_s
    queries = unit_rows(np.random.default_rng(seed + 1), 512, dim)
    kinds = plan(requests, clients, seed)
    rows: dict[str, dict[str, float]] = {}
    server = ServedMemory(directory)
    try:
        remotes = [RemoteMemory(server.url) for _ in range(clients)]
        logs, wall = in_threads(
            lambda c: mixed_client(remotes[c], kinds[c], queries, c, deadline, dim), clients
        )
        every = [s for log in logs for kind in SHARES for s in log.seconds[kind]]
        rows["mixed over HTTP"] = _row(every, wall)
        for kind in SHARES:
            rows[f"  {kind}"] = _row([s for log in logs for s in log.seconds[kind]], None)
        searches = [searched(kinds[c], queries) for c in range(clients)]
        times, wall = in_threads(
            lambda c: search_client(lambda q: remotes[c].search(q, k=K), searches[c], deadline),
            clients,
        )
        rows["search over HTTP"] = _row([s for t in times for s in t], wall)
        written = {i: t for log in logs for i, t in log.written.items()}
        wrong_via_server = check_written(remotes[0], written)
        for remote in remotes:
            remote.close()
    finally:
        exit_code = server.stop()
    with Memory.open(directory) as mem:
        wrong_on_disk = check_written(mem, written)
        times, wall = in_threads(
            lambda c: search_client(lambda q: mem.search(q, k=K), searches[c], deadline),
            clients,
        )
        rows["search in-process"] = _row([s for t in times for s in t], wall)
    return LoadReport(
        requests=sum(len(k) for k in kinds),
        errors=[e for log in logs for e in log.errors],
        acknowledged_writes=len(written),
        write_calls=sum(len(log.seconds[k]) for log in logs for k in SHARES if k != "search"),
        wrong_via_server=wrong_via_server,
        wrong_on_disk=wrong_on_disk,
        server_exit=exit_code,
        rows=rows,
    )


def searched(kinds: list[str], queries: np.ndarray) -> np.ndarray:
    """The query vectors a client's mixed phase searched, in order."""
    return queries[[n % len(queries) for n, kind in enumerate(kinds) if kind == "search"]]


def _row(seconds: list[float], wall: float | None) -> dict[str, float]:
    row = {"n": float(len(seconds)), **percentiles(seconds)}
    if wall is not None:
        row["req/s"] = len(seconds) / wall
    return row


def print_report(report: LoadReport, clients: int) -> None:
    print(f"{clients} clients, {report.requests:,} mixed requests to rag-memory serve on 127.0.0.1")
    print(f"{'phase':<20} {'requests':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, row in report.rows.items():
        rate = f"{row['req/s']:>8.0f}" if "req/s" in row else f"{'':>8}"
        print(
            f"{name:<20} {int(row['n']):>9,} {row['p50']:>8.2f} {row['p95']:>8.2f} "
            f"{row['p99']:>8.2f} {rate}"
        )
    ratio = report.search_ratio
    print(
        f"HTTP + JSON cost per search: p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x, "
        f"throughput {ratio['throughput']:.2f}x lower than in-process"
    )
    print(
        f"errors: {len(report.errors)}; acknowledged writes: {report.write_calls:,} to "
        f"{report.acknowledged_writes:,} slots, the last state of each checked "
        f"(wrong via the server: {len(report.wrong_via_server)}, "
        f"on disk after SIGTERM: {len(report.wrong_on_disk)}); server exit code "
        f"{report.server_exit}"
    )
    for line in (report.errors + report.wrong_via_server + report.wrong_on_disk)[:10]:
        print("  ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=20_000, help="slots in the memory at start")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for all phases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "served"
        make_memory(directory, args.slots)
        report = run_load(
            directory, clients=args.clients, requests=args.requests, timeout_s=args.timeout
        )
    print_report(report, args.clients)
    failed = report.errors or report.wrong_via_server or report.wrong_on_disk or report.server_exit
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
