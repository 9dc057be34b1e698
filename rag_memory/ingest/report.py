"""The build report: what went in, what came out, how long each stage took, and peak memory.

Saved as DIR/build_report.json next to the memory (as autofaiss writes index_infos.json)
and printed as a short summary by the CLI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_bytes

REPORT_NAME = "build_report.json"
PLAN_NAME = "index_plan.json"
_SUMMARY_EXAMPLES = 10


@dataclass
class BuildReport:
    """Figures of one build run (a resumed build reports its own run, and what it skipped)."""

    inputs: dict[str, Any]  # source, format, fields, chunking, batch sizes, embedder, budget
    memory: str  # the memory directory
    documents: int = 0  # valid documents read (resumed blocks included)
    chunks: int = 0  # slots produced from them (resumed blocks included)
    vectors_written: int = 0  # slots embedded and committed by this run
    vectors_embedded: int = 0  # texts this run encoded (none for a block found committed)
    slots_total: int = 0  # slots in the memory at the end
    blocks: int = 0
    blocks_resumed: int = 0  # blocks found committed by an earlier run, not re-embedded
    skipped: dict[str, Any] = field(default_factory=dict)  # ProblemLog.to_dict()
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, and total
    vectors_per_s: float = 0.0  # vectors_written / total seconds of this run
    encode_vectors_per_s: float = 0.0  # texts embedded / encode seconds (0: none embedded)
    index_plan: dict[str, Any] = field(default_factory=dict)  # IndexPlan.to_dict()
    index_built: dict[str, Any] = field(default_factory=dict)  # what the memory holds now
    tiers: dict[str, Any] = field(default_factory=dict)  # Memory.stats()["tiers"]
    disk_bytes: int = 0
    peak_rss_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: Path) -> Path:
        """Write build_report.json and index_plan.json atomically into `directory`."""
        path = directory / REPORT_NAME
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        atomic_write_bytes(
            directory / PLAN_NAME, (json.dumps(self.index_plan, indent=2) + "\n").encode()
        )
        return path

    def summary(self) -> str:
        """A few lines a person reads at the end of a long build."""
        s = self.seconds
        lines = [
            f"built {self.memory}: {self.slots_total:,} slots",
            f"  source     {self.inputs.get('source')} ({self.inputs.get('format')})",
            f"  documents  {self.documents:,}   chunks {self.chunks:,}   "
            f"written now {self.vectors_written:,} (embedded {self.vectors_embedded:,})   "
            f"blocks {self.blocks:,} "
            f"({self.blocks_resumed:,} resumed)",
            f"  time       total {s.get('total', 0):.1f}s = "
            f"read+chunk {s.get('read_chunk', 0):.1f}s"
            f" (overlapped), encode {s.get('encode', 0):.1f}s, write {s.get('write', 0):.1f}s",
            f"  speed      {self.vectors_per_s:,.1f} vectors/s overall, "
            f"{self.encode_vectors_per_s:,.1f} vectors/s encoding",
        ]
        plan = self.index_plan
        if plan:
            params = ", ".join(
                f"{k}={plan[k]}" for k in ("nlist", "pq_m", "nprobe", "shards") if plan.get(k)
            )
            lines.append(
                f"  index      {plan['kind']}{' (' + params + ')' if params else ''}"
                f": {plan['reason']}"
            )
        built = self.index_built
        if built:
            lines.append(f"  built      {built['description']}")
        tiers = ", ".join(f"{t} {v['bytes'] / 2**20:,.1f} MiB" for t, v in self.tiers.items())
        lines.append(f"  bytes      {tiers}; on disk {self.disk_bytes / 2**20:,.1f} MiB")
        lines.append(f"  peak RSS   {self.peak_rss_bytes / 2**20:,.1f} MiB")
        total = self.skipped.get("total", 0)
        reasons = ", ".join(f"{k} {v:,}" for k, v in self.skipped.get("by_reason", {}).items())
        lines.append(f"  skipped    {total:,}" + (f" ({reasons})" if total else ""))
        for example in self.skipped.get("examples", [])[:_SUMMARY_EXAMPLES]:
            lines.append(f"    line {example['line']}: {example['reason']}")
        if total > _SUMMARY_EXAMPLES:
            lines.append(f"    ... all listed (up to the first 1,000) in {REPORT_NAME}")
        return "\n".join(lines)
