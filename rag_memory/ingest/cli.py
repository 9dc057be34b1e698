"""`rag-memory build`: the command line over `run_build` (options map 1:1 onto BuildConfig)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..index.plan import parse_bytes
from .config import DEFAULT_BLOCK_BATCHES, DEFAULT_MEMORY_BUDGET_TEXT, BuildConfig
from .pipeline import run_build
from .readers import FORMATS
from .records import FieldMap
from .report import BuildReport


def _run_on_ray(config: BuildConfig, options: dict[str, Any]) -> BuildReport:
    """The Ray build, imported here: a local build never imports Ray."""
    try:
        from ..distributed.build import RayBuild, run_ray_build
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise click.ClickException(
            "rag-memory build --ray needs the ray extra: pip install 'rag_memory[ray]'"
        ) from None
    return run_ray_build(config, RayBuild(**options))


def _bytes(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("build")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Memory directory to create (or to resume an interrupted build in).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Corpus format; detected from a BEIR folder or the file suffix by default.",
)
@click.option("--id-field", default=None, help='Id field/column [default: "_id", else "id"].')
@click.option(
    "--title-field",
    default="title",
    show_default=True,
    help="Title field, prepended to every chunk (optional in each record).",
)
@click.option("--text-field", default="text", show_default=True, help="Text field/column.")
@click.option("--metadata-fields", default="", help="Comma-separated fields kept as metadata.")
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help="Chunk size in tokens [default: the model's max_seq_length minus specials].",
)
@click.option(
    "--overlap",
    type=int,
    default=32,
    show_default=True,
    help="Tokens shared by neighbouring chunks.",
)
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Encoder batch size [default: 64 on CPU, 256 on GPU].",
)
@click.option(
    "--block-batches",
    type=int,
    default=DEFAULT_BLOCK_BATCHES,
    show_default=True,
    help="Encoder batches per committed block (the unit of resume).",
)
@click.option(
    "--memory-budget",
    default=DEFAULT_MEMORY_BUDGET_TEXT,
    show_default=True,
    callback=_bytes,
    help="Index bytes the index plan must fit, and the RAM budget of sealed shards "
    "(the rest is memory-mapped from disk), e.g. 512MiB, 4GB.",
)
@click.option(
    "--seal-threshold",
    type=int,
    default=None,
    help="Slots in the exact growing shard before it is sealed into IVF shards "
    "[default: IndexConfig's, 100,000].",
)
@click.option("--embedder", default=None, help="sentence-transformers model name or path.")
@click.option(
    "--no-lexical",
    is_flag=True,
    help="No BM25 index: dense search only, faster writes (`rag-memory reindex` adds one later).",
)
@click.option("--device", default=None, help="torch device [default: a GPU if there is one].")
@click.option("--limit", type=int, default=None, help="Stop after this many documents.")
@click.option("--strict", is_flag=True, help="Stop at the first bad record (default: skip it).")
@click.option("--append", is_flag=True, help="Allow adding to an existing memory.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--ray",
    "on_ray",
    is_flag=True,
    help="Build a sharded memory with Ray Data (needs the ray extra): chunking and embedding "
    "in Ray workers, each block written to the shard actors.",
)
@click.option(
    "--address",
    default=None,
    help="With --ray: the Ray cluster ('auto', 'ray://host:10001') [default: this "
    "machine's runtime, started if there is none].",
)
@click.option(
    "--shards",
    type=int,
    default=None,
    help="With --ray: members of the sharded memory, fixed for its life [default: 3].",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="With --ray: embedder actors, each loading the model once (one GPU each where the "
    "cluster has GPUs) [default: 1].",
)
def build_command(
    source: Path,
    out: Path,
    fmt: str | None,
    id_field: str | None,
    title_field: str,
    text_field: str,
    metadata_fields: str,
    max_tokens: int | None,
    overlap: int,
    batch_size: int | None,
    block_batches: int,
    memory_budget: int,
    seal_threshold: int | None,
    embedder: str | None,
    no_lexical: bool,
    device: str | None,
    limit: int | None,
    strict: bool,
    append: bool,
    no_progress: bool,
    as_json: bool,
    on_ray: bool,
    address: str | None,
    shards: int | None,
    workers: int | None,
) -> None:
    """Build a memory in OUT from the corpus SOURCE (rerun the same command to resume).

    SOURCE is a BEIR folder (its corpus.jsonl), or a .jsonl, .csv/.tsv, .parquet or .txt
    file (one document per non-blank line). Bad records are skipped and reported with their
    line numbers; the report is printed and saved as OUT/build_report.json.

    With --ray, OUT is a sharded memory (`rag-memory search OUT` reads it) holding the same
    slots as the local build makes; rerun the same command to resume it.
    """
    ray_options = {
        name: value
        for name, value in (("address", address), ("shards", shards), ("workers", workers))
        if value is not None
    }
    if ray_options and not on_ray:
        named = ", ".join(f"--{name}" for name in ray_options)
        raise click.UsageError(f"{named}: options of a Ray build, which needs --ray")
    if on_ray and append:
        raise click.UsageError("--append is not offered with --ray: a Ray build makes a new memory")
    fields = FieldMap(
        id_field=id_field,
        title_field=title_field,
        text_field=text_field,
        metadata_fields=tuple(f.strip() for f in metadata_fields.split(",") if f.strip()),
    )
    config = BuildConfig(
        source=source,
        out=out,
        format=fmt,
        fields=fields,
        max_tokens=max_tokens,
        overlap=overlap,
        batch_size=batch_size,
        block_batches=block_batches,
        memory_budget=memory_budget,
        seal_threshold=seal_threshold,
        embedder=embedder,
        lexical=not no_lexical,
        device=device,
        strict=strict,
        append=append,
        limit=limit,
        progress=not no_progress,
    )
    report = _run_on_ray(config, ray_options) if on_ray else run_build(config)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
