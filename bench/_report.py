"""How a benchmark hands back its figures: the table printed, and both kept under --out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_and_save(out: Path, stem: str, result: dict[str, Any], table: str) -> None:
    """Print `table`; write it to out/STEM.txt and `result` to out/STEM.json."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / f"{stem}.txt").write_text(table + "\n", encoding="utf-8")
