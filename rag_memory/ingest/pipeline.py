"""The build pipeline: blocks from a reader thread -> encode (this thread) -> commit -> checkpoint.

Reading, parsing and tokenising run in a thread a couple of blocks ahead (bounded queue),
so the CPU or GPU spends its time in the encoder; RAM holds at most a few blocks of text.
Each block is committed by one `Memory.add` (one SQLite transaction) and then the checkpoint
advances, so a kill loses at most the block being encoded (see checkpoint.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..embed import Embedder
from ..index.plan import IndexPlan, choose_index
from ..memory import Memory
from ..resources import peak_rss_bytes
from .blocks import Block, Prefetcher, text_blocks
from .checkpoint import Checkpoint, source_identity, write_checkpoint
from .chunking import Chunker
from .config import CPU_BATCH_SIZE, GPU_BATCH_SIZE, BuildConfig
from .readers import Source, open_records, resolve_source
from .records import ALREADY_STORED, Problem, ProblemLog
from .report import BuildReport
from .target import create_memory, open_target, refuse_early

logger = logging.getLogger(__name__)

Encode = Callable[[list[str]], np.ndarray]


# Inputs of a build that do not change which blocks a rerun may keep (where and how the
# vectors are computed, how bad records are treated): left out of its command's fingerprint.
RUN_ONLY_INPUTS = ("device", "embedder_backend", "strict", "workers", "address")


@dataclass
class BuildRun:
    """Counters of one run of the commit loop."""

    blocks: int = 0
    resumed: int = 0
    chunks: int = 0
    documents: int = 0
    written: int = 0
    embedded: int = 0  # texts encoded (synthetic blocks bring their vectors)
    seconds: dict[str, float] = field(default_factory=lambda: {"encode": 0.0, "write": 0.0})


def _stored(mem: Memory, ids: list[str]) -> set[str]:
    """Which of `ids` the memory already holds (one query)."""
    return {id_ for id_, found in zip(ids, mem.contains(ids), strict=True) if found}


def _commit(
    mem: Memory, block: Block, encode: Encode, run: BuildRun, problems: ProblemLog, append: bool
) -> None:
    keep = list(range(len(block.ids)))
    if append:  # ids stored before this build began are reported, not overwritten
        stored = _stored(mem, block.ids)
        for i in [i for i in keep if block.ids[i] in stored]:
            problems.add(Problem(block.lines[i], ALREADY_STORED, repr(block.ids[i])))
        keep = [i for i in keep if block.ids[i] not in stored]
    if not keep:
        return
    texts = [block.texts[i] for i in keep]
    start = time.perf_counter()
    vectors = block.vectors
    if vectors is None:
        vectors = encode(block.texts)
        run.embedded += len(block.texts)
    run.seconds["encode"] += time.perf_counter() - start
    start = time.perf_counter()
    mem.add(
        texts,
        ids=[block.ids[i] for i in keep],
        metadata=[block.metadata[i] for i in keep],
        vectors=vectors[keep],
    )
    run.seconds["write"] += time.perf_counter() - start
    run.written += len(keep)


def commit_blocks(
    mem: Memory,
    blocks: Iterable[Block],
    checkpoint: Checkpoint,
    resumed: bool,
    encode: Encode,
    problems: ProblemLog,
    bar: Any,
) -> BuildRun:
    """Encode and commit each block not committed yet, advancing the checkpoint after each."""
    run = BuildRun()
    append = checkpoint.slots_before > 0
    position = 0
    for block in blocks:
        run.blocks += 1
        run.chunks += len(block.ids)
        run.documents = block.documents
        # a kill between commit and checkpoint leaves the next block committed already
        done = block.index < checkpoint.blocks_done or (resumed and all(mem.contains(block.ids)))
        if done:
            run.resumed += 1
        else:
            _commit(mem, block, encode, run, problems, append)
        if block.index >= checkpoint.blocks_done:
            start = time.perf_counter()
            checkpoint = checkpoint.advance(block.index + 1)
            write_checkpoint(mem.path, checkpoint)
            run.seconds["write"] += time.perf_counter() - start
        show_progress(bar, run, problems, block.position - position)
        position = block.position
    write_checkpoint(mem.path, replace(checkpoint, done=True))
    return run


def progress_bar(total: int, unit: str, desc: str, enabled: bool) -> Any:
    """The build's tqdm bar over `total` units (bytes, rows or vectors) of its source."""
    return tqdm(
        total=total,
        unit=unit,
        unit_scale=True,
        desc=desc,
        disable=not enabled,
        dynamic_ncols=True,
    )


