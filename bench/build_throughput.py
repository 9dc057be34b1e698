"""Embedding throughput of `rag-memory build` vs a bare SentenceTransformer.encode, in one run.

Both sides embed the same texts (the build's own chunks of the first --docs SciFact
documents) with the same model object and batch size. The build side is the whole pipeline:
reading, chunking, encoding block by block, SQLite commits and checkpoints; the bare side is
one `model.encode(texts, batch_size=...)` call, which length-sorts all texts at once. Rounds
alternate the order of the two sides so machine noise hits both alike; the median ratio of
vectors/s (build / bare) is reported (the goal is >= 0.90).

    python bench/build_throughput.py                    # 600 SciFact documents, 2 rounds
    python bench/build_throughput.py --docs 2000 --rounds 3 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rag_memory.embed import Embedder  # noqa: E402
from rag_memory.ingest import BuildConfig, run_build  # noqa: E402
from rag_memory.ingest.blocks import text_blocks  # noqa: E402
from rag_memory.ingest.chunking import Chunker  # noqa: E402
from rag_memory.ingest.pipeline import default_batch_size  # noqa: E402
from rag_memory.ingest.readers import open_records, resolve_source  # noqa: E402
from rag_memory.ingest.records import FieldMap, ProblemLog  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def build_texts(config: BuildConfig, embedder: Embedder) -> list[str]:
    """The exact texts the build embeds, from the build's own reader and chunker."""
    source = resolve_source(config.source, config.format)
    records, fields = open_records(source, config.fields)
    chunker = Chunker.for_model(embedder.model, config.max_tokens, config.overlap)
    blocks = text_blocks(records, fields, chunker, 1 << 30, ProblemLog(), config.limit)
    return [text for block in blocks for text in block.texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SCIFACT)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    embedder = Embedder(device=args.device)
    batch_size = args.batch_size or default_batch_size(embedder)
    base = BuildConfig(
        source=args.source,
        out=Path("unused"),
        fields=FieldMap(),
        limit=args.docs,
        batch_size=batch_size,
        progress=False,
    )
    texts = build_texts(base, embedder)
    embedder.model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    print(
        f"{len(texts):,} chunks of {args.docs:,} documents, batch {batch_size}, "
        f"device {embedder.model.device}"
    )

    def pipeline(workdir: Path, i: int) -> float:
        config = replace(base, out=workdir / f"round-{i}")
        start = time.perf_counter()
        report = run_build(config, embedder=embedder)
        elapsed = time.perf_counter() - start
        if report.vectors_written != len(texts):
            raise SystemExit(f"build wrote {report.vectors_written}, expected {len(texts)}")
        return len(texts) / elapsed

    def bare() -> float:
        start = time.perf_counter()
        embedder.model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return len(texts) / (time.perf_counter() - start)

    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            if i % 2 == 0:
                build_rate, bare_rate = pipeline(Path(tmp), i), bare()
            else:
                bare_rate, build_rate = bare(), pipeline(Path(tmp), i)
            ratios.append(build_rate / bare_rate)
            print(
                f"round {i + 1}: build {build_rate:8.1f} vectors/s   bare encode "
                f"{bare_rate:8.1f} vectors/s   ratio {ratios[-1]:.3f}"
            )
    ratio = statistics.median(ratios)
    print(f"median ratio build / bare encode: {ratio:.3f} (goal >= 0.90)")
    print(
        json.dumps(
            {
                "chunks": len(texts),
                "docs": args.docs,
                "batch_size": batch_size,
                "device": str(embedder.model.device),
                "ratios": ratios,
                "median_ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
