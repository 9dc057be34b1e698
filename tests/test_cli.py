"""The rag-memory command line: search output and modes, reindex, clean errors, help for
every command."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rag_memory import Memory
from rag_memory.cli import main
from rag_memory.store.lexical import CONTENT_VIEW, FTS_TABLE
from rag_memory.store.slot_table import TABLE_FILE


@pytest.fixture
def memory_dir(tmp_path: Path, embedder) -> Path:
    with Memory.create(tmp_path / "m", embedder=embedder) as mem:
        mem.add(
            ["Paris is the capital of France.", "Water boils at 100 degrees Celsius."],
            ids=["paris", "water"],
            metadata=[{"topic": "geo"}, {"topic": "physics"}],
        )
    return tmp_path / "m"


def test_search_prints_ranked_hits(memory_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["search", str(memory_dir), "boiling point of water", "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[2] == "water"


def test_search_json_and_where(memory_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["search", str(memory_dir), "a city", "--json", "--where", '{"topic": "physics"}']
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["water"] and rows[0]["metadata"] == {"topic": "physics"}


def _json_hits(directory: Path, query: str, *options: str) -> list[dict]:
    result = CliRunner().invoke(main, ["search", str(directory), query, "--json", *options])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


LEGS = ("dense_score", "dense_rank", "lexical_score", "lexical_rank")


def test_search_recency_and_hops(tmp_path: Path, embedder) -> None:
    with Memory.create(tmp_path / "m", embedder=embedder) as mem:
        mem.add(
            ["Mary went to the kitchen.", "Mary went to the garden."],
            ids=["old", "new"],
            timestamps=[1, 2],
        )
    plain = _json_hits(tmp_path / "m", "Where did Mary go?", "--mode", "dense")
    recent = _json_hits(
        tmp_path / "m", "Where did Mary go?", "--mode", "dense", "--recency-half-life", "1"
    )
    assert recent[0]["id"] == "new" and recent[0]["written_at"] == 2.0
    assert recent[0]["relevance"] == next(r["score"] for r in plain if r["id"] == "new")
    hops = _json_hits(tmp_path / "m", "Where did Mary go?", "-k", "2", "--hops", "2")
    assert [r["hop"] for r in hops] == [1, 2]
    bad = CliRunner().invoke(main, ["search", str(tmp_path / "m"), "q", "--hops", "0"])
    assert bad.exit_code != 0 and "hops" in bad.output


def test_search_modes_print_each_legs_scores_and_ranks(memory_dir: Path) -> None:
    # "Celsius" is a word of one slot only: BM25 finds just that one
    lexical = _json_hits(memory_dir, "Celsius", "--mode", "lexical")
    assert [r["id"] for r in lexical] == ["water"]
    assert lexical[0]["lexical_rank"] == 1 and lexical[0]["score"] == lexical[0]["lexical_score"]
    assert lexical[0]["dense_score"] is None and lexical[0]["dense_rank"] is None
    dense = _json_hits(memory_dir, "Celsius", "--mode", "dense")
    assert len(dense) == 2 and all(r[leg] is None for r in dense for leg in LEGS)
    hybrid = _json_hits(memory_dir, "Celsius", "--mode", "hybrid", "-k", "2")
    assert [r["id"] for r in hybrid] == ["water", "paris"]
    water, paris = hybrid
    assert water["dense_rank"] == 1 and water["lexical_rank"] == 1 and water["score"] == 1.0
    assert paris["lexical_rank"] is None and paris["dense_rank"] == 2  # dense leg only
    assert water["dense_score"] == pytest.approx(dense[0]["score"])
    # the memory's default for text is hybrid (it has a lexical index); alpha reweighs legs
    assert _json_hits(memory_dir, "Celsius", "-k", "2") == hybrid
    with Memory.open(memory_dir, read_only=True) as mem:  # --alpha is the library's alpha
        for alpha in (0.2, 0.8):
            expected = mem.search("water in Paris", k=2, hybrid={"alpha": alpha})
            got = _json_hits(memory_dir, "water in Paris", "--alpha", str(alpha), "-k", "2")
            assert [(r["id"], r["score"]) for r in got] == [(h.id, h.score) for h in expected]
    rrf = _json_hits(memory_dir, "Celsius", "--fusion", "rrf", "-k", "2")
    assert rrf[0]["id"] == "water" and rrf[0]["score"] == pytest.approx(2 / 61)
    assert rrf[1]["score"] == pytest.approx(1 / 62)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--mode", "dense", "--alpha", "0.3"],
            "--alpha: options of hybrid search, not of --mode dense",
        ),
        (
            ["--mode", "lexical", "--fusion", "rrf"],
            "--fusion: options of hybrid search, not of --mode lexical",
        ),
        (["--alpha", "1.5"], "alpha must be a number in [0, 1], got 1.5"),
        (["--mode", "sparse"], "'sparse' is not one of 'dense', 'lexical', 'hybrid'"),
    ],
)
def test_bad_search_options_are_one_clean_line(
    memory_dir: Path, options: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["search", str(memory_dir), "water", *options])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def _drop_lexical_index(directory: Path) -> None:
    """What a memory written before lexical indexes holds: slots, no FTS5 table or view."""
    conn = sqlite3.connect(directory / TABLE_FILE)
    with conn:
        conn.execute(f"DROP TABLE {FTS_TABLE}")
        conn.execute(f"DROP VIEW {CONTENT_VIEW}")
    conn.close()


@pytest.mark.parametrize("made", ["with lexical=False", "before lexical indexes"])
def test_reindex_gives_a_memory_its_lexical_index(tmp_path: Path, embedder, made: str) -> None:
    path = tmp_path / "m"
    with Memory.create(path, embedder=embedder, lexical=made == "before lexical indexes") as mem:
        mem.add(["Paris is in France.", "Bees make honey."], ids=["paris", "bees"])
    if made == "before lexical indexes":
        _drop_lexical_index(path)
    runner = CliRunner()
    missing = runner.invoke(main, ["search", str(path), "honey", "--mode", "lexical"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert missing.stderr.count("\n") == 1 and f"rag-memory reindex {path}" in missing.stderr
    assert runner.invoke(main, ["search", str(path), "honey"]).exit_code == 0  # dense still

    done = runner.invoke(main, ["reindex", str(path)])
    assert done.exit_code == 0, done.output
    assert f"lexical index of {path}: 2 slots indexed in " in done.stdout
    assert "tokenizer 'porter unicode61 remove_diacritics 2'" in done.stdout
    assert [r["id"] for r in _json_hits(path, "honey", "--mode", "lexical")] == ["bees"]
    with Memory.open(path, read_only=True) as mem:
        assert mem.stats()["lexical"]["enabled"] and mem.stats()["lexical"]["ready"]


def test_reindex_options_change_only_what_they_name(memory_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["reindex", str(memory_dir), "--no-title", "--body-weight", "2", "--tokenizer", "ascii"],
    )
    assert result.exit_code == 0, result.output
    assert "title_key None" in result.stdout and "body_weight 2.0" in result.stdout
    again = runner.invoke(main, ["reindex", str(memory_dir), "--title-weight", "3"])
    assert again.exit_code == 0, again.output
    with Memory.open(memory_dir, read_only=True) as mem:
        recorded = mem.manifest.lexical
    assert recorded == {
        "tokenizer": "ascii",
        "title_key": None,
        "title_weight": 3.0,
        "body_weight": 2.0,
    }
    assert [r["id"] for r in _json_hits(memory_dir, "celsius", "--mode", "lexical")] == ["water"]
    both = runner.invoke(main, ["reindex", str(memory_dir), "--no-title", "--title-key", "t"])
    assert both.exit_code == 2 and "--title-key or --no-title, not both" in both.output
    bad = runner.invoke(main, ["reindex", str(memory_dir), "--tokenizer", "nonsense"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: LexicalConfig.tokenizer")
    with Memory.open(memory_dir):  # the writer lock is held: reindex is refused, not queued
        locked = runner.invoke(main, ["reindex", str(memory_dir)])
    assert locked.exit_code == 2 and locked.stderr.startswith("error:")


def test_errors_are_one_clean_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["search", str(tmp_path / "none"), "q"])
    assert result.exit_code == 2
    assert "not a rag_memory directory" in result.output and "Traceback" not in result.output


def test_stats(tmp_path: Path) -> None:
    with Memory.create(tmp_path / "m", dim=4) as mem:
        mem.add(["x"], vectors=np.ones((1, 4)))
    result = CliRunner().invoke(main, ["stats", str(tmp_path / "m")])
    assert result.exit_code == 0 and json.loads(result.output)["slots"] == 1


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))


def test_every_command_has_help() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--help"]).exit_code == 0
    for path in _commands(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, path
