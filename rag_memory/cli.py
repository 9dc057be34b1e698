"""The `rag-memory` command line: a thin layer over the library (click, as sqlite-utils does)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from . import Memory, RagMemoryError
from .distributed.opening import open_read_only
from .evaluation.cli import eval_group
from .generate.config import FUSIONS
from .generate.stream import drain
from .hybrid import DEFAULT_ALPHA, DENSE, LEXICAL, SEARCH_MODES, HybridConfig
from .hybrid import FUSIONS as HYBRID_FUSIONS
from .ingest.cli import build_command
from .store.lexical import LexicalConfig
from .types import Hit
from .verify import verify_memory

# What `rag-memory serve` imports beyond the core: the `server` extra.
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "pydantic", "httpx")


class _Group(click.Group):
    """Turns library errors into one clean line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagMemoryError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.version_option(package_name="rag_memory")
def main(verbose: bool) -> None:
    """rag-memory: an external memory for language models."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _search_options(fusion_flag: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--mode, the hybrid fusion (under `fusion_flag`: `ask` keeps --fusion for the generator's
    fusion) and --alpha, shared by the commands that search."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            (
                click.option(
                    "--mode",
                    type=click.Choice(SEARCH_MODES),
                    default=None,
                    help="dense (embeddings), lexical (BM25) or hybrid (both fused) "
                    "[default: hybrid where the memory has a lexical index, else dense].",
                ),
                click.option(
                    fusion_flag,
                    "hybrid_fusion",
                    type=click.Choice(HYBRID_FUSIONS),
                    default=None,
                    help=f"How hybrid search fuses its legs [default: {HybridConfig.fusion}].",
                ),
                click.option(
                    "--alpha",
                    type=float,
                    default=None,
                    help=f"Dense weight in [0, 1] of convex fusion [default: {DEFAULT_ALPHA}].",
                ),
                click.option(
                    "--recency-half-life",
                    type=float,
                    default=None,
                    help="Favour recent slots among the relevant ones; the half-life is in the "
                    "unit of the write times (seconds, unless they were imported) [default: off].",
                ),
                click.option(
                    "--hops",
                    type=int,
                    default=1,
                    show_default=True,
                    help="Multi-hop read: each hop's query adds what the previous one read.",
                ),
            )
        ):
            command = option(command)
        return command

    return decorate


def _hybrid(mode: str | None, fusion: str | None, alpha: float | None) -> dict[str, Any] | None:
    """The `hybrid=` argument of a search from the command's options (None: the defaults)."""
    given = {name: v for name, v in (("fusion", fusion), ("alpha", alpha)) if v is not None}
    if given and mode in (DENSE, LEXICAL):
        named = ", ".join(f"--{name}" for name in given)
        raise click.UsageError(f"{named}: options of hybrid search, not of --mode {mode}")
    return given or None


