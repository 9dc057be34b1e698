"""The reliability probes at a chosen size, and the table of what they found.

Each probe is a test in the suite (CI runs them small); this runs them larger, with their
sizes set through the environment, and prints one row per probe: cases tried, clean errors (a
RagMemoryError naming the fault), crashes or hangs, acknowledged data lost, wrong results. The
tests assert 0 in the last three columns; here they are counted.

    python bench/reliability.py                 # about 25 minutes on 2 cores
    python bench/reliability.py --scale 0       # the sizes CI runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# test -> {environment size: (its CI default, its size here at --scale 1)}
PROBES: dict[str, dict[str, tuple[int, int]]] = {
    "tests/test_durability.py::test_kill9_keeps_every_acknowledged_slot": {
        "RAG_MEMORY_KILL_RUNS": (20, 60)
    },
    "tests/index/test_tiered_crash.py": {"RAG_MEMORY_KILL_RUNS": (20, 60)},
    "tests/test_power_loss.py": {},
    "tests/test_file_fuzz.py": {"RAG_MEMORY_FUZZ_CASES": (160, 3000)},
    "tests/test_io_faults.py": {"RAG_MEMORY_FAULT_SWEEP": (0, 1)},
    "tests/index/test_open_repair.py": {},
    "tests/test_reader_beside_writer.py": {"RAG_MEMORY_SOAK_SECONDS": (12, 240)},
}
COLUMNS = ("cases", "clean_errors", "crashes", "lost", "wrong")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every size (never below CI's)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "probes.jsonl"
        env = {**os.environ, "RAG_MEMORY_PROBE_LOG": str(log), "HF_HUB_OFFLINE": "1"}
        failed = []
        for test, sizes in PROBES.items():
            scaled = {k: str(max(ci, round(n * args.scale))) for k, (ci, n) in sizes.items()}
            run_env = {**env, **scaled}
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                cwd=REPO,
                env=run_env,
                capture_output=True,
                text=True,
            )
            print(done.stdout.strip().splitlines()[-1], f"({test})", file=sys.stderr)
            if done.returncode:
                failed.append(test)
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    print("| probe | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for row in rows:
        print(f"| {row['probe']} | " + " | ".join(f"{row[c]:,}" for c in COLUMNS) + " |")
    if failed:
        print(f"\nfailing probe tests: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