def show_progress(bar: Any, run: BuildRun, problems: ProblemLog, advanced: int) -> None:
    """After a block: the counters on the bar, and the bar `advanced` units further."""
    bar.set_postfix(
        docs=f"{run.documents:,}",
        chunks=f"{run.chunks:,}",
        skipped=problems.total,
        refresh=False,
    )
    bar.update(advanced)


def finish_report(
    mem: Memory,
    inputs: dict[str, Any],
    run: BuildRun,
    problems: ProblemLog,
    total_s: float,
    budget: int,
    read_s: float,
) -> BuildReport:
    """Choose the index plan for the final size, then gather and save the report."""
    stats = mem.stats()
    report = assemble_report(
        inputs,
        str(mem.path),
        run,
        problems,
        {**run.seconds, "read_chunk": read_s, "total": total_s},
        stats,
        choose_index(stats["slots"], stats["dim"], budget),
        index_built(mem, stats),
    )
    report.save(mem.path)
    return report


def assemble_report(
    inputs: dict[str, Any],
    memory: str,
    run: BuildRun,
    problems: ProblemLog,
    seconds: dict[str, float],
    stats: dict[str, Any],
    plan: IndexPlan,
    built: dict[str, Any],
) -> BuildReport:
    """The report of a run from its counters and the memory's `stats()` (slots, tiers and
    bytes, which a sharded memory's stats give as a memory's do); `seconds` holds "encode"
    and "total"."""
    logger.info("index plan: %s", plan.reason)
    total_s = seconds["total"]
    return BuildReport(
        inputs=inputs,
        memory=memory,
        documents=run.documents,
        chunks=run.chunks,
        vectors_written=run.written,
        vectors_embedded=run.embedded,
        slots_total=stats["slots"],
        blocks=run.blocks,
        blocks_resumed=run.resumed,
        skipped=problems.to_dict(),
        seconds={k: round(v, 3) for k, v in seconds.items()},
        vectors_per_s=round(run.written / total_s, 2) if total_s else 0.0,
        encode_vectors_per_s=round(run.embedded / seconds["encode"], 2)
        if run.embedded and seconds["encode"]
        else 0.0,
        index_plan=plan.to_dict(),
        index_built=built,
        tiers=stats["tiers"],
        disk_bytes=stats["disk_bytes"],
        peak_rss_bytes=peak_rss_bytes(),
    )


def index_built(mem: Memory, stats: dict[str, Any]) -> dict[str, Any]:
    """What the memory holds at the end, which can differ from the plan for the final size:
    the router is trained at the first seal, on the vectors the memory held then."""
    codec = mem.manifest.router
    sealed = [s for s in stats["shards"] if s["sealed"]]
    growing = sum(s["vectors"] for s in stats["shards"] if not s["sealed"])
    if codec is None:
        return {
            "kind": "flat",
            "sealed_shards": 0,
            "growing_vectors": growing,
            "description": f"exact growing shard only ({growing:,} vectors, no sealed shards yet)",
        }
    return {
        "kind": codec.kind,
        "nlist": codec.nlist,
        "groups": codec.groups,
        "sealed_shards": len(sealed),
        "growing_vectors": growing,
        "reason": codec.reason,
        "description": f"{codec.kind}: {codec.nlist:,} partitions in {codec.groups:,} "
        f"groups, {len(sealed):,} sealed shards + {growing:,} vectors in "
        f"the exact growing shard ({codec.reason.split('; ')[-1]})",
    }


