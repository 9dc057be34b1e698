"""Scale checks, outside the default run (`make test-slow`): they take minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BENCH


@pytest.mark.slow
def test_tiered_scale_meets_rss_and_recall_targets(tmp_path: Path) -> None:
    """400k x 384 with a 256 MiB RAM budget (the full 2M run: bench/tiered_scale.py)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "tiered_scale.py"),
            "--out",
            str(tmp_path / "m"),
            "--n",
            "400000",
            "--queries",
            "300",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "PASS" in proc.stdout
