"""Which RAM and GPU budgets an open memory keeps its sealed shards within, and why.

A budget given at create (or by `rag-memory build --memory-budget`) is recorded in the
manifest and is the default of every later open; an argument to `Memory.open` overrides it
for that open only. Without either, RAM is unlimited and the GPU gets 4 GiB when FAISS sees
one. `stats()["budgets"]` reports each budget with its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faiss

from ..validation import check_int

DEFAULT_GPU_BYTES = 4 << 30
ARGUMENT, MANIFEST, DEFAULT = "argument", "manifest", "default"


@dataclass(frozen=True)
class Budgets:
    """Byte budgets of the fast tiers (ram_bytes None: unlimited)."""

    ram_bytes: int | None
    gpu_bytes: int
    ram_source: str  # ARGUMENT | MANIFEST | DEFAULT
    gpu_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ram_bytes": self.ram_bytes,
            "gpu_bytes": self.gpu_bytes,
            "source": {"ram_bytes": self.ram_source, "gpu_bytes": self.gpu_source},
        }


def check_budget(value: int | None, name: str) -> int | None:
    """A byte budget: None or an int >= 0."""
    return None if value is None else check_int(value, name, minimum=0)


def resolve_budgets(
    recorded: Mapping[str, int | None], ram_bytes: int | None, gpu_bytes: int | None
) -> Budgets:
    """The budgets in force: the open's arguments, else the manifest's, else the defaults."""
    ram, ram_source = _pick(check_budget(ram_bytes, "ram_bytes"), recorded.get("ram_bytes"))
    gpu, gpu_source = _pick(check_budget(gpu_bytes, "gpu_bytes"), recorded.get("gpu_bytes"))
    if gpu is None:
        gpu = DEFAULT_GPU_BYTES if faiss.get_num_gpus() > 0 else 0
    return Budgets(ram, gpu, ram_source, gpu_source)


def _pick(argument: int | None, recorded: int | None) -> tuple[int | None, str]:
    if argument is not None:
        return argument, ARGUMENT
    if recorded is not None:
        return recorded, MANIFEST
    return None, DEFAULT
