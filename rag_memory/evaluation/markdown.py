"""report.md for each eval task: the tables a person reads, rendered from results.json alone
(so an old results.json can be re-rendered after this module changes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .report import fmt, fmt_bytes, memory_section, table


def _footer(results: Mapping[str, Any]) -> str:
    env = results["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    machine = env["machine"]
    return (
        f"## Reproduce\n\n```\n{results['rerun']}\n```\n\n"
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs, "
        f"{machine['faiss_threads']} FAISS threads, {machine['faiss_gpus']} GPUs. "
        f"Packages: {packages}."
    )


def _modes_section(results: Mapping[str, Any]) -> list[str]:
    """Quality and single-query latency of every search mode side by side."""
    modes, metrics = results["modes"], results["metrics"]
    quality_rows = [[mode] + [v["quality"][m] for m in metrics] for mode, v in modes.items()]
    speed_rows = [
        [
            mode,
            fmt(v["latency"]["p50_ms"], 3),
            fmt(v["latency"]["p95_ms"], 3),
            fmt(v["latency_over_dense"]["p50"], 2),
            fmt(v["latency_over_dense"]["p95"], 2),
            f"{v['batch_qps']:.1f}",
        ]
        for mode, v in modes.items()
    ]
    lexical = results["lexical"]
    lexical_line = (
        f"Lexical index (FTS5 BM25): tokenizer `{lexical['tokenizer']}`, title key "
        f"`{lexical['title_key']}`, column weights title {lexical['title_weight']} / body "
        f"{lexical['body_weight']}."
        if lexical["enabled"]
        else "The memory has no lexical index."
    )
    hybrid = results["hybrid"]
    return [
        "## Search modes (mean over the queries)",
        table(["mode", *metrics], quality_rows),
        f"Dense figures are the query-vector run checked against exact FAISS below; lexical "
        f"and hybrid search the query texts. Hybrid: fusion `{hybrid['fusion']}`, alpha "
        f"{hybrid['alpha']}, rrf_k {hybrid['rrf_k']}, fetch_k {hybrid['fetch_k']}. " + lexical_line,
        "## Single-query latency per mode (text queries, one at a time)",
        table(
            ["mode", "p50 (ms)", "p95 (ms)", "p50 / dense", "p95 / dense", "batch QPS"],
            speed_rows,
        ),
        "Each mode's query includes what it costs: embedding for dense and hybrid, both legs "
        "and the fusion for hybrid. The query cache is off throughout the run.",
    ]


def _sweep_section(results: Mapping[str, Any]) -> list[str]:
    """The fusion sweep: every grid point's primary metric and Recall@100, both legs alone."""
    if "sweep" not in results:
        return []
    sweep, metric = results["sweep"], results["sweep"]["metric"]
    rows = [
        [
            p["fusion"],
            f"alpha={p['alpha']}" if p["fusion"] == "convex" else f"k={p['rrf_k']}",
            p[metric],
            p["recall@100"],
        ]
        for p in sweep["points"]
    ]
    rows += [
        [f"{leg} only", "-", sweep[f"{leg}_only"][metric], sweep[f"{leg}_only"]["recall@100"]]
        for leg in ("dense", "lexical")
    ]
    check, best = sweep["check"], sweep["best"]
    knob = f"alpha {best['alpha']}" if best["fusion"] == "convex" else f"k {best['rrf_k']}"
    verdict = (
        f"equal hit for hit (address, score, legs) on all {check['queries']} queries"
        if check["match"]
        else f"DIFFERENT on {check['mismatched']} of {check['queries']} queries: the sweep is "
        "not the library's hybrid search"
    )
    return [
        f"## Fusion sweep ({metric}; each leg's top {sweep['depth']} fetched once)",
        table(["fusion", "parameter", metric, "recall@100"], rows),
        f"Best: {best['fusion']} {knob} ({metric} {fmt(best[metric])}). The sweep fuses the "
        f"legs with `rag_memory.hybrid.fuse`; at the run's own setting "
        f"({check['hybrid']['fusion']}, alpha {check['hybrid']['alpha']}, rrf_k "
        f'{check["hybrid"]["rrf_k"]}) it and `Memory.search(mode="hybrid")` are {verdict}.',
        "![fusion sweep](fusion_sweep.png)",
    ]