def _hit_record(hit: Hit) -> dict[str, Any]:
    """A hit as JSON: score (cosine, BM25 or fused) and each leg's score and rank (null for a
    leg that did not return it, and on dense hits)."""
    return {
        "id": hit.id,
        "score": hit.score,
        "dense_score": hit.dense_score,
        "dense_rank": hit.dense_rank,
        "lexical_score": hit.lexical_score,
        "lexical_rank": hit.lexical_rank,
        "written_at": hit.written_at,
        "hop": hit.hop,
        "relevance": hit.relevance,
        "text": hit.text,
        "metadata": hit.metadata,
    }


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("query")
@click.option("-k", default=10, show_default=True, help="Number of hits.")
@click.option("--where", default=None, help='Metadata filter as JSON, e.g. \'{"src": "x"}\'.')
@_search_options("--fusion")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON lines.")
def search(
    directory: str,
    query: str,
    k: int,
    where: str | None,
    mode: str | None,
    hybrid_fusion: str | None,
    alpha: float | None,
    recency_half_life: float | None,
    hops: int,
    as_json: bool,
) -> None:
    """Print the top-k slots of DIRECTORY (a memory, or a sharded memory's root) for QUERY."""
    try:
        where_obj = None if where is None else json.loads(where)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--where") from None
    hybrid = _hybrid(mode, hybrid_fusion, alpha)
    with open_read_only(directory) as mem:
        hits = mem.search(
            query,
            k=k,
            where=where_obj,
            mode=mode,
            hybrid=hybrid,
            recency_half_life=recency_half_life,
            hops=hops,
        )
    for rank, hit in enumerate(hits, 1):
        if as_json:
            click.echo(json.dumps({"rank": rank, **_hit_record(hit)}))
        else:
            text = hit.text if len(hit.text) <= 100 else hit.text[:97] + "..."
            click.echo(f"{rank:>3}  {hit.score:.4f}  {hit.id}  {text}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("question")
@click.option(
    "--fusion",
    type=click.Choice(FUSIONS),
    default="xattn",
    show_default=True,
    help="How the slots are fused into the answer.",
)
@click.option("-k", default=5, show_default=True, help="Slots to read (0 = closed book).")
@click.option(
    "--max-new-tokens",
    type=int,
    default=None,
    help="Cap on generated tokens (default: the generator's, 32).",
)
@_search_options("--hybrid-fusion")
@click.option("--stream", is_flag=True, help="Print the answer as it is decoded.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON line.")
def ask(
    directory: str,
    question: str,
    fusion: str,
    k: int,
    max_new_tokens: int | None,
    mode: str | None,
    hybrid_fusion: str | None,
    alpha: float | None,
    recency_half_life: float | None,
    hops: int,
    stream: bool,
    as_json: bool,
) -> None:
    """Answer QUESTION from the top-k slots of DIRECTORY with the generator model."""
    options: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    hybrid = _hybrid(mode, hybrid_fusion, alpha)
    with Memory.open(directory, read_only=True) as mem:
        pieces = mem.generate_stream(
            question,
            k=k,
            fusion=fusion,
            mode=mode,
            hybrid=hybrid,
            recency_half_life=recency_half_life,
            hops=hops,
            **options,
        )
        show = stream and not as_json
        answer = drain(pieces, (lambda piece: click.echo(piece, nl=False)) if show else None)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "text": answer.text,
                    "fusion": answer.fusion,
                    "slots": [
                        {**_hit_record(h), "weight": w}
                        for h, w in zip(answer.hits, answer.weights, strict=True)
                    ],
                    "timings": answer.timings,
                }
            )
        )
        return
    click.echo("" if show else answer.text)
    for rank, (hit, weight) in enumerate(zip(answer.hits, answer.weights, strict=True), 1):
        text = hit.text if len(hit.text) <= 80 else hit.text[:77] + "..."
        click.echo(f"{rank:>3}  weight {weight:.3f}  score {hit.score:.4f}  {hit.id}  {text}")
    click.echo(
        "  ".join(
            f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
            for name, value in answer.timings.items()
        )
    )


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--tokenizer", default=None, help="FTS5 tokenizer [default: as now].")
@click.option("--title-key", default=None, help="Metadata key of the title column.")
@click.option("--no-title", is_flag=True, help="No title column: every word is in the body.")
@click.option("--title-weight", type=float, default=None, help="BM25 weight of the title.")
@click.option("--body-weight", type=float, default=None, help="BM25 weight of the body.")
def reindex(
    directory: str,
    tokenizer: str | None,
    title_key: str | None,
    no_title: bool,
    title_weight: float | None,
    body_weight: float | None,
) -> None:
    """Build the lexical (BM25) index of DIRECTORY again from its slots: how a memory made
    without one (or before there was one) gains it, or changes tokenizer or weights.
    Options left out keep the memory's current settings (the defaults where it has none)."""
    if no_title and title_key is not None:
        raise click.UsageError("give --title-key or --no-title, not both")
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("tokenizer", tokenizer),
            ("title_key", title_key),
            ("title_weight", title_weight),
            ("body_weight", body_weight),
        )
        if value is not None
    }
    if no_title:
        changes["title_key"] = None
    with Memory.open(directory) as mem:
        config = replace(mem.manifest.lexical_config() or LexicalConfig(), **changes)
        start = time.perf_counter()
        mem.reindex(config)
        seconds = time.perf_counter() - start
        slots = len(mem)
    settings = ", ".join(f"{name} {value!r}" for name, value in config.to_dict().items())
    click.echo(
        f"lexical index of {directory}: {slots:,} slots indexed in {seconds:.2f} s ({settings})"
    )


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
def stats(directory: str) -> None:
    """Print the statistics of the memory (or sharded memory) in DIRECTORY as JSON."""
    with open_read_only(directory) as mem:
        click.echo(json.dumps(mem.stats(), indent=2))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
def verify(directory: str) -> None:
    """Check every file of DIRECTORY in full (checksums, structure, SQLite integrity, every
    row and vector); print each damaged file and exit 1 if any, 0 if all are sound."""
    report = verify_memory(Path(directory))
    for problem in report.problems:
        click.echo(f"damaged: {problem}")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"checked {len(report.checked)} parts of {directory}: {verdict}")
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port (0: any free one).")
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the API key clients send as 'Authorization: Bearer KEY' "
    "(required to listen beyond loopback).",
)
@click.option("--read-only", is_flag=True, help="Serve without the writer lock: reads only.")
@click.option("--access-log", is_flag=True, help="Log every request (with -v).")
def serve(
    directory: str,
    host: str,
    port: int,
    api_key_file: str | None,
    read_only: bool,
    access_log: bool,
) -> None:
    """Serve the memory in DIRECTORY over HTTP (JSON; OpenAPI schema at /openapi.json) until
    SIGTERM or Ctrl-C, which finish the requests under way first. Needs the server extra."""
    try:
        from .server.run import serve as run_server
    except ModuleNotFoundError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        raise click.ClickException(
            f"rag-memory serve needs the server extra ({exc.name} is not installed): "
            "pip install 'rag_memory[server]'"
        ) from None
    run_server(
        directory,
        host,
        port,
        api_key_file,
        read_only=read_only,
        access_log=access_log,
        ready=lambda url: click.echo(f"serving {directory} on {url}"),
    )


main.add_command(eval_group, name="eval")
main.add_command(build_command, name="build")

if __name__ == "__main__":
    main()
