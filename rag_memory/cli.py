"""The `rag-memory` command line: a thin layer over the library (click, as sqlite-utils does)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from . import Memory, RagMemoryError
from .evaluation.cli import eval_group
from .generate.config import FUSIONS
from .generate.stream import drain
from .ingest.cli import build_command
from .verify import verify_memory


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


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("query")
@click.option("-k", default=10, show_default=True, help="Number of hits.")
@click.option("--where", default=None, help='Metadata filter as JSON, e.g. \'{"src": "x"}\'.')
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON lines.")
def search(directory: str, query: str, k: int, where: str | None, as_json: bool) -> None:
    """Print the top-k slots of DIRECTORY for QUERY."""
    try:
        where_obj = None if where is None else json.loads(where)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--where") from None
    with Memory.open(directory, read_only=True) as mem:
        hits = mem.search(query, k=k, where=where_obj)
    for rank, hit in enumerate(hits, 1):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "rank": rank,
                        "id": hit.id,
                        "score": hit.score,
                        "text": hit.text,
                        "metadata": hit.metadata,
                    }
                )
            )
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
@click.option("--stream", is_flag=True, help="Print the answer as it is decoded.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON line.")
def ask(
    directory: str,
    question: str,
    fusion: str,
    k: int,
    max_new_tokens: int | None,
    stream: bool,
    as_json: bool,
) -> None:
    """Answer QUESTION from the top-k slots of DIRECTORY with the generator model."""
    options: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    with Memory.open(directory, read_only=True) as mem:
        pieces = mem.generate_stream(question, k=k, fusion=fusion, **options)
        show = stream and not as_json
        answer = drain(pieces, (lambda piece: click.echo(piece, nl=False)) if show else None)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "text": answer.text,
                    "fusion": answer.fusion,
                    "slots": [
                        {"id": h.id, "score": h.score, "weight": w, "text": h.text}
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
def stats(directory: str) -> None:
    """Print the statistics of the memory in DIRECTORY as JSON."""
    with Memory.open(directory, read_only=True) as mem:
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


main.add_command(eval_group, name="eval")
main.add_command(build_command, name="build")

if __name__ == "__main__":
    main()