def render_retrieval(results: Mapping[str, Any]) -> str:
    """Quality per mode, the fusion sweep, dense memory vs exact anchor (difference), speed
    (ratio), embedding vs search."""
    q, s, d = results["quality"], results["systems"], results["dataset"]
    cfg = results["config"]
    quality_rows = [
        [m, q["memory"][m], q["exact_faiss"][m], f"{q['difference'][m]:+.4f}"]
        for m in results["metrics"]
    ]
    mem, ex, ratios = s["memory"], s["exact_faiss"], s["ratios_memory_over_exact"]
    speed_rows = [
        [
            f"single-query latency p{p} (ms)",
            mem["latency"][f"p{p}_ms"],
            ex["latency"][f"p{p}_ms"],
            mem["latency"][f"p{p}_ms"] / ex["latency"][f"p{p}_ms"],
        ]
        for p in (50, 95, 99)
    ]
    speed_rows.append(
        [
            "batch throughput (QPS)",
            f"{mem['batch_qps']:.1f}",
            f"{ex['batch_qps']:.1f}",
            ratios["batch_qps"],
        ]
    )
    tp = s["text_path"]
    text_rows = [
        ["query embedding (once, all queries)", tp["embedding_seconds"]],
        ["search with the query vectors (memory)", tp["search_seconds"]],
        ['text path `mem.search(texts, mode="dense")` (embed + search)', tp["seconds"]],
        ["embedding share of embed + search", tp["embedding_share"]],
    ]
    verdict = (
        "identical per query (exact search)"
        if q["match"]
        else f"differ: max per-query difference {q['max_per_query_difference']:.4g}"
    )
    return "\n\n".join(
        [
            f"# Retrieval evaluation: {d['path']} / {d['split']}",
            f"Model `{results['model']}`; memory `{cfg['memory']}` ({d['memory_slots']} slots); "
            f"{d['queries']} queries with {d['judgements']} judgements; k = {cfg['k']} hits per "
            f"query, scored per document (max over chunks). Metrics by ranx; per-query scores "
            f"of every mode in per_query.jsonl.",
            *_modes_section(results),
            *_sweep_section(results),
            f"## Dense: memory vs exact FAISS (mean over {d['queries']} queries)",
            table(["metric", "memory", "exact FAISS", "memory − exact"], quality_rows),
            f"Memory vs exact anchor: {verdict}.",
            "## Dense speed (same query vectors)",
            table(["figure", "memory", "exact FAISS", "memory / exact"], speed_rows),
            f"Latency over {mem['latency']['n']} queries, one at a time, k = {cfg['k']}. "
            f"Memory build time (s): {fmt(s['build_seconds'], 1)}.",
            "## Embedding vs search (seconds, all queries as one batch)",
            table(["step", "seconds"], text_rows),
            memory_section(results),
            "![latency](latency_histogram.png)",
            _footer(results),
        ]
    )


def render_systems(results: Mapping[str, Any]) -> str:
    """Build time, recall/QPS sweep, latency, bytes per system and per tier."""
    cfg, data, build = results["config"], results["data"], results["build"]
    sweep_rows = [
        [
            p["system"],
            f"{p['knob']}={p['value']}" if p["knob"] else "-",
            p["recall"],
            f"{p['qps']:.1f}",
        ]
        for p in results["sweep"]
    ]
    lat_rows = [
        [name, fmt(v["p50_ms"], 3), fmt(v["p95_ms"], 3), fmt(v["p99_ms"], 3), v["n"]]
        for name, v in results["latency"].items()
    ]
    build_rows = [
        [step, fmt(value, 2)]
        for step, value in [
            ("generate vectors", data["generate_seconds"]),
            ("memory: Memory.create + mem.add(vectors=)", build["memory_seconds"]),
            ("exact FAISS (IndexFlatIP.add)", build["exact_faiss_seconds"]),
            ("IVF-Flat train", build["ivf_train_seconds"]),
            ("IVF-Flat add", build["ivf_add_seconds"]),
        ]
    ]
    build_rows.append(
        ["memory: vectors added per second", fmt(build["memory_vectors_per_second"], 0)]
    )
    ratios = results["ratios_memory_over_exact"]
    memory_knob = any(p["system"] == "memory" and p["knob"] for p in results["sweep"])
    memory_points = (
        "The memory's curve is its tiered index's nprobe over its sealed shards; the ratios are "
        "at its fastest point reaching the recall target."
        if memory_knob
        else "The memory holds no sealed shard (exact search), so it is a single point."
    )
    return "\n\n".join(
        [
            f"# Systems evaluation: {data['n']:,} synthetic vectors x {data['dim']}",
            f"Gaussian mixture ({data['clusters']} clusters, spread {data['spread']}, seed "
            f"{data['seed']}), unit-normalised; {data['queries']} batch queries for "
            f"recall@{cfg['k']} "
            f"and QPS, {data['latency_queries']} queries timed one at a time. IVF-Flat: nlist "
            f"{cfg['nlist']}, nprobe in {cfg['nprobes']}.",
            "## Build (seconds)",
            table(["step", "seconds"], build_rows),
            f"## Recall@{cfg['k']} vs throughput",
            table(["system", "knob", "recall", "QPS"], sweep_rows),
            f"Memory / exact: batch QPS ratio {fmt(ratios['batch_qps'], 3)}, p50 latency ratio "
            f"{fmt(ratios['latency_p50'], 3)}, "
            f"recall difference {ratios['recall_difference']:+.4f}. {memory_points}",
            "![recall vs QPS](recall_qps.png)",
            "## Single-query latency (ms)",
            table(["system", "p50", "p95", "p99", "queries"], lat_rows),
            "![latency](latency_histogram.png)",
            "## Index bytes",
            table(["system", "bytes"], [[k, fmt_bytes(v)] for k, v in results["bytes"].items()]),
            memory_section(results),
            _footer(results),
        ]
    )


