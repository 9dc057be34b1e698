"""rag-memory build: formats, chunking, bad input, refusal/append, resume after SIGKILL, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import REPO_ROOT

from rag_memory import Memory
from rag_memory.cli import main
from rag_memory.datasets.synthetic import MixtureSpec
from rag_memory.errors import BuildInputError, BuildStateError, CorruptFileError, MemoryExistsError
from rag_memory.ingest import BuildConfig, FieldMap, SyntheticConfig, run_build, run_synthetic
from rag_memory.ingest.checkpoint import CHECKPOINT_NAME, read_checkpoint
from rag_memory.ingest.pipeline import expected_vectors
from rag_memory.ingest.readers import resolve_source
from rag_memory.ingest.target import create_memory
from rag_memory.manifest import read_manifest
from rag_memory.store.lexical import LexicalConfig
from rag_memory.store.slot_table import TABLE_FILE, SlotTable

WORDS = (
    "alpha beta gamma delta protein cell membrane enzyme river mountain city harbour "
    "engine voltage circuit galaxy comet orbit grammar verb poem melody rhythm"
).split()


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are dicts (dumped as JSON) or raw bytes/str lines (written as they are)."""
    with open(path, "wb") as f:
        for row in rows:
            line = (
                row
                if isinstance(row, bytes)
                else (row if isinstance(row, str) else json.dumps(row)).encode()
            )
            f.write(line.rstrip(b"\n") + b"\n")
    return path


def build(embedder, source: Path, out: Path, **options) -> dict:
    options.setdefault("progress", False)
    return run_build(BuildConfig(source=source, out=out, **options), embedder=embedder).to_dict()


def reasons(report: dict) -> dict[int, str]:
    return {e["line"]: e["reason"] for e in report["skipped"]["examples"]}


def memory_contents(directory: Path) -> dict[str, tuple]:
    """id -> (text, metadata JSON, vector bytes), read straight from the slot table."""
    table = SlotTable(directory / TABLE_FILE, read_manifest(directory).dim, read_only=True)
    try:
        addrs, vectors, _ = table.growing_vectors()
        rows = table.fetch(addrs.tolist())
        return {
            rows[a][0]: (rows[a][1], rows[a][2], v.tobytes())
            for a, v in zip(addrs.tolist(), vectors, strict=True)
        }
    finally:
        table.close()


# -- formats and chunking ----------------------------------------------------------------
def test_jsonl_chunks_long_documents_and_keeps_short_ones_whole(tmp_path: Path, embedder) -> None:
    long_text = " ".join(WORDS[i % len(WORDS)] for i in range(120))
    src = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {
                "_id": "short",
                "title": "Paris",
                "text": "Paris is the capital of France.",
                "src": "x",
            },
            {"_id": "long", "title": "Words", "text": long_text, "src": "y"},
        ],
    )
    report = build(
        embedder,
        src,
        tmp_path / "m",
        max_tokens=40,
        overlap=8,
        fields=FieldMap(metadata_fields=("src",)),
    )
    assert report["documents"] == 2 and report["chunks"] == report["slots_total"] > 3
    with Memory.open(tmp_path / "m", embedder=embedder) as mem:
        short = mem.get(["short"])[0]
        assert short.text == "Paris Paris is the capital of France."  # title prepended
        assert short.metadata == {"doc_id": "short", "title": "Paris", "chunk": 0, "src": "x"}
        chunks = mem.get([f"long#{i}" for i in range(report["chunks"] - 1)])
        assert all(c.text.startswith("Words ") and c.metadata["doc_id"] == "long" for c in chunks)
        assert [c.metadata["chunk"] for c in chunks] == list(range(len(chunks)))
        tokens = embedder.model.tokenizer
        assert all(len(tokens(c.text, add_special_tokens=False)["input_ids"]) <= 40 for c in chunks)
        assert chunks[-1].text.endswith(long_text[-20:])  # nothing lost at the end
        assert mem.search("capital of France", k=1)[0].id == "short"
    saved = json.loads((tmp_path / "m" / "build_report.json").read_text())
    assert saved["index_plan"]["kind"] == "flat" and saved["peak_rss_bytes"] > 0
    assert set(saved["seconds"]) >= {"read_chunk", "encode", "write", "total"}


def lexical_ids(mem: Memory, word: str, k: int = 1000) -> list[str]:
    return [h.id for h in mem.search(word, k=k, mode="lexical")]


