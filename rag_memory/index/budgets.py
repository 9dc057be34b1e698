"""Which RAM and GPU budgets an open memory keeps its sealed shards within, and why.

A budget given at create (or by `rag-memory build --memory-budget`) is recorded in the
manifest and is the default of every later open; an argument to `Memory.open` overrides it
for that open only. Without either, RAM is unlimited and the GPU gets 4 GiB when FAISS sees
one. `stats()["budgets"]` reports each budget with its source.

Without a GPU that FAISS sees (faiss-cpu, or no device visible) there is no GPU tier: a
`gpu_bytes` argument > 0 is refused (InvalidInputError, before anything is written), and a
GPU budget recorded in the manifest (a memory built on a GPU machine) is kept there but is 0
on this machine, reported with the source NO_GPU and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faiss

from ..errors import InvalidInputError
from ..validation import check_int

logger = logging.getLogger(__name__)

DEFAULT_GPU_BYTES = 4 << 30
ARGUMENT, MANIFEST, DEFAULT, NO_GPU = "argument", "manifest", "default", "no-gpu"


@dataclass(frozen=True)
class Budgets:
    """Byte budgets of the fast tiers (ram_bytes None: unlimited)."""

    ram_bytes: int | None
    gpu_bytes: int
    ram_source: str  # ARGUMENT | MANIFEST | DEFAULT
    gpu_source: str  # the same, or NO_GPU

    def to_dict(self) -> dict[str, Any]:
        return {
            "ram_bytes": self.ram_bytes,
            "gpu_bytes": self.gpu_bytes,
            "source": {"ram_bytes": self.ram_source, "gpu_bytes": self.gpu_source},
        }


def check_budget(value: int | None, name: str) -> int | None:
    """A byte budget: None or an int >= 0."""
    return None if value is None else check_int(value, name, minimum=0)


def check_gpu_budget(value: int | None) -> int | None:
    """A `gpu_bytes` argument: a byte budget, and > 0 only where FAISS sees a GPU."""
    value = check_budget(value, "gpu_bytes")
    if value and not _has_gpu():
        raise InvalidInputError(
            f"gpu_bytes={value} asks for a GPU tier, but this FAISS build sees no GPU "
            "(faiss-cpu, or no device visible): pass gpu_bytes=0 or None"
        )
    return value


def _has_gpu() -> bool:
    return faiss.get_num_gpus() > 0


def resolve_budgets(
    recorded: Mapping[str, int | None], ram_bytes: int | None, gpu_bytes: int | None
) -> Budgets:
    """The budgets in force: the open's arguments, else the manifest's, else the defaults."""
    ram, ram_source = _pick(check_budget(ram_bytes, "ram_bytes"), recorded.get("ram_bytes"))
    gpu, gpu_source = _pick(check_gpu_budget(gpu_bytes), recorded.get("gpu_bytes"))
    if gpu is None:
        gpu = DEFAULT_GPU_BYTES if _has_gpu() else 0
    elif gpu and not _has_gpu():  # only a recorded budget gets here: arguments are checked
        logger.warning(
            "the manifest's GPU budget of %d bytes is not used: this FAISS sees no GPU", gpu
        )
        gpu, gpu_source = 0, NO_GPU
    return Budgets(ram, gpu, ram_source, gpu_source)


def _pick(argument: int | None, recorded: int | None) -> tuple[int | None, str]:
    if argument is not None:
        return argument, ARGUMENT
    if recorded is not None:
        return recorded, MANIFEST
    return None, DEFAULT
