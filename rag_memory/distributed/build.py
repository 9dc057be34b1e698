"""`rag-memory build SOURCE --out ROOT --ray`: a sharded memory built with Ray Data.

Ray Data reads, chunks and embeds the corpus (build_stages.py: one read task, the chunk
stage, an actor pool of `workers` embedders). This process, the driver, takes the embedded
rows in corpus order and applies the local build's sequential rules (`BlockCutter`: bad
records reported, a document whose id repeats an earlier one dropped, blocks of
`block_size` slots, --limit), then writes each block with one `ShardedMemory.add`, which
sends each shard actor its ids' part; the checkpoint advances after it. The finished memory
therefore holds what `rag-memory build SOURCE --out DIR` makes of the same corpus: the same
ids, texts and metadata, and the same vectors to float tolerance (the actors embed other
batches than the local blocks, and padding within a batch moves the last bits).

Resume: ROOT keeps the local build's checkpoint (its command's fingerprint, and whether it
finished), so another command is refused (BuildStateError) and the same one continues. The
rerun reads the ids stored so far and hands their hashes to the embedders, which skip those
rows: a block written before the kill is confirmed (`contains`), counted as resumed and
never embedded again; a block half written (a kill between two shards' parts) gets the rest.

In the report, "encode" and "read_chunk" are the seconds the Ray workers spent, summed over
them (with several embedders, more than the wall time); "write" and "total" are the
driver's wall seconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import ray
import ray.data

from ..embed import Embedder
from ..errors import BuildStateError, InvalidInputError
from ..id_hash import id_hash
from ..index.plan import choose_index
from ..ingest.blocks import BlockCutter, Cut
from ..ingest.checkpoint import Checkpoint, write_checkpoint
from ..ingest.chunking import Chunker
from ..ingest.config import CPU_BATCH_SIZE, GPU_BATCH_SIZE, BuildConfig
from ..ingest.pipeline import (
    BuildRun,
    assemble_report,
    describe_build,
    expected_vectors,
    index_built,
    progress_bar,
    show_progress,
)
from ..ingest.readers import Source, resolve_source
from ..ingest.records import Problem, ProblemLog
from ..ingest.report import BuildReport
from ..ingest.target import memory_options, open_target, refuse_early
from ..locks import LOCK_NAME
from ..validation import check_int
from .build_stages import CorpusDatasource, EmbedBatches, chunk_documents, problem_of
from .layout import MAX_SHARDS, SHARDED_MANIFEST, member_paths
from .opening import open_members
from .runtime import DEFAULT_SHARD_CPUS, connect
from .sharded import ShardedMemory

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = 3  # --shards: members of the sharded memory (fixed for its life)
DEFAULT_WORKERS = 1  # --workers: embedder actors
_EMBEDDER_CPUS = 1.0  # each embedder actor's CPU (its model's threads)
_READ_CPUS = 2.0  # the read task and the chunk stage, where Ray does not fuse it


@dataclass(frozen=True)
class RayBuild:
    """How the Ray build runs: `shards` members, `workers` embedder actors, the Ray runtime
    at `address` (None: this process's, or a new local one; "auto" or "ray://host:10001": a
    cluster)."""

    shards: int = DEFAULT_SHARDS
    workers: int = DEFAULT_WORKERS
    address: str | None = None

    def __post_init__(self) -> None:
        check_int(self.shards, "shards", maximum=MAX_SHARDS)
        check_int(self.workers, "workers")

    def cpus_needed(self) -> float:
        """Logical CPUs the build holds at once: its shard actors, its CPU embedders (a GPU
        embedder's CPU too), its read and chunk tasks."""
        return self.shards * DEFAULT_SHARD_CPUS + self.workers * _EMBEDDER_CPUS + _READ_CPUS


class _Slot(NamedTuple):
    """One embedded slot, as the driver holds it until its block is written."""

    id: str
    text: str
    metadata: dict[str, Any]
    vector: np.ndarray
    stored: bool  # the embedders found its id stored before this run (not embedded)


class _Document(NamedTuple):
    line: int
    id: str
    slots: list[_Slot]
    position: int


class _Skipped(NamedTuple):
    problem: Problem
    position: int


def run_ray_build(
    config: BuildConfig, ray_build: RayBuild | None = None, embedder: Embedder | None = None
) -> BuildReport:
    """Build (or resume) the sharded memory `config.out` from `config.source` on Ray.
    `embedder`: the driver's (chunking, dimension, the memory's queries), as for `run_build`;
    None loads `config.embedder` on this CPU. The actors load their own by its name."""
    started = time.perf_counter()
    ray_build = ray_build or RayBuild()
    if config.append:
        raise InvalidInputError("a Ray build makes a new sharded memory: --append is not offered")
    source = resolve_source(config.source, config.format)
    refuse_early(config.out, False, SHARDED_MANIFEST, "choose another --out")
    leave = connect(ray_build.address, ray_build.cpus_needed())
    try:
        driver = embedder or Embedder(config.embedder, device="cpu")
        return _build(config, ray_build, source, driver, started)
    finally:
        if leave:
            ray.shutdown()


def _uses_gpus(device: str | None) -> bool:
    """One GPU per embedder where the cluster has GPUs and --device does not say otherwise."""
    wanted = device is None or device.startswith("cuda")
    return wanted and ray.cluster_resources().get("GPU", 0) >= 1


def _build(
    config: BuildConfig, ray_build: RayBuild, source: Source, embedder: Embedder, started: float
) -> BuildReport:
    gpus = _uses_gpus(config.device)
    chunker = Chunker.for_model(embedder, config.max_tokens, config.overlap)
    batch_size = config.batch_size or (GPU_BATCH_SIZE if gpus else CPU_BATCH_SIZE)
    device = config.device or ("cuda" if gpus else "cpu")
    inputs, command = describe_build(
        config,
        source,
        chunker,
        embedder,
        batch_size,
        device=device,
        # what an actor's Embedder picks there: torch on a GPU, else what this one picked
        embedder_backend="torch" if gpus else embedder.backend_description,
        shards=ray_build.shards,
        workers=ray_build.workers,
        address=ray_build.address,
    )
    expected = expected_vectors(source, config.limit)
    options = memory_options(
        embedder.dim,
        config.memory_budget,
        None if expected is None else -(-expected // ray_build.shards),  # each member's share
        config.seal_threshold,
        config.lexical,
    )
    mem, checkpoint, resumed = open_target(
        config.out,
        command,
        False,
        create=lambda p: ShardedMemory.create(
            p, ray_build.shards, embedder=embedder, cache=None, **options
        ),
        open_=lambda p: _reopen(p, embedder, ray_build.shards),
        marker=SHARDED_MANIFEST,
        half_created=_half_created,
    )
    problems = ProblemLog(strict=config.strict)
    with mem:
        stored = _stored_hashes(mem) if resumed else np.empty(0, dtype=np.uint64)
        block_size = batch_size * config.block_batches
        embed = {
            "embedder": embedder.name,
            "device": config.device or (None if gpus else "cpu"),
            "batch_size": batch_size,
            "stored": stored,
            "threads": _encoder_threads(ray_build),
        }
        data = _dataset(source, config, chunker, embed, block_size, ray_build.workers, gpus)
        run = BuildRun()
        cutter: BlockCutter[_Slot] = BlockCutter(block_size, problems, config.limit)
        bar = progress_bar(source.total, source.unit, "build (ray)", config.progress)
        try:
            with closing(_batches(data)) as it:
                writer = _BlockWriter(mem, run, checkpoint, problems, bar)
                _write_blocks(_documents(it, run), cutter, writer)
        finally:
            bar.close()
        stats = mem.stats()
    members = _members_built(config.out)
    report = assemble_report(
        inputs,
        str(config.out),
        run,
        problems,
        {**run.seconds, "total": time.perf_counter() - started},
        stats,
        choose_index(max(m["slots"] for m in stats["members"]), stats["dim"], config.memory_budget),
        members,
    )
    report.save(config.out)
    return report


def _encoder_threads(ray_build: RayBuild) -> int | None:
    """Each CPU embedder's threads. On a local runtime the actors share this machine's cores,
    and ONNX Runtime's default (a thread per core in each) oversubscribes them: measured on
    2 cores, 2 actors so encoded 4 SciFact vectors/s each, one process alone 23. On a
    cluster, None: one per core of the actor's node."""
    if ray_build.address is not None:
        return None
    return max(1, (os.cpu_count() or 1) // ray_build.workers)


def _reopen(root: Path, embedder: Embedder, shards: int) -> ShardedMemory:
    mem = ShardedMemory.open(root, embedder=embedder, cache=None)
    if mem.shards != shards:
        mem.close()
        raise BuildStateError(
            f"{root} holds a sharded memory of {mem.shards} shards, not --shards {shards}"
        )
    return mem


def _half_created(root: Path) -> bool:
    """A `ShardedMemory.create` killed before its sharded.json: its lock and members only."""
    names = {p.name for p in root.iterdir()}
    return names <= {LOCK_NAME, *member_paths(root, MAX_SHARDS, None)}


def _stored_hashes(mem: ShardedMemory) -> np.ndarray:
    """The sorted id hashes of every slot stored (what a rerun need not embed again)."""
    ids = mem.ids()
    return np.unique(np.fromiter((id_hash(i) for i in ids), dtype=np.uint64, count=len(ids)))


def _dataset(
    source: Source,
    config: BuildConfig,
    chunker: Chunker,
    embed: dict[str, Any],
    block_size: int,
    workers: int,
    gpus: bool,
) -> ray.data.Dataset:
    """read -> chunk -> embed, in corpus order; the embedders are a fixed pool of `workers`
    actors, one GPU each if `gpus`. Each actor call embeds `block_size` rows, as the local
    build encodes a block: the encoder sorts a call's texts by length before it batches
    them, so calls of one batch would pad far more (a few times slower on mixed lengths)."""
    data = ray.data.read_datasource(CorpusDatasource(source, config.fields))
    data = data.map_batches(chunk_documents, fn_kwargs={"chunker": chunker}, batch_size=None)
    data = data.map_batches(
        EmbedBatches,
        fn_constructor_kwargs=embed,
        batch_size=block_size,
        # one block at a time per actor: by default the first actor ready is handed several,
        # and embeds them one after the other while the others load their model
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        num_cpus=_EMBEDDER_CPUS,
        **({"num_gpus": 1} if gpus else {}),
    )
    context = data.context
    context.execution_options.preserve_order = True  # the driver's rules need corpus order
    context.enable_progress_bars = False  # the build shows its own
    return data


def _batches(data: ray.data.Dataset) -> Generator[dict[str, np.ndarray], None, None]:
    """The dataset's embedded rows, batch by batch, as a generator whose `close` (on an error
    or at --limit) stops Ray Data's execution and its actors at once, not when collected."""
    yield from data.iter_batches(batch_size=None, batch_format="numpy")


def _documents(
    batches: Iterable[dict[str, np.ndarray]], run: BuildRun
) -> Iterator[_Skipped | _Document]:
    """The embedded rows regrouped: each bad record (`_Skipped`), each document with all its
    slots (`_Document`); the workers' seconds and embeddings are counted into `run`."""
    run.seconds.setdefault("read_chunk", 0.0)
    slots: list[_Slot] = []
    for batch in batches:
        run.embedded += int(np.count_nonzero(batch["embedded"]))
        run.seconds["encode"] += float(batch["encode_s"].sum())
        run.seconds["read_chunk"] += float(batch["prep_s"].sum())
        for i, line in enumerate(batch["line"].tolist()):
            position = int(batch["position"][i])
            if batch["problem"][i]:
                yield _Skipped(problem_of(line, batch["problem"][i], batch["detail"][i]), position)
                continue
            metadata = json.loads(batch["metadata"][i])
            vector, stored = batch["vector"][i], bool(batch["stored"][i])
            slots.append(_Slot(batch["id"][i], batch["text"][i], metadata, vector, stored))
            if batch["last"][i]:
                yield _Document(line, batch["doc"][i], slots, position)
                slots = []


class _BlockWriter:
    """Writes each block the cutter completes, then advances the checkpoint and the bar."""

    def __init__(
        self,
        mem: ShardedMemory,
        run: BuildRun,
        checkpoint: Checkpoint,
        problems: ProblemLog,
        bar: Any,
    ) -> None:
        self.mem = mem
        self.run = run
        self.checkpoint = checkpoint
        self.problems = problems
        self.bar = bar
        self.position = 0

    def write(self, cuts: list[Cut[_Slot]]) -> None:
        for cut in cuts:
            _commit(self.mem, cut, self.run)
            start = time.perf_counter()
            self.checkpoint = self.checkpoint.advance(cut.index + 1)
            write_checkpoint(self.mem.path, self.checkpoint)
            self.run.seconds["write"] += time.perf_counter() - start
            show_progress(self.bar, self.run, self.problems, cut.position - self.position)
            self.position = cut.position

    def finish(self) -> None:
        write_checkpoint(self.mem.path, replace(self.checkpoint, done=True))


def _write_blocks(
    documents: Iterator[_Skipped | _Document],
    cutter: BlockCutter[_Slot],
    writer: _BlockWriter,
) -> None:
    """The local build's rules over the documents (`BlockCutter`), each block written."""
    for item in documents:
        if isinstance(item, _Skipped):
            cutter.skip(item.problem, item.position)
        else:
            ids = [s.id for s in item.slots]
            writer.write(cutter.add(item.line, item.id, ids, item.slots, item.position))
        if cutter.full:
            break
    writer.write(cutter.rest())
    writer.finish()


def _commit(mem: ShardedMemory, cut: Cut[_Slot], run: BuildRun) -> None:
    """Write the block's slots that are not stored yet (all of them, on a fresh build)."""
    slots = cut.items
    run.blocks += 1
    run.chunks += len(slots)
    run.documents = cut.documents
    flagged = [i for i, s in enumerate(slots) if s.stored]
    found = mem.contains([slots[i].id for i in flagged]) if flagged else []
    confirmed = {i for i, f in zip(flagged, found, strict=True) if f}
    todo = [i for i in range(len(slots)) if i not in confirmed]
    if not todo:
        run.resumed += 1
        return
    start = time.perf_counter()
    vectors = np.stack([slots[i].vector for i in todo])
    # a stored id's hash matched this id's (a collision), so nobody embedded it yet
    missed = [j for j, i in enumerate(todo) if slots[i].stored]
    if missed:
        vectors[missed] = mem.embed([slots[todo[j]].text for j in missed])
        run.embedded += len(missed)
        run.seconds["encode"] += time.perf_counter() - start
    start = time.perf_counter()
    mem.add(
        [slots[i].text for i in todo],
        ids=[slots[i].id for i in todo],
        metadata=[slots[i].metadata for i in todo],
        vectors=vectors,
    )
    run.seconds["write"] += time.perf_counter() - start
    run.written += len(todo)


def _members_built(root: Path) -> dict[str, Any]:
    """What the members hold at the end (`index_built` of each, opened read-only)."""
    with open_members(root) as members:
        built = [index_built(m, m.stats()) for m in members]
    return {
        "kind": "sharded",
        "shards": len(built),
        "members": built,
        "description": f"{len(built)} members routed by id hash; "
        + "; ".join(f"shard {i}: {b['description']}" for i, b in enumerate(built)),
    }