def test_built_slots_are_found_by_title_words_and_body_words(tmp_path: Path, embedder) -> None:
    long_text = " ".join(WORDS[i % len(WORDS)] for i in range(120))
    src = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "volc", "title": "Krakatoa", "text": "The volcano erupted with lava in 1883."},
            {"_id": "bees", "title": "Apiary", "text": "Bees make honey from nectar."},
            {"_id": "long", "title": "Lexicon", "text": long_text},
        ],
    )
    report = build(embedder, src, tmp_path / "m", max_tokens=40, overlap=8)
    chunks = [f"long#{i}" for i in range(report["chunks"] - 2)]
    with Memory.open(tmp_path / "m", embedder=embedder) as mem:
        assert mem.get(["volc"])[0].text.startswith("Krakatoa The volcano")
        assert lexical_ids(mem, "krakatoa") == ["volc"]  # a word of the title only
        assert lexical_ids(mem, "nectar") == ["bees"]  # a word of the body only
        assert sorted(lexical_ids(mem, "Lexicon")) == sorted(chunks)  # every chunk's title
        assert lexical_ids(mem, "lava erupted", k=1) == ["volc"]
        # the "title " prefix of the slot text is indexed once, as the title: weighing the
        # title column down leaves a title-only word (nearly) no score, and a body word all
        mem.reindex(LexicalConfig(title_weight=1e-6))
        title_only = mem.search("Lexicon", k=1000, mode="lexical")
        body = mem.search("nectar", k=1, mode="lexical")[0]
        assert len(title_only) == len(chunks)
        assert max(h.score for h in title_only) < 1e-4 * body.score


def test_no_lexical_builds_a_dense_only_memory(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "title": "Lava", "text": "hot rock"}])
    runner = CliRunner()
    args = ["build", str(src), "--no-progress"]
    assert runner.invoke(main, [*args, "--out", str(tmp_path / "d"), "--no-lexical"]).exit_code == 0
    assert runner.invoke(main, [*args, "--out", str(tmp_path / "l")]).exit_code == 0
    assert read_manifest(tmp_path / "d").lexical is None
    assert read_manifest(tmp_path / "l").lexical == LexicalConfig().to_dict()
    report = json.loads((tmp_path / "d" / "build_report.json").read_text())
    assert report["inputs"]["lexical"] is False
    dense = runner.invoke(main, ["search", str(tmp_path / "d"), "lava", "--mode", "lexical"])
    assert dense.exit_code == 2 and "rag-memory reindex" in dense.stderr
    found = runner.invoke(main, ["search", str(tmp_path / "l"), "lava", "--mode", "lexical"])
    assert found.exit_code == 0 and found.stdout.split()[2] == "a"


def test_csv_tsv_text_and_parquet(tmp_path: Path, embedder) -> None:
    (tmp_path / "c.csv").write_text(
        'doc,body,tag\n1,"A line, with a comma",t1\n2,"two\nlines",t2\n'
    )
    report = build(
        embedder,
        tmp_path / "c.csv",
        tmp_path / "m1",
        fields=FieldMap(id_field="doc", text_field="body", metadata_fields=("tag",)),
    )
    assert report["documents"] == 2 and report["skipped"]["total"] == 0
    with Memory.open(tmp_path / "m1", embedder=embedder) as mem:
        assert mem.get(["2"])[0].text == "two\nlines" and mem.get(["1"])[0].metadata["tag"] == "t1"
    (tmp_path / "c.tsv").write_text("id\ttext\nx\thello there\n")
    assert build(embedder, tmp_path / "c.tsv", tmp_path / "m2")["documents"] == 1
    (tmp_path / "notes.txt").write_text("first note\n\nsecond note\n")
    build(embedder, tmp_path / "notes.txt", tmp_path / "m3")
    with Memory.open(tmp_path / "m3", embedder=embedder) as mem:
        assert [s.text for s in mem.get(["notes:1", "notes:3"])] == ["first note", "second note"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "text": ["apple pie", None, "cherry"], "n": [1, 2, 3]}),
        tmp_path / "c.parquet",
    )
    report = build(
        embedder, tmp_path / "c.parquet", tmp_path / "m4", fields=FieldMap(metadata_fields=("n",))
    )
    assert report["documents"] == 2 and reasons(report)[2].startswith("missing field")
    with Memory.open(tmp_path / "m4", embedder=embedder) as mem:
        assert mem.get(["c"])[0].metadata["n"] == 3


