"""The rag-memory command line: search output, clean errors, help for every command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rag_memory import Memory
from rag_memory.cli import main


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
