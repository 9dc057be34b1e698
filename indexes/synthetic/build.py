"""Synthetic recipe: N clustered 384-d unit vectors -> memories/synthetic-N, no embedding cost.

    python indexes/synthetic/build.py --n 200000
    python indexes/synthetic/build.py --n 2000000 --memory-budget 512MiB

Vectors are generated block by block (never all in RAM) from a seeded Gaussian mixture
(rag_memory.datasets.synthetic), committed, and checkpointed: rerun to resume. The report
(printed, and saved as build_report.json in the memory) gives the index plan and peak RSS.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rag_memory.datasets.synthetic import MixtureSpec
from rag_memory.index.plan import parse_bytes
from rag_memory.ingest import SyntheticConfig, run_synthetic

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="vectors")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-budget", default="512MiB")
    parser.add_argument("--block-size", type=int, default=20_000, help="vectors per commit")
    parser.add_argument("--out", type=Path, default=None, help="default memories/synthetic-N")
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = SyntheticConfig(
        out=args.out or ROOT / "memories" / f"synthetic-{args.n}",
        n=args.n,
        spec=MixtureSpec(dim=args.dim, clusters=args.clusters, seed=args.seed),
        memory_budget=parse_bytes(args.memory_budget),
        block_size=args.block_size,
        append=args.append,
    )
    print(run_synthetic(config).summary())


if __name__ == "__main__":
    main()