def _xattn_sentence(results: Mapping[str, Any]) -> str:
    """How xattn compares with the concat baseline, in words, from the figures."""
    if "xattn_vs_concat" not in results:
        return "xattn and concat were not both run, so they are not compared here."
    x, c, diff = results["scores"]["xattn"], results["scores"]["concat"], results["xattn_vs_concat"]
    f1 = diff["f1_difference"]
    verb = "ties with" if abs(f1) < 0.05 else "scores above" if f1 > 0 else "scores below"
    return (
        f"xattn {verb} concat: EM {x['em']:.1f} vs {c['em']:.1f} "
        f"({diff['em_difference']:+.1f}), F1 {x['f1']:.1f} vs {c['f1']:.1f} ({f1:+.1f}); "
        f"time to first token p50 {x['ttft']['p50_ms'] / 1e3:.2f} s vs "
        f"{c['ttft']['p50_ms'] / 1e3:.2f} s (concat / xattn = "
        f"{fmt(diff['ttft_p50_ratio_concat_over_xattn'], 2)})."
    )


def _int8_sentence(results: Mapping[str, Any]) -> str:
    """How int8 slot KV storage changed the xattn answers, when the run compared it."""
    if "int8_vs_float16" not in results:
        return ""
    d = results["int8_vs_float16"]
    return (
        f"int8 slot KV storage (`xattn-int8`, same model and calls as `xattn`, whose "
        f"caches are float16) gave the same answer to {d['same_answers']} of "
        f"{d['questions']} questions; EM {d['em_difference']:+.2f}, F1 "
        f"{d['f1_difference']:+.2f}."
    )


def _generator_phrase(results: Mapping[str, Any]) -> str:
    settings, cfg = results["generator"], results["config"]
    name = settings.get("injected") or settings["model"] or "SmolLM2-135M-Instruct (default)"
    return f"generator `{name}`, slot weights softmax(score / T) with T = {cfg['temperature']}"


def render_qa(results: Mapping[str, Any]) -> str:
    """EM / F1 / recall@k / latency per mode, the xattn-vs-concat sentence, the latency table."""
    cfg, d, m, p = results["config"], results["dataset"], results["memory"], results["prompt"]
    k, scores = cfg["k"], results["scores"]

    def s(ms: float) -> str:
        return f"{ms / 1e3:.2f}"

    rows = [
        [
            mode,
            fmt(v["em"], 1),
            fmt(v["f1"], 1),
            fmt(v["match"], 1),
            fmt(v["recall_at_k"], 3),
            s(v["ttft"]["p50_ms"]),
            s(v["total"]["p50_ms"]),
        ]
        for mode, v in scores.items()
    ]
    lat_rows = [
        [
            mode,
            s(v["ttft"]["p50_ms"]),
            s(v["ttft"]["p95_ms"]),
            s(v["total"]["p50_ms"]),
            s(v["total"]["p95_ms"]),
            f"{v['slot_cache_hits']} / {v['slot_cache_misses']}",
        ]
        for mode, v in scores.items()
    ]
    search = results["retrieval"]["search_latency"]
    return "\n\n".join(
        [
            f"# QA evaluation: {d['path']}",
            f"{d['sampled']} of the file's {d['questions']} questions (seed {cfg['seed']}); memory "
            f"`{m['path']}` of its {d['paragraphs']} paragraphs ({m['slots']} slots, embedder "
            f"`{m['embedder']}`); k = {k} hits per question, shared by every fusion mode; "
            f"{_generator_phrase(results)}; at most {cfg['max_new_tokens']} new tokens.",
            "## Answer quality",
            table(
                ["mode", "EM", "F1", "match", f"recall@{k}", "TTFT p50 (s)", "total p50 (s)"], rows
            ),
            " ".join(filter(None, [_xattn_sentence(results), _int8_sentence(results)])),
            f"EM and F1 in %, with the official SQuAD v1.1 normalisation (max over the gold "
            f"answers); match: % of answers that contain a gold answer (same normalisation, whole "
            f"words; PopQA's accuracy), which credits a right span inside a sentence. "
            f"recall@{k}: share of questions whose gold paragraph is among the {k} hits "
            f"(n/a: closed-book has no slot, oracle is given the gold paragraph alone, weight 1). "
            f"Closed-book and oracle prompt plainly (`{p['baseline_fusion']}`). The question is "
            f"sent as `{p['question_template']!r}`; answers are post-processed minimally: "
            f"{p['post_processing']}. Per-question answers in per_query.jsonl.",
            "![EM, F1 and match per mode](qa_scores.png)",
            "## Latency per question (s)",
            table(
                [
                    "mode",
                    "TTFT p50",
                    "TTFT p95",
                    "total p50",
                    "total p95",
                    "slot-cache hits / misses",
                ],
                lat_rows,
            ),
            f"The generator's own time (time to first token = prefill, slot encoding included); "
            f"the search, shared by the fusion modes, adds p50 {search['p50_ms']:.1f} ms / p95 "
            f"{search['p95_ms']:.1f} ms. The first mode rotates per question, so the slot caches "
            f"one mode fills for the next are spread evenly. Memory build time (s): "
            f"{fmt(m['build_seconds'], 1)}.",
            "![time to first token](latency_histogram.png)",
            _footer(results),
        ]
    )