def make_encoder(embedder: Embedder, batch_size: int) -> Encode:
    """Exactly what a user would call: `Embedder.encode` on a block (its backend, normalised)."""

    def encode(texts: list[str]) -> np.ndarray:
        return embedder.encode(texts, batch_size=batch_size, progress=False)

    return encode


def default_batch_size(embedder: Embedder) -> int:
    return GPU_BATCH_SIZE if embedder.device_name.startswith("cuda") else CPU_BATCH_SIZE


def expected_vectors(source: Source, limit: int | None) -> int | None:
    """Vectors the build will add at least, where the source says up front how many records it
    holds (Parquet): one per document (chunking adds more); None where nothing says."""
    documents = source.documents
    if documents is None or limit is None:
        return documents
    return min(documents, limit)


def describe_build(
    config: BuildConfig,
    source: Source,
    chunker: Chunker,
    embedder: Embedder,
    batch_size: int,
    **more: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the build's inputs, as its report records them; its command, what its checkpoint's
    fingerprint covers: the inputs less `RUN_ONLY_INPUTS`). `more`: a pipeline's own inputs
    (the Ray build's shards, workers, address, device)."""
    fm = config.fields
    inputs = {
        "source": str(source.path),
        "format": source.format,
        "fields": {
            "id": fm.id_field,
            "title": fm.title_field,
            "text": fm.text_field,
            "metadata": list(fm.metadata_fields),
        },
        "max_tokens": chunker.max_tokens,
        "overlap": chunker.overlap,
        "batch_size": batch_size,
        "block_size": batch_size * config.block_batches,
        "embedder": embedder.name,
        "device": embedder.device_name,
        "embedder_backend": embedder.backend_description,
        "limit": config.limit,
        "strict": config.strict,
        "append": config.append,
        "memory_budget_bytes": config.memory_budget,
        "seal_threshold": config.seal_threshold,
        "lexical": config.lexical,
        **more,
    }
    command = {
        **{k: v for k, v in inputs.items() if k not in RUN_ONLY_INPUTS},
        "source": source_identity(source.path),
    }
    return inputs, command


def run_build(config: BuildConfig, embedder: Embedder | None = None) -> BuildReport:
    """Build (or resume, or --append to) the memory `config.out` from `config.source`."""
    started = time.perf_counter()
    source = resolve_source(config.source, config.format)
    refuse_early(config.out, config.append)
    embedder = embedder or Embedder(config.embedder, device=config.device)
    chunker = Chunker.for_model(embedder, config.max_tokens, config.overlap)
    batch_size = config.batch_size or default_batch_size(embedder)
    block_size = batch_size * config.block_batches
    inputs, command = describe_build(config, source, chunker, embedder, batch_size)
    mem, checkpoint, resumed = open_target(
        config.out,
        command,
        config.append,
        create=lambda p: create_memory(
            p,
            embedder.dim,
            config.memory_budget,
            expected_vectors(source, config.limit),
            embedder,
            config.seal_threshold,
            config.lexical,
        ),
        open_=lambda p: Memory.open(p, embedder=embedder),
    )
    problems = ProblemLog(strict=config.strict)
    with mem:
        records, fields = open_records(source, config.fields)
        prefetch = Prefetcher(
            text_blocks(records, fields, chunker, block_size, problems, config.limit)
        )
        bar = progress_bar(source.total, source.unit, "build", config.progress)
        try:
            run = commit_blocks(
                mem,
                prefetch,
                checkpoint,
                resumed,
                make_encoder(embedder, batch_size),
                problems,
                bar,
            )
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
