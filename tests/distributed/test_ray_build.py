"""`rag-memory build --ray`: the sharded memory equals the local build of the same corpus (ids,
texts, metadata, skipped records; vectors to 1e-4), resumes after an interruption without
embedding again what was written, refuses another command, and `rag-memory search` reads it.

One small corpus (a few hundred short documents, three long ones that are chunked, bad
records and a repeated id), built once locally and once on Ray (3 shards, 2 embedders)
through the CLI for the module; blocks of 32 slots, so an interrupted build has several.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from rag_memory import Memory
from rag_memory.cli import main
from rag_memory.distributed import ShardedMemory
from rag_memory.distributed import build as ray_build_module
from rag_memory.distributed.build import RayBuild, run_ray_build
from rag_memory.distributed.layout import read_manifest, shard_of
from rag_memory.distributed.opening import open_members
from rag_memory.errors import BuildStateError
from rag_memory.evaluation.anchor import anchor_from_memory
from rag_memory.id_hash import id_hash
from rag_memory.ingest import BuildConfig, FieldMap, run_build
from rag_memory.ingest.checkpoint import read_checkpoint

WORDS = (
    "alpha beta gamma delta protein cell membrane enzyme river mountain city harbour "
    "engine voltage circuit galaxy comet orbit grammar verb poem melody rhythm"
).split()
OPTIONS = {"batch_size": 16, "block_batches": 2, "fields": FieldMap(metadata_fields=("src",))}
CLI_OPTIONS = ["--batch-size", "16", "--block-batches", "2", "--metadata-fields", "src"]
BAD_LINES = {  # line -> the reason the local build gives (both builds must give these)
    13: "malformed: not JSON (Expecting value)",
    24: "duplicate id: 'd5' repeats an earlier id",
    35: "empty text: text is empty (id x)",
    46: "undecodable bytes: a field is not valid UTF-8 (id 'bad\\udcff')",
}


def write_corpus(path: Path, documents: int = 160) -> Path:
    rng = random.Random(7)
    with open(path, "wb") as f:
        for i in range(documents):
            words = 300 if i in (3, 80, 140) else rng.randint(4, 30)
            text = " ".join(rng.choice(WORDS) for _ in range(words))
            row = {"_id": f"d{i}", "title": f"title {i}", "text": text, "src": f"s{i % 3}"}
            f.write((json.dumps(row) + "\n").encode())
            extra = {
                11: b"not json",
                21: json.dumps({"_id": "d5", "text": "a repeated id"}).encode(),
                31: json.dumps({"_id": "x", "text": "   "}).encode(),
                41: b'{"_id": "bad\\udcff", "text": "lone surrogate in the id"}',
            }.get(i)
            if extra is not None:
                f.write(extra + b"\n")
    return path


def contents(path: Path) -> dict[str, tuple[str, Any, np.ndarray]]:
    """id -> (text, metadata, stored vector) of a memory, or of every member of a sharded one."""
    out = {}
    if (path / "sharded.json").exists():
        with open_members(path) as members:
            for member in members:
                out.update(_slots(member))
    else:
        with Memory.open(path, read_only=True) as mem:
            out.update(_slots(mem))
    return out


def _slots(mem: Memory) -> dict[str, tuple[str, Any, np.ndarray]]:
    return {
        slot.id: (slot.text, slot.metadata, vector)
        for slots, vectors in mem.iter_vectors(batch=1000)
        for slot, vector in zip(slots, vectors, strict=True)
    }


def assert_same_memory(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for slot_id, (text, metadata, vector) in expected.items():
        assert got[slot_id][0] == text and got[slot_id][1] == metadata, slot_id
        np.testing.assert_allclose(got[slot_id][2], vector, atol=1e-4, err_msg=slot_id)


def ray_build_cli(source: Path, root: Path, *more: str) -> Any:
    return CliRunner().invoke(
        main,
        ["build", str(source), "--out", str(root), "--ray", "--shards", "3", "--workers", "2"]
        + CLI_OPTIONS
        + ["--no-progress", "--json", *more],
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, ray_runtime: dict, embedder) -> dict:
    """The corpus, its local build, and its Ray build (through the CLI)."""
    base = tmp_path_factory.mktemp("ray_build")
    source = write_corpus(base / "corpus.jsonl")
    local = base / "local"
    local_report = run_build(
        BuildConfig(source=source, out=local, progress=False, **OPTIONS), embedder=embedder
    ).to_dict()
    result = ray_build_cli(source, base / "ray")
    assert result.exit_code == 0, result.output
    return {
        "source": source,
        "local": local,
        "local_report": local_report,
        "root": base / "ray",
        "report": json.loads(result.output),
        "local_contents": contents(local),
    }


def test_ray_build_equals_the_local_build(built: dict) -> None:
    root, report, local_report = built["root"], built["report"], built["local_report"]
    assert_same_memory(contents(root), built["local_contents"])
    assert any("#" in i for i in built["local_contents"])  # long documents were chunked
    assert report["slots_total"] == local_report["slots_total"] == len(built["local_contents"])
    assert report["documents"] == local_report["documents"] == 160
    assert report["skipped"] == local_report["skipped"]
    assert {e["line"]: e["reason"] for e in report["skipped"]["examples"]} == BAD_LINES
    assert report["vectors_written"] == report["slots_total"]
    assert report["blocks"] == local_report["blocks"] > 5 and report["blocks_resumed"] == 0
    assert report["inputs"]["shards"] == 3 and report["inputs"]["workers"] == 2
    assert (root / "build_report.json").is_file() and read_checkpoint(root).done  # type: ignore[union-attr]
    # every member holds exactly the ids its shard routes to it, as the report says
    assert read_manifest(root).shards == 3
    with open_members(root) as members:
        sizes = []
        for shard, member in enumerate(members):
            ids = member.ids()
            assert ids and set(shard_of(ids, 3)) == {shard}
            sizes.append(len(ids))
    assert [m["growing_vectors"] for m in report["index_built"]["members"]] == sizes


def test_sharded_get_and_search_answer_as_the_local_memory(built: dict, embedder) -> None:
    ids = sorted(built["local_contents"])
    with (
        ShardedMemory.open(built["root"], read_only=True, embedder=embedder) as sharded,
        Memory.open(built["local"], read_only=True) as local,
    ):
        assert [(s.id, s.text, s.metadata) for s in sharded.get(ids)] == [
            (s.id, s.text, s.metadata) for s in local.get(ids)
        ]
        queries = embedder.encode(["protein cell membrane", "galaxy comet orbit"])
        for mine, theirs in zip(
            sharded.search(queries, k=10), local.search(queries, k=10), strict=True
        ):
            assert [h.id for h in mine] == [h.id for h in theirs]
            np.testing.assert_allclose(
                [h.score for h in mine], [h.score for h in theirs], atol=1e-4
            )
        # the evaluation's exact anchor reads the members' vectors: the same as the local one
        mine_anchor, local_anchor = anchor_from_memory(sharded), anchor_from_memory(local)
        assert len(mine_anchor) == len(local_anchor) == len(ids)
        mine_run = mine_anchor.run(["q0", "q1"], queries, 10)
        local_run = local_anchor.run(["q0", "q1"], queries, 10)
        for qid, docs in local_run.items():
            assert mine_run[qid] == pytest.approx(docs, abs=1e-4)


def test_search_cli_reads_a_sharded_root(built: dict) -> None:
    runner = CliRunner()
    answers = []
    for path in (built["root"], built["local"]):
        args = ["search", str(path), "galaxy comet orbit", "-k", "5", "--mode", "dense"]
        result = runner.invoke(main, [*args, "--json"])
        assert result.exit_code == 0, result.output
        answers.append([json.loads(line)["id"] for line in result.output.splitlines()])
    assert len(answers[0]) == 5 and answers[0] == answers[1]
    result = runner.invoke(main, ["search", str(built["root"]), "galaxy comet orbit", "-k", "3"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 3, result.output


def test_interrupted_build_resumes_without_embedding_again(
    built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder
) -> None:
    """Three blocks written, then an interruption inside the fourth after half of it landed
    (as a kill between two shards' parts would leave it); the same command then finishes."""
    root = tmp_path / "ray"
    config = BuildConfig(source=built["source"], out=root, progress=False, **OPTIONS)
    add = ShardedMemory.add
    calls: list[int] = []

    def interrupted_add(self: ShardedMemory, texts: list, **kwargs: Any) -> Any:
        calls.append(len(texts))
        if len(calls) <= 3:
            return add(self, texts, **kwargs)
        half = len(texts) // 2
        add(self, texts[:half], **{k: v[:half] for k, v in kwargs.items()})
        raise KeyboardInterrupt

    monkeypatch.setattr(ShardedMemory, "add", interrupted_add)
    with pytest.raises(KeyboardInterrupt):
        run_ray_build(config, RayBuild(shards=3, workers=2), embedder=embedder)
    monkeypatch.setattr(ShardedMemory, "add", add)
    checkpoint = read_checkpoint(root)
    assert checkpoint is not None and not checkpoint.done and checkpoint.blocks_done == 3
    stored = len(contents(root))
    assert stored == 3 * 32 + 16

    # another command on the same root is refused, naming what differs
    other = BuildConfig(source=built["source"], out=root, progress=False, overlap=16, **OPTIONS)
    with pytest.raises(BuildStateError, match="overlap"):
        run_ray_build(other, RayBuild(shards=3, workers=2), embedder=embedder)

    # the rerun: the embedders are told what is stored; three ids not stored are told as
    # well (as a hash collision would), which the driver must find out and embed itself
    missing = sorted(set(built["local_contents"]) - set(contents(root)))[:3]
    stored_hashes = ray_build_module._stored_hashes

    def colliding(mem: ShardedMemory) -> np.ndarray:
        extra = np.array([id_hash(i) for i in missing], dtype=np.uint64)
        return np.unique(np.concatenate([stored_hashes(mem), extra]))

    monkeypatch.setattr(ray_build_module, "_stored_hashes", colliding)
    report = run_ray_build(config, RayBuild(shards=3, workers=2), embedder=embedder).to_dict()
    total = report["slots_total"]
    assert total == built["report"]["slots_total"]
    assert report["blocks_resumed"] == 3 and report["blocks"] == built["report"]["blocks"]
    assert report["vectors_written"] == total - stored
    assert report["vectors_embedded"] == total - stored  # nothing stored was embedded again
    assert report["skipped"] == built["report"]["skipped"]
    assert read_checkpoint(root).done  # type: ignore[union-attr]
    assert_same_memory(contents(root), contents(built["root"]))


def test_cli_refuses_what_a_ray_build_does_not_offer(built: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    source, out = str(built["source"]), str(tmp_path / "out")
    result = runner.invoke(main, ["build", source, "--out", out, "--shards", "3"])
    assert result.exit_code == 2 and "--shards: options of a Ray build" in result.output
    result = runner.invoke(main, ["build", source, "--out", out, "--ray", "--append"])
    assert result.exit_code == 2 and "--append is not offered with --ray" in result.output
    result = runner.invoke(main, ["build", source, "--out", out, "--ray", "--shards", "0"])
    assert result.exit_code == 2 and "shards" in result.output
    # a finished sharded build is refused before any model is loaded
    result = ray_build_cli(built["source"], built["root"])
    assert result.exit_code == 2 and "already holds a finished build" in result.output
    assert "--append" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_interrupted_creation_is_told_from_other_files(tmp_path: Path) -> None:
    """What a `ShardedMemory.create` killed before sharded.json leaves (its lock, members) is
    removed and made again; a folder holding anything else is refused."""
    root = tmp_path / "root"
    (root / "shard-000").mkdir(parents=True)
    (root / "shard-001").mkdir()
    (root / "LOCK").touch()
    assert ray_build_module._half_created(root)
    (root / "notes.txt").touch()
    assert not ray_build_module._half_created(root)