def test_format_detection_and_missing_columns(tmp_path: Path, embedder) -> None:
    (tmp_path / "c.dat").write_text("x\n")
    with pytest.raises(BuildInputError, match="--format"):
        build(embedder, tmp_path / "c.dat", tmp_path / "m")
    (tmp_path / "c.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(BuildInputError, match="no column text"):
        build(embedder, tmp_path / "c.csv", tmp_path / "m")
    with pytest.raises(BuildInputError, match="BEIR"):
        build(embedder, tmp_path, tmp_path / "m")


# -- bad input -----------------------------------------------------------------------------
BAD_JSONL = [
    {"_id": "ok1", "text": "a good document"},
    "{not json",  # 2 malformed
    "[1, 2]",  # 3 malformed: not an object
    {"_id": "nt", "title": "no text"},  # 4 missing field
    {"text": "no id here"},  # 5 missing field
    {"_id": "empty", "text": "   "},  # 6 empty text
    {"_id": "ok1", "text": "the same id again"},  # 7 duplicate id
    b'{"_id": "bin", "text": "caf\xe9"}',  # 8 undecodable bytes (latin-1)
    {"_id": 7, "text": "an integer id is fine"},
    {"_id": "ok2", "text": 42},  # 10 malformed: text not a string
]


def test_every_bad_record_is_counted_with_its_line(tmp_path: Path, embedder) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", BAD_JSONL)
    report = build(embedder, src, tmp_path / "m")
    assert report["documents"] == 2 and report["slots_total"] == 2
    lines = reasons(report)
    assert sorted(lines) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert [lines[n].split(":")[0] for n in (2, 3, 4, 5, 6, 7, 8, 10)] == [
        "malformed",
        "malformed",
        "missing field",
        "missing field",
        "empty text",
        "duplicate id",
        "undecodable bytes",
        "malformed",
    ]
    assert report["skipped"]["by_reason"] == {
        "duplicate id": 1,
        "empty text": 1,
        "malformed": 3,
        "missing field": 2,
        "undecodable bytes": 1,
    }
    with Memory.open(tmp_path / "m", embedder=embedder) as mem:
        assert mem.get(["ok1"])[0].text == "a good document" and len(mem.get(["7"])) == 1


def test_bad_csv_rows(tmp_path: Path, embedder) -> None:
    (tmp_path / "c.csv").write_bytes(
        b"id,text\n1,fine\n2\n3,\n,no id\n4,caf\xe9\n1,dup\n5,ok,extra\n"
    )
    report = build(embedder, tmp_path / "c.csv", tmp_path / "m")
    assert report["documents"] == 1
    assert {n: r.split(":")[0] for n, r in reasons(report).items()} == {
        3: "malformed",
        4: "missing field",
        5: "missing field",
        6: "undecodable bytes",
        7: "duplicate id",
        8: "malformed",
    }


def test_strict_stops_at_the_first_bad_record(tmp_path: Path, embedder) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", BAD_JSONL)
    with pytest.raises(BuildInputError, match="line 2: malformed"):
        build(embedder, src, tmp_path / "m", strict=True)


def test_existing_memory_is_refused_unless_append(tmp_path: Path, embedder) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [{"_id": "a", "text": "first corpus"}])
    build(embedder, src, tmp_path / "m")
    with pytest.raises(MemoryExistsError, match="--append"):
        build(embedder, src, tmp_path / "m")
    src2 = write_jsonl(
        tmp_path / "b.jsonl",
        [{"_id": "a", "text": "clashes"}, {"_id": "b", "text": "second corpus"}],
    )
    report = build(embedder, src2, tmp_path / "m", append=True)
    assert report["slots_total"] == 2 and reasons(report) == {1: "id already in the memory: 'a'"}
    with Memory.open(tmp_path / "m", embedder=embedder) as mem:
        assert mem.get(["a"])[0].text == "first corpus"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(MemoryExistsError, match="not a memory"):
        build(embedder, src, tmp_path / "junk")


def test_checkpoint_is_validated_and_bound_to_its_command(tmp_path: Path, embedder) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [{"_id": str(i), "text": f"doc {i}"} for i in range(9)])
    out = tmp_path / "m"
    build(embedder, src, out, batch_size=2, block_batches=1)
    cp = read_checkpoint(out)
    assert cp is not None and cp.done and cp.blocks_done == 5
    data = json.loads((out / CHECKPOINT_NAME).read_text())
    (out / CHECKPOINT_NAME).write_text(json.dumps({**data, "done": False, "blocks_done": 3}))
    with pytest.raises(BuildStateError, match="batch_size: 2 -> 4"):  # another command
        build(embedder, src, out, batch_size=4, block_batches=1)
    report = build(embedder, src, out, batch_size=2, block_batches=1)  # same: resumes
    assert report["blocks_resumed"] == 5 and report["vectors_written"] == 0
    (out / CHECKPOINT_NAME).write_text(json.dumps({**data, "blocks_done": "2"}))
    with pytest.raises(CorruptFileError, match=CHECKPOINT_NAME):
        build(embedder, src, out, batch_size=2, block_batches=1)


# -- resume after SIGKILL ------------------------------------------------------------------
def _build_cmd(src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rag_memory.cli",
        "build",
        str(src),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--block-batches",
        "3",
        "--no-progress",
    ]


def _blocks_done(out: Path) -> int:
    try:
        cp = read_checkpoint(out)
    except CorruptFileError:
        return 0
    return cp.blocks_done if cp else 0


