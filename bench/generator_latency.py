"""Generator latency: xattn over reused slot KV caches vs concat, at k = 1, 5 and 10.

One run, one process, the default SmolLM2-135M-Instruct on CPU. Slots are ~150-token SQuAD
dev paragraphs (cut to --slot-tokens by the model's tokenizer; deterministic generated text
when the SQuAD file is absent). For every k the slot caches are filled once (untimed), then
each round asks one question per side in turn (xattn, concat, xattn, ...) so machine noise hits
both alike; medians over --rounds. Reported: time to first token (prefill_s), total time for up
to --new-tokens tokens, decode ms per token, the TTFT ratio concat / xattn, and the slot cache's
bytes. Greedy decoding may end before --new-tokens; the tokens column says how many came.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _data import SHARED_DATA
from _timing import peak_rss_mib

from rag_memory.datasets.squad import read_squad
from rag_memory.generate import Generator, GeneratorConfig

SQUAD = SHARED_DATA / "squad-v1.1" / "dev-v1.1.part-a.json"
KS = (1, 5, 10)
_WORDS = (
    "river harbour council winter market bridge engine archive letter festival copper "
    "valley railway museum treaty orchard lantern garrison chapel meadow"
).split()


def passages(n: int) -> tuple[list[str], list[str]]:
    """(paragraphs, questions): SQuAD dev paragraphs with their first questions, or
    deterministic generated text when the file is not there."""
    if SQUAD.is_file():
        squad = read_squad(SQUAD)
        first: dict[str, str] = {}
        for q in squad.questions:
            first.setdefault(q.paragraph_id, q.text)
        pairs = [(p.text, first[p.id]) for p in squad.paragraphs if p.id in first]
        return [c for c, _ in pairs[:n]], [q for _, q in pairs[:n]]
    texts = [
        " ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(160)) + "." for i in range(n)
    ]
    return texts, [f"What is said about the {_WORDS[i % len(_WORDS)]}?" for i in range(n)]


def cut(gen: Generator, texts: list[str], tokens: int) -> list[str]:
    """Each text cut to about `tokens` tokens (the block adds a few of its own)."""
    tok = gen.lm.tokenizer
    return [tok.decode(tok(t, add_special_tokens=False)["input_ids"][:tokens]) for t in texts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="questions per side and k")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--slot-tokens", type=int, default=150)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (more than the idle cores makes decode steps "
        "wait on descheduled threads: 10x slower on a busy 2-core box)",
    )
    parser.add_argument("--kv-dtype", default="float16", choices=["float16", "float32", "int8"])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    gen = Generator(
        GeneratorConfig(threads=args.threads, kv_dtype=args.kv_dtype, cache_bytes=1 << 30)
    )
    texts, questions = passages(max(KS) + args.rounds)
    texts = cut(gen, texts, args.slot_tokens)
    rows = []
    for k in KS:
        # Round r asks question r over the k paragraphs that follow it (its own first).
        sets = [texts[r : r + k] for r in range(args.rounds)]
        for slots in sets:  # fill the slot KV cache, untimed: xattn's steady state
            gen.answer(questions[0], slots, fusion="xattn", max_new_tokens=1)
        times: dict[str, list[dict]] = {"xattn": [], "concat": []}
        for r in range(args.rounds):
            for fusion in times:
                answer = gen.answer(
                    questions[r], sets[r], fusion=fusion, max_new_tokens=args.new_tokens
                )
                times[fusion].append(answer.timings)
        row = {"k": k}
        for fusion, runs in times.items():
            med = {
                name: statistics.median(t[name] for t in runs)
                for name in ("prefill_s", "total_s", "decode_tokens")
            }
            per_token = statistics.median(t["decode_s"] / max(t["decode_tokens"], 1) for t in runs)
            # Greedy answers often end early; the time for exactly --new-tokens tokens is
            # derived from the measured TTFT and per-token decode time.
            row[fusion] = {
                **med,
                "decode_ms_per_token": 1e3 * per_token,
                "total_at_new_tokens_s": med["prefill_s"] + (args.new_tokens - 1) * per_token,
                "slot_cache_hits": sum(t["slot_cache_hits"] for t in runs),
            }
        row["ttft_ratio"] = row["concat"]["prefill_s"] / row["xattn"]["prefill_s"]
        row["slot_cache_bytes"] = gen.slot_cache.stats()["bytes"]
        rows.append(row)
        print(f"k={k} done", file=sys.stderr)
    n = args.new_tokens
    header = (
        f"{'k':>3}  {'TTFT xattn':>10}  {'TTFT concat':>11}  {'ratio':>6}  "
        f"{f'{n} tok xattn':>12}  {f'{n} tok concat':>13}  {'ms/tok x/c':>11}  "
        f"{'tokens x/c':>10}  {'slot cache':>10}"
    )
    lines = [header]
    for row in rows:
        x, c = row["xattn"], row["concat"]
        tokens = f"{x['decode_tokens'] + 1:.0f}/{c['decode_tokens'] + 1:.0f}"
        lines.append(
            f"{row['k']:>3}  {x['prefill_s']:>9.3f}s  {c['prefill_s']:>10.3f}s  "
            f"{row['ttft_ratio']:>5.1f}x  {x['total_at_new_tokens_s']:>11.3f}s  "
            f"{c['total_at_new_tokens_s']:>12.3f}s  "
            f"{x['decode_ms_per_token']:>5.0f}/{c['decode_ms_per_token']:<5.0f}  "
            f"{tokens:>10}  {row['slot_cache_bytes'] / 2**20:>6.1f} MiB"
        )
    lines.append(
        f"'{n} tok' = TTFT + {n - 1} x median decode time per token; 'tokens' = "
        f"median tokens the greedy answers actually had (medians over {args.rounds} "
        f"rounds)"
    )
    stats = gen.slot_cache.stats()
    source = "SQuAD dev" if SQUAD.is_file() else "generated"
    lines.append(
        f"slots ~{args.slot_tokens} tokens ({source}), {args.threads} threads, "
        f"slot KV {stats['storage']}, {stats['entries']} slots cached, "
        f"peak RSS {peak_rss_mib():.0f} MiB"
    )
    print("\n".join(lines))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "slot_cache": stats,
                    "config": vars(args) | {"json": str(args.json)},
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
