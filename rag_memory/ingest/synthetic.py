"""Synthetic builds: N clustered unit vectors, for scale tests without the cost of embedding.

The vectors come from `rag_memory.datasets.synthetic` (a seeded Gaussian mixture on the
sphere, generated in chunks), so the same (n, dim, clusters, seed) is the same data set on any
machine and is never held in RAM whole: blocks are generated, committed and dropped. Everything
else (checkpoint, resume, report, index plan) is the text pipeline's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets.synthetic import MixtureSpec, iter_base
from ..memory import Memory
from .blocks import Block, Prefetcher
from .config import DEFAULT_MEMORY_BUDGET
from .pipeline import commit_blocks, finish_report, progress_bar
from .records import ProblemLog
from .report import BuildReport
from .target import create_memory, open_target

DEFAULT_BLOCK = 20_000


@dataclass(frozen=True)
class SyntheticConfig:
    """A synthetic build."""

    out: Path
    n: int  # vectors
    spec: MixtureSpec = MixtureSpec()  # dim, clusters, spread, seed
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    block_size: int = DEFAULT_BLOCK  # vectors per committed block
    append: bool = False
    progress: bool = True


def synthetic_blocks(n: int, spec: MixtureSpec, block_size: int) -> Iterator[Block]:
    """Blocks of `block_size` vectors with ids v000000000.. in generation order."""
    pending: list[np.ndarray] = []
    held = start = index = 0
    chunks = iter_base(spec, n)
    while start < n:
        while held < min(block_size, n - start):
            chunk = next(chunks)
            pending.append(chunk)
            held += len(chunk)
        rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
        size = min(block_size, n - start)
        # copies, not views: a view would keep its whole generator chunk alive in the queue
        vectors, rest = rows[:size].copy(), rows[size:].copy()
        pending, held = ([rest] if len(rest) else []), len(rest)
        ids = [f"v{i:09d}" for i in range(start, start + size)]
        yield Block(
            index,
            ids,
            [f"synthetic vector {i}" for i in ids],
            [{"doc_id": i} for i in ids],
            list(range(start + 1, start + size + 1)),
            position=start + size,
            documents=start + size,
            vectors=vectors,
        )
        start += size
        index += 1


def run_synthetic(config: SyntheticConfig) -> BuildReport:
    """Build (or resume) a memory of `config.n` synthetic vectors."""
    started = time.perf_counter()
    spec = config.spec
    inputs = {
        "source": f"synthetic:{config.n}",
        "format": "synthetic",
        "n": config.n,
        "dim": spec.dim,
        "clusters": spec.clusters,
        "spread": spec.spread,
        "seed": spec.seed,
        "block_size": config.block_size,
        "memory_budget_bytes": config.memory_budget,
        "append": config.append,
    }
    mem, checkpoint, resumed = open_target(
        config.out,
        inputs,
        config.append,
        create=lambda p: create_memory(p, spec.dim, config.memory_budget, config.n),
        open_=lambda p: Memory.open(p),
    )
    problems = ProblemLog()
    with mem:
        prefetch = Prefetcher(synthetic_blocks(config.n, spec, config.block_size))
        bar = progress_bar(config.n, "vec", "build synthetic", config.progress)
        try:
            run = commit_blocks(mem, prefetch, checkpoint, resumed, _no_encoder, problems, bar)
        finally:
            prefetch.close()
            bar.close()
        return finish_report(
            mem,
            inputs,
            run,
            problems,
            time.perf_counter() - started,
            config.memory_budget,
            prefetch.busy_s,
        )


def _no_encoder(texts: list[str]) -> np.ndarray:
    raise RuntimeError("synthetic blocks carry their vectors")  # never reached
