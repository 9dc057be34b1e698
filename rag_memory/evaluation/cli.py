"""`rag-memory eval ...`: thin click commands over the evaluation tasks (`tasks.TASKS`).

Option names equal the config field names (dashed), so the `rerun` line in results.json is a
valid command. This module prints; the library underneath only logs.
"""

from __future__ import annotations

from typing import Any

import click

from ..generate.config import DEFAULT_TEMPERATURE
from ..hybrid import DEFAULT_TEXT_MODE, SEARCH_MODES
from ..hybrid import FUSIONS as HYBRID_FUSIONS
from ..recall import HOP_QUERIES
from .babi import BabiConfig
from .qa import FUSIONS, QAConfig
from .report import fmt
from .retrieval import ALL_MODES, HYBRID_DEFAULTS, MODE_CHOICES, RetrievalConfig
from .systems import SystemsConfig
from .tasks import TASKS, run_task


def _int_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _name_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate a memory; each run writes results.json, report.md and PNG plots to --out."""


@eval_group.command(name="list")
def list_tasks() -> None:
    """List the eval tasks."""
    for name, task in TASKS.items():
        click.echo(f"{name:<10} {task.summary}")


def _written(written: dict[str, Any]) -> None:
    click.echo("wrote " + ", ".join(str(p) for p in written.values()))


@eval_group.command()
@click.option(
    "--memory",
    required=True,
    type=click.Path(file_okay=False),
    help="Memory directory; built from the corpus when it does not exist.",
)
@click.option(
    "--dataset",
    required=True,
    type=click.Path(file_okay=False),
    help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).",
)
@click.option("--split", default="test", show_default=True, help="qrels split to evaluate.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("-k", "--k", default=100, show_default=True, help="Hits per query (run depth).")
@click.option(
    "--latency-queries",
    default=200,
    show_default=True,
    help="Queries timed one at a time (0 = all).",
)
@click.option("--query-batch-size", default=64, show_default=True)
@click.option("--embedder", default=None, help="Embedder for --build (default all-MiniLM-L6-v2).")
@click.option("--build", is_flag=True, help="Build the memory at --memory (must not exist).")
@click.option("--seed", default=0, show_default=True, help="Picks the latency queries.")
@click.option(
    "--mode",
    type=click.Choice(MODE_CHOICES),
    default=ALL_MODES,
    show_default=True,
    help="Search modes reported side by side; dense and its exact anchor always run, "
    "hybrid adds the fusion sweep.",
)
@click.option(
    "--fusion",
    type=click.Choice(HYBRID_FUSIONS),
    default=HYBRID_DEFAULTS.fusion,
    show_default=True,
    help="Hybrid fusion: convex (min-max scores weighted by alpha) or rrf.",
)
@click.option(
    "--alpha",
    default=HYBRID_DEFAULTS.alpha,
    show_default=True,
    help="Weight of the dense leg in convex fusion (0 = lexical, 1 = dense).",
)
@click.option("--rrf-k", default=HYBRID_DEFAULTS.rrf_k, show_default=True, help="RRF's constant k.")
@click.option(
    "--fetch-k",
    default=HYBRID_DEFAULTS.fetch_k,
    show_default=True,
    help="Candidates taken from each leg before fusing.",
)
def retrieval(**options: Any) -> None:
    """BEIR retrieval metrics and systems figures per search mode (dense, lexical, hybrid),
    dense memory vs exact FAISS, and the hybrid fusion sweep, in one run."""
    results, written = run_task("retrieval", RetrievalConfig(**options))
    q, s = results["quality"], results["systems"]
    click.echo(f"{results['dataset']['queries']} queries, split {options['split']}")
    for mode, v in results["modes"].items():
        lat = v["latency"]
        click.echo(
            f"  {mode:<8} nDCG@10 {fmt(v['quality']['ndcg@10'])}  "
            f"Recall@100 {fmt(v['quality']['recall@100'])}  "
            f"p50 {lat['p50_ms']:.2f} ms  p95 {lat['p95_ms']:.2f} ms (text query)"
        )
    if "sweep" in results:
        sw = results["sweep"]
        metric = sw["metric"]
        click.echo(
            "  sweep "
            + ", ".join(
                (f"a={p['alpha']}" if p["fusion"] == "convex" else f"rrf{p['rrf_k']}")
                + f" {fmt(p[metric])}"
                for p in sw["points"]
            )
        )
        click.echo(
            f"  sweep equals Memory.search(mode='hybrid'): {sw['check']['match']} "
            f"({sw['check']['mismatched']} of {sw['check']['queries']} queries differ)"
        )
    click.echo("  dense, memory vs exact FAISS:")
    for m in results["metrics"]:
        click.echo(
            f"  {m:<11} memory {fmt(q['memory'][m])}  exact {fmt(q['exact_faiss'][m])}"
            f"  diff {q['difference'][m]:+.4f}"
        )
    click.echo(f"  quality match: {q['match']}")
    for name in ("memory", "exact_faiss"):
        lat = s[name]["latency"]
        click.echo(
            f"  {name:<11} p50 {lat['p50_ms']:.3f} ms  p95 {lat['p95_ms']:.3f} ms  "
            f"p99 {lat['p99_ms']:.3f} ms  batch {s[name]['batch_qps']:.1f} QPS"
        )
    r = s["ratios_memory_over_exact"]
    click.echo(
        f"  memory/exact: p50 x{fmt(r['latency_p50'], 2)}, batch QPS x{fmt(r['batch_qps'], 3)}"
    )
    tp = s["text_path"]
    click.echo(
        f"  text path {tp['seconds']:.2f} s = embedding {tp['embedding_seconds']:.2f} s "
        f"+ search {tp['search_seconds']:.3f} s"
    )
    _written(written)


@eval_group.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--n", default=1_000_000, show_default=True, help="Database vectors.")
@click.option("--dim", default=384, show_default=True)
@click.option("--clusters", default=1000, show_default=True, help="Mixture components.")
@click.option("--spread", default=1.0, show_default=True, help="Mixture noise (larger = harder).")
@click.option("--seed", default=0, show_default=True)
@click.option("--queries", default=500, show_default=True, help="Batch queries (recall, QPS).")
@click.option(
    "--latency-queries",
    default=100,
    show_default=True,
    help="Queries timed one at a time per system.",
)
@click.option("-k", "--k", default=10, show_default=True, help="recall@k.")
@click.option("--add-batch", default=20_000, show_default=True, help="Vectors per mem.add.")
@click.option(
    "--nlist",
    default=None,
    type=int,
    help="IVF lists (default: the planner's ~4*sqrt(n), at most 1024).",
)
@click.option(
    "--nprobes",
    default=None,
    callback=_int_list,
    help="Comma-separated IVF nprobe values (default 1,2,4,..,nlist/4).",
)
@click.option(
    "--recall-target",
    default=0.95,
    show_default=True,
    help="IVF point timed for latency: the fastest reaching this recall.",
)
@click.option(
    "--memory",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep (or reuse) the built memory here; default: a temporary folder.",
)
def systems(**options: Any) -> None:
    """Synthetic-vector benchmark: build time, recall vs QPS, latency, bytes per tier."""
    results, written = run_task("systems", SystemsConfig(**options))
    b = results["build"]
    click.echo(
        f"{results['data']['n']:,} vectors: memory build {fmt(b['memory_seconds'], 1)} s, "
        f"IVF train {b['ivf_train_seconds']:.1f} s + add {b['ivf_add_seconds']:.1f} s"
    )
    for p in results["sweep"]:
        knob = f" {p['knob']}={p['value']}" if p["knob"] else ""
        click.echo(
            f"  {p['system']}{knob}: recall@{options['k']} {p['recall']:.4f}, {p['qps']:.1f} QPS"
        )
    for name, lat in results["latency"].items():
        click.echo(f"  latency {name}: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms")
    _written(written)


@eval_group.command()
@click.option(
    "--dataset", required=True, type=click.Path(dir_okay=False), help="SQuAD v1.1-format JSON file."
)
@click.option(
    "--memory",
    required=True,
    type=click.Path(file_okay=False),
    help="Memory of the file's paragraphs; built when absent, checked when present.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--n", default=200, show_default=True, help="Questions (a seeded sample).")
@click.option("--seed", default=0, show_default=True, help="Picks the questions.")
@click.option("-k", "--k", default=5, show_default=True, help="Hits per question.")
@click.option(
    "--mode",
    type=click.Choice(SEARCH_MODES),
    default=DEFAULT_TEXT_MODE,
    show_default=True,
    help="Search mode of the hits (the memory is built with a lexical index).",
)
@click.option(
    "--fusions",
    default=",".join(FUSIONS),
    show_default=True,
    callback=_name_list,
    help="Comma-separated fusion modes; closed-book and oracle always run.",
)
@click.option("--max-new-tokens", default=24, show_default=True, help="Per answer.")
@click.option(
    "--temperature",
    default=DEFAULT_TEMPERATURE,
    show_default=True,
    help="T of the slot weights softmax(score / T); smaller = sharper.",
)
@click.option(
    "--model", default=None, help="Generator model name or path (default SmolLM2-135M-Instruct)."
)
@click.option(
    "--kv-int8",
    is_flag=True,
    help="Also answer xattn with int8 slot KV caches (mode xattn-int8) and count "
    "the answers that change.",
)
@click.option(
    "--slot-cache-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep slot KV caches on disk here across runs (a sweep encodes each slot once).",
)
def qa(**options: Any) -> None:
    """SQuAD exact match / F1 / answer match, gold-paragraph recall@k and latency per mode."""
    results, written = run_task("qa", QAConfig(**options))
    d = results["dataset"]
    click.echo(
        f"{d['sampled']} of {d['questions']} questions, {options['mode']} search, "
        f"k={options['k']}, recall@{options['k']} {fmt(results['retrieval']['recall_at_k'], 3)}"
    )
    for mode, v in results["scores"].items():
        click.echo(
            f"  {mode:<11} EM {v['em']:5.1f}  F1 {v['f1']:5.1f}  "
            f"match {v['match']:5.1f}  "
            f"TTFT p50 {v['ttft']['p50_ms'] / 1e3:.2f} s  "
            f"total p50 {v['total']['p50_ms'] / 1e3:.2f} s"
        )
    if "int8_vs_float16" in results:
        d = results["int8_vs_float16"]
        click.echo(
            f"  int8 slot KV: same answer as float16 for {d['same_answers']} of "
            f"{d['questions']} questions"
        )
    _written(written)


@eval_group.command()
@click.option(
    "--data",
    default="../shared/data/babi-en",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder of bAbI files (qaN_*_train.txt / qaN_*_test.txt).",
)
@click.option("--tasks", default="1,2,3", show_default=True, callback=_int_list)
@click.option(
    "--split",
    type=click.Choice(["train", "test", "valid"]),
    default=None,
    help="Which file of a task, where the folder holds several.",
)
@click.option(
    "--n",
    default=BabiConfig.n,
    show_default=True,
    help="Questions per task answered by the model configurations (0 = retrieval only); "
    "retrieval figures cover every question.",
)
@click.option("--k", type=int, default=None, help="Slots read [default: supporting facts].")
@click.option("--half-life", default=BabiConfig.half_life, show_default=True, type=float)
@click.option("--margin", default=BabiConfig.margin, show_default=True, type=float)
@click.option(
    "--hop-query", type=click.Choice(HOP_QUERIES), default=BabiConfig.hop_query, show_default=True
)
@click.option("--fusion", default=BabiConfig.fusion, show_default=True)
@click.option("--max-new-tokens", default=BabiConfig.max_new_tokens, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--model", default=None, help="Generator model [default: SmolLM2-135M-Instruct].")
@click.option(
    "--temperature",
    default=BabiConfig.temperature,
    show_default=True,
    help="T of the slot weights softmax(score / T) of the memory configurations.",
)
@click.option(
    "--slot-cache-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep slot KV caches on disk here across runs.",
)
@click.option("--out", default=BabiConfig.out, show_default=True, type=click.Path())
def babi(**options: Any) -> None:
    """bAbI: facts written as the story goes; recall, accuracy and reads per configuration."""
    results, written = run_task("babi", BabiConfig(**options))
    for task, t in results["tasks"].items():
        click.echo(f"task {task} ({t['file']}, {t['questions']} questions):")
        for name, c in t["configs"].items():
            recall = "" if c["recall"] is None else f"recall@k {c['recall']:.3f}  "
            accuracy = "" if c["accuracy"] is None else f"accuracy {c['accuracy']:5.1f}%  "
            click.echo(f"  {name:<20} {recall}{accuracy}")
    _written(written)
