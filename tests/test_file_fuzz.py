"""Damaged files, fuzzed: every case opens and answers exactly as the clean copy, or raises a
CorruptFileError naming the damaged file; no other exception, no crash, no hang, RSS bounded.

Clean memories are built once, one per sealed kind (codecs.SEALED_KINDS: IVF-Flat, IVF-fp16,
IVF-PQ; some shards in RAM, some on disk, memory-mapped; a few tombstones; one growing slot).
Each case copies one, damages one file of a kind drawn uniformly (manifest.json, slots.sqlite,
codec.faiss, codec.groups.npy, a shard's .faiss, .addr or .vec) by a random single-byte flip, a
truncation or an extension, opens it (read-only or as the writer, alternately) and answers a
fixed set of queries: len, searches with and without a filter (ids, scores, texts, metadata),
get, and iter_vectors.

The cases run in a child process (a segfault cannot take pytest down), under RLIMIT_AS and a
per-case alarm. Seeded and sized by RAG_MEMORY_FUZZ_CASES (default 160, ~20 s here) and
RAG_MEMORY_FUZZ_SEED, e.g. `RAG_MEMORY_FUZZ_CASES=3000 python -m pytest tests/test_file_fuzz.py`;
the figures are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rag_memory.index.codecs import SEALED_KINDS

CASES = int(os.environ.get("RAG_MEMORY_FUZZ_CASES", "160"))
SEED = int(os.environ.get("RAG_MEMORY_FUZZ_SEED", "12"))
KINDS = SEALED_KINDS
FILE_KINDS = ("manifest", "sqlite", "codec", "groups", "faiss", "addr", "vec")
CASE_SECONDS = 60  # a case still running after this is a hang
ADDRESS_SPACE = 6 << 30  # RLIMIT_AS of the child: a runaway allocation fails, it cannot swap
MAX_RSS_MIB = 1024
DIM = 16


def _files_of(memory: Path, file_kind: str) -> list[Path]:
    shards = memory / "shards"
    return {
        "manifest": [memory / "manifest.json"],
        "sqlite": [memory / "slots.sqlite"],
        "codec": [shards / "codec.faiss"],
        "groups": [shards / "codec.groups.npy"],
        "faiss": sorted(shards.glob("0*.faiss")),
        "addr": sorted(shards.glob("0*.addr")),
        "vec": sorted(shards.glob("0*.vec")),
    }[file_kind]


def make_cases(clean: dict[str, Path], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` seeded cases: (memory kind, file, damage, open mode)."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        kind, file_kind = KINDS[i % len(KINDS)], rng.choice(FILE_KINDS)
        file = rng.choice(_files_of(clean[kind], file_kind))
        size = file.stat().st_size
        roll = rng.random()
        if roll < 0.7:
            damage = {"op": "flip", "offset": rng.randrange(size), "xor": rng.randrange(1, 256)}
        elif roll < 0.85:
            damage = {"op": "truncate", "length": rng.randrange(size)}
        else:
            extra = [rng.randrange(256) for _ in range(rng.randrange(1, 64))]
            damage = {"op": "extend", "bytes": extra if rng.random() < 0.5 else [0] * len(extra)}
        cases.append(
            {
                "kind": kind,
                "file": str(file.relative_to(clean[kind])),
                "file_kind": file_kind,
                "damage": damage,
                "read_only": i % 4 < 2,
            }
        )
    return cases


def _damage(file: Path, damage: dict[str, Any]) -> None:
    data = bytearray(file.read_bytes())
    if damage["op"] == "flip":
        data[damage["offset"]] ^= damage["xor"]
    elif damage["op"] == "truncate":
        del data[damage["length"] :]
    else:
        data += bytes(damage["bytes"])
    file.write_bytes(bytes(data))


def answers(path: Path, read_only: bool) -> Any:
    """What a user sees of the memory at `path`, in comparable form."""
    from helpers import unit_vectors

    from rag_memory import Memory

    queries = unit_vectors(8, DIM, seed=7)
    with Memory.open(path, read_only=read_only) as mem:
        hits = mem.search(queries, k=10)
        filtered = mem.search(queries[:3], k=5, where={"n": {"$lt": 600}})
        slots = mem.get(["v1", "v500", "v1199", "late"])
        vectors = sorted(
            (slot.id, row.tobytes().hex())
            for batch, rows in mem.iter_vectors(batch=256)
            for slot, row in zip(batch, rows, strict=True)
        )
        return {
            "len": len(mem),
            "hits": [[(h.id, h.score, h.text, h.metadata) for h in row] for row in hits],
            "filtered": [[(h.id, h.score) for h in row] for row in filtered],
            "get": [(s.id, s.text, s.metadata) for s in slots],
            "vectors": vectors,
        }


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang()


def child(clean_root: Path, work: Path, cases_file: Path, start: int) -> None:
    """Run cases[start:], one JSON line per case on stdout: same / corrupt / wrong / other."""
    from rag_memory import CorruptFileError
    from rag_memory.resources import peak_rss_bytes

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    signal.signal(signal.SIGALRM, _alarm)
    cases = json.loads(cases_file.read_text())
    clean_answers: dict[tuple[str, bool], Any] = {}
    for i in range(start, len(cases)):
        case = cases[i]
        copy = work / f"case{i}"
        shutil.copytree(clean_root / case["kind"], copy)
        key = (case["kind"], case["read_only"])
        signal.alarm(CASE_SECONDS)
        try:
            if key not in clean_answers:
                clean_answers[key] = json.loads(json.dumps(answers(copy, case["read_only"])))
                shutil.rmtree(copy)
                shutil.copytree(clean_root / case["kind"], copy)
            _damage(copy / case["file"], case["damage"])
            got = json.loads(json.dumps(answers(copy, case["read_only"])))
            outcome = "same" if got == clean_answers[key] else "wrong"
            detail = ""
        except CorruptFileError as exc:
            named = str(exc.path.relative_to(copy)) if exc.path.is_relative_to(copy) else exc.path
            outcome = "corrupt" if str(named) == case["file"] else "misnamed"
            detail = f"{named}: {exc.problem}"
        except _Hang:
            outcome, detail = "hang", f"over {CASE_SECONDS} s"
        except BaseException as exc:  # noqa: BLE001  (what the test must never see)
            outcome, detail = "other", f"{type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
        shutil.rmtree(copy, ignore_errors=True)
        rss = peak_rss_bytes() >> 20  # VmHWM: ru_maxrss carries the parent's peak over
        print(json.dumps({"case": i, "outcome": outcome, "detail": detail, "rss": rss}), flush=True)


def run_cases(clean_root: Path, work: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run every case in child processes; a child that dies marks its current case a crash
    and a fresh child goes on with the next one."""
    cases_file = work / "cases.json"
    cases_file.write_text(json.dumps(cases))
    results: list[dict[str, Any]] = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    while len(results) < len(cases):
        start = len(results)
        proc = subprocess.run(
            [sys.executable, __file__, str(clean_root), str(work), str(cases_file), str(start)],
            capture_output=True,
            text=True,
            env=env,
            timeout=CASE_SECONDS * (len(cases) - start) + 120,
        )
        results += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 and len(results) < len(cases):
            tail = proc.stderr[-400:]
            results.append({"case": len(results), "outcome": "crash", "detail": tail, "rss": 0})
    return results


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import build_sealed_memory

    root = tmp_path_factory.mktemp("fuzz-clean")
    for kind in KINDS:
        build_sealed_memory(root / kind, kind, dim=DIM, ram_bytes=40_000)
    return root