# Published accuracies on tasks 1 / 2 / 3 (%), for the report's context: MemNN strongly
# supervised (Weston et al. 2015), MemN2N with 1k training examples (Sukhbaatar et al. 2015),
# an LSTM (Weston et al. 2015).
BABI_ANCHORS = {
    "MemNN (strongly supervised)": {"1": 100.0, "2": 100.0, "3": 100.0},
    "MemN2N (1k examples)": {"1": 100.0, "2": 92.0, "3": 60.0},
    "LSTM": {"1": 50.0, "2": 20.0, "3": 20.0},
}


def render_babi(results: Mapping[str, Any]) -> str:
    """Per task: recall@k, accuracy, reads and latency per configuration; the anchors."""
    cfg, tasks = results["config"], results["tasks"]
    sections = [
        f"# bAbI evaluation: {results['dataset']['path']}",
        f"Tasks {', '.join(tasks)} ({', '.join(t['file'] for t in tasks.values())}). Each "
        "story's statements are written into a fresh scope one at a time in story order, "
        "their line numbers as write times; each question is asked at its point in the story "
        "and reads only what was written before it. Recency: half-life "
        f"{cfg['half_life']} lines, margin {cfg['margin']}; hops: one per supporting fact, "
        f"next query by {cfg['hop_query']}; k = {cfg['k'] or 'the number of supporting facts'}.",
    ]
    for task, t in tasks.items():
        rows = []
        for name, c in t["configs"].items():
            reads = c["reads_per_question"] or {}
            rows.append(
                [
                    name,
                    fmt(c["recall"], 3) if c["recall"] is not None else "n/a",
                    f"{fmt(c['accuracy'], 1)} ({c['answered']})" if c["answered"] else "n/a",
                    fmt(reads.get("hops"), 1) if reads else "0",
                    fmt(reads.get("slots_read"), 1) if reads else fmt(c["slots_in_prompt"], 1),
                    fmt(c["read_latency"]["p50_ms"], 2) if c["read_latency"] else "n/a",
                    fmt(c["answer_seconds_p50"], 2) if c["answer_seconds_p50"] else "n/a",
                ]
            )
        sections += [
            f"## Task {task}: {t['file']}",
            f"{t['stories']} stories, {t['statements']} statements, {t['questions']} questions "
            f"(recall over all of them; accuracy over the sampled ones, count in brackets).",
            table(
                [
                    "configuration",
                    "supporting-fact recall@k",
                    "accuracy %",
                    "hops",
                    "slots read (or in the prompt)",
                    "read p50 ms",
                    "answer p50 s",
                ],
                rows,
            ),
        ]
    anchors = [[name, *(fmt(v.get(task), 0) for task in tasks)] for name, v in BABI_ANCHORS.items()]
    sections += [
        "## Published anchors (accuracy %)",
        table(["model", *(f"task {t}" for t in tasks)], anchors),
        "Accuracy: the answer word as a whole word in the generated answer (eval qa's answer "
        f"match); the question is sent as `{results['prompt']!r}`. Per question and "
        "configuration: per_question.jsonl.",
        *(["![accuracy per configuration](babi_accuracy.png)"] if results["config"]["n"] else []),
        _footer(results),
    ]
    return "\n\n".join(sections)