def test_sigkilled_build_resumes_to_the_same_memory(tmp_path: Path) -> None:
    rng = random.Random(1234)
    docs = [
        {
            "_id": f"d{i}",
            "title": f"Doc {i}",
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))),
        }
        for i in range(120)
    ]
    src = write_jsonl(tmp_path / "corpus.jsonl", docs)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ref, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(_build_cmd(src, ref), check=True, env=env, capture_output=True, cwd=REPO_ROOT)
    total = read_checkpoint(ref).blocks_done
    kills = []
    for target in sorted(rng.sample(range(1, total - 1), 3)):
        proc = subprocess.Popen(
            _build_cmd(src, out),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while _blocks_done(out) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.15))  # somewhere inside the next block, or its commit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(_blocks_done(out))
    assert kills[-1] < total, f"the build finished before the last kill: {kills}"
    result = subprocess.run(
        _build_cmd(src, out), env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "build_report.json").read_text())
    assert report["blocks_resumed"] >= kills[-1] and report["blocks"] == total
    expected, got = memory_contents(ref), memory_contents(out)
    assert sorted(got) == sorted(expected) and len(got) == 120
    assert got == expected  # same ids, texts, metadata and bit-identical vectors
    # the lexical index, written in each block's transaction, survived the kills whole
    # (a writer's table: FTS5 runs its integrity-check as an INSERT command)
    table = SlotTable(out / TABLE_FILE, read_manifest(out).dim, False, LexicalConfig())
    try:
        assert table.has_lexical()
        table.check_lexical()  # FTS5 integrity-check against the live slots
    finally:
        table.close()
    with Memory.open(out, read_only=True) as mem:
        assert len(lexical_ids(mem, "doc")) == 120  # the word of every title: every slot once
        assert all(lexical_ids(mem, str(i), k=5) == [f"d{i}"] for i in range(120))


# -- synthetic, CLI --------------------------------------------------------------------------
def test_synthetic_build_streams_blocks_and_plans_ivf(tmp_path: Path) -> None:
    config = SyntheticConfig(
        out=tmp_path / "s",
        n=12_000,
        spec=MixtureSpec(dim=16, clusters=20),
        block_size=5_000,
        memory_budget=1 << 20,
        progress=False,
    )
    report = run_synthetic(config).to_dict()
    assert report["slots_total"] == 12_000 and report["blocks"] == 3
    assert report["index_plan"]["kind"] == "ivf_fp16" and report["index_plan"]["nlist"] == 256
    # the plan is for the final size; what was built is reported beside it (no seal yet here)
    assert (
        report["index_built"]["kind"] == "flat"
        and report["index_built"]["growing_vectors"] == 12_000
    )
    contents = memory_contents(tmp_path / "s")
    vectors = np.frombuffer(contents["v000011999"][2], dtype=np.float32)
    assert np.isclose(np.linalg.norm(vectors), 1.0, atol=1e-5)
    with pytest.raises(MemoryExistsError):
        run_synthetic(config)


def test_text_and_synthetic_builds_create_memories_alike(tmp_path: Path) -> None:
    # both paths: the budget is the RAM budget, the plan is applied where the size is known
    with create_memory(tmp_path / "known", 16, 1 << 20, 12_000) as mem:
        index = mem.manifest.index
        assert index["kind"] == "ivf_fp16" and index["expected_vectors"] == 12_000
        assert index["nlist"] == 256
    with create_memory(tmp_path / "unknown", 16, 1 << 20, None) as mem:
        assert mem.manifest.index["kind"] == "auto"
        assert mem.manifest.index["expected_vectors"] is None
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = {"id": [str(i) for i in range(30)], "text": [f"doc {i}" for i in range(30)]}
    pq.write_table(pa.table(rows), tmp_path / "c.parquet")
    parquet = resolve_source(tmp_path / "c.parquet", None)
    assert expected_vectors(parquet, None) == 30 and expected_vectors(parquet, 10) == 10
    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}])
    assert expected_vectors(resolve_source(jsonl, None), 10) is None


def test_cli_build_prints_the_report_and_errors_cleanly(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "volcanoes erupt lava"}, "{bad"])
    runner = CliRunner()
    result = runner.invoke(main, ["build", str(src), "--out", str(tmp_path / "m"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "built" in result.stdout and "line 2: malformed" in result.stdout
    again = runner.invoke(main, ["build", str(src), "--out", str(tmp_path / "m"), "--no-progress"])
    assert again.exit_code == 2 and again.stderr.startswith("error:") and "--append" in again.stderr
    assert runner.invoke(main, ["build", "--help"]).exit_code == 0
    bad = runner.invoke(
        main, ["build", str(src), "--out", str(tmp_path / "n"), "--memory-budget", "lots"]
    )
    assert bad.exit_code == 2 and "byte size" in bad.output