def test_fuzzed_files_answer_right_or_raise_naming_the_file(
    clean_root: Path, tmp_path: Path
) -> None:
    clean = {kind: clean_root / kind for kind in KINDS}
    tiers = Counter(
        s["tier"] for s in json.loads((clean["ivf_pq"] / "manifest.json").read_text())["shards"]
    )
    assert tiers["disk"] and tiers["ram"], tiers  # both tiers are exercised
    cases = make_cases(clean, CASES, SEED)
    results = run_cases(clean_root, tmp_path, cases)
    outcomes = Counter(r["outcome"] for r in results)
    by_kind = Counter((c["file_kind"], r["outcome"]) for c, r in zip(cases, results, strict=True))
    print(f"\nfuzz: {len(cases)} cases, seed {SEED}: {dict(outcomes)}")
    print("per file kind:", dict(sorted(by_kind.items())))
    print("peak child RSS MiB:", max(r["rss"] for r in results))
    from helpers import report_probe

    for kind in KINDS:
        mine = Counter(
            r["outcome"] for c, r in zip(cases, results, strict=True) if c["kind"] == kind
        )
        report_probe(
            f"damaged files of a sealed {kind} memory (flip, truncate, extend)",
            sum(mine.values()),
            clean_errors=mine["corrupt"],
            crashes=mine["crash"] + mine["hang"] + mine["other"],
            wrong=mine["wrong"] + mine["misnamed"],
        )
    bad = [
        (cases[r["case"]], r["outcome"], r["detail"])
        for r in results
        if r["outcome"] not in ("same", "corrupt")
    ]
    assert not bad, "\n".join(map(str, bad[:20]))
    assert max(r["rss"] for r in results) < MAX_RSS_MIB
    assert outcomes["corrupt"] > 0 and outcomes["same"] > 0


if __name__ == "__main__":
    child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
