"""Writing a result folder: results.json (all figures + config + environment), per_query.jsonl
(retrieval only), report.md (tables a person reads) and the PNG plots.

results.json records the exact command line that reproduces the run, so the quality figures
can be regenerated from the file alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import measure


def command_line(task: str, config: Mapping[str, Any]) -> str:
    """The `rag-memory eval TASK ...` line that reruns a config (option = field name, dashed)."""
    parts = ["rag-memory", "eval", task]
    for key, value in config.items():
        opt = "--" + key.replace("_", "-")
        if value is None or value is False or value == [] or value == ():
            continue
        if value is True:
            parts.append(opt)
        elif isinstance(value, (list, tuple)):
            parts += [opt, ",".join(str(v) for v in value)]
        else:
            parts += [opt, str(value)]
    return " ".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, NA passed through."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def memory_section(results: Mapping[str, Any]) -> str:
    """The memory's own figures: bytes per tier, disk, cache and tier hit figures (or n/a)."""
    src = results.get("systems", results)
    rows = [
        [f"bytes in tier {tier}", fmt_bytes(v["bytes"]), f"{v['shards']} shard(s)"]
        for tier, v in src["tiers"].items()
    ]
    rows += [
        ["memory directory on disk", fmt_bytes(src["disk_bytes"]), ""],
        ["bytes read from disk", fmt_bytes(src["disk_bytes_read"]), ""],
        ["query-cache hit rate", src["cache_hit_rate"], ""],
        ["fast-tier hit ratio", src["fast_tier_hit_ratio"], ""],
        ["peak RSS of the eval process", fmt_bytes(src["peak_rss_bytes"]), ""],
    ]
    return (
        "## Memory figures\n\n"
        + table(["figure", "value", "note"], rows)
        + "\n\nn/a = not measured in this run (the query cache is off, or no query probed a "
        "sealed shard), never a zero."
    )


def write_result_folder(
    out: Path,
    results: dict[str, Any],
    render: Callable[[dict], str],
    plots: Mapping[str, Callable[[Path], Path]],
) -> dict[str, Path]:
    """Write results.json, per_query.jsonl / per_question.jsonl (if any), report.md and each
    plot; return paths."""
    out.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    results["environment"] = {"packages": measure.package_versions(), "machine": measure.machine()}
    results["rerun"] = command_line(results["task"], results["config"])
    written: dict[str, Path] = {}
    per_query = results.pop("per_query", None)
    if per_query is not None:
        path = out / "per_query.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for system, scores in per_query.items():
                for qid, metrics in scores.items():
                    f.write(json.dumps({"system": system, "query_id": qid, **metrics}) + "\n")
        written["per_query"] = path
    per_question = results.pop("per_question", None)
    if per_question is not None:  # records already in their final shape (eval babi)
        path = out / "per_question.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(record) + "\n" for record in per_question)
        written["per_question"] = path
    for name, draw in plots.items():
        written[name] = draw(out / f"{name}.png")
    results["files"] = sorted(p.name for p in written.values()) + ["report.md", "results.json"]
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    written["results"] = path
    path = out / "report.md"
    path.write_text(render(results) + "\n", encoding="utf-8")
    written["report"] = path
    return written
