"""`eval babi`: the bAbI reader and the write-as-you-go runner end to end (a small story
folder, the real embedder, a fake generator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import FakeGenerator

from rag_memory.cli import main
from rag_memory.datasets.babi import BabiQuestion, Statement, read_babi, task_files
from rag_memory.errors import InvalidInputError
from rag_memory.evaluation.babi import BabiConfig
from rag_memory.evaluation.tasks import run_task

STORY_1 = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Mary went to the garden.
5 Daniel went back to the office.
6 Where is Mary? \tgarden\t4
1 Sandra journeyed to the kitchen.
2 Sandra went to the office.
3 Where is Sandra? \toffice\t2
"""
STORY_2 = """1 Mary got the football there.
2 Mary went to the garden.
3 John moved to the kitchen.
4 Where is the football? \tgarden\t1 2
"""


@pytest.fixture
def babi_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "babi"
    folder.mkdir()
    (folder / "qa1_single-supporting-fact_train.txt").write_text(STORY_1)
    (folder / "qa2_two-supporting-facts_train.txt").write_text(STORY_2)
    return folder


def test_reader_keeps_stories_questions_and_supporting_lines(babi_folder: Path) -> None:
    files = task_files(babi_folder, (1, 2))
    stories = read_babi(files[1])
    assert [s.index for s in stories] == [0, 1]
    assert stories[0].events[0] == Statement(1, "Mary moved to the bathroom.")
    assert stories[0].questions == [
        BabiQuestion(3, "Where is Mary?", ("bathroom",), (1,)),
        BabiQuestion(6, "Where is Mary?", ("garden",), (4,)),
    ]
    assert read_babi(files[2])[0].questions[0].supporting == (1, 2)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("1 Mary moved.\n3 John left.\n", "does not follow"),
        ("1 Mary moved.\n2 Where is Mary?\tbathroom\t5\n", "not earlier statements"),
        ("1 Mary moved.\n2 Where is Mary?\tbathroom\n", "question needs"),
        ("Mary moved.\n", "not 'N text'"),
        ("", "no story"),
    ],
)
def test_reader_names_the_bad_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "qa1_x_train.txt"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=problem):
        read_babi(path)


def test_files_are_picked_by_task_number_whatever_their_split(babi_folder: Path) -> None:
    (babi_folder / "qa1_single-supporting-fact_test.txt").write_text(STORY_1)
    with pytest.raises(InvalidInputError, match="--split"):
        task_files(babi_folder, (1,))
    assert task_files(babi_folder, (1,), "test")[1].name.endswith("_test.txt")
    with pytest.raises(InvalidInputError, match="task 7"):
        task_files(babi_folder, (7,))


def test_run_writes_as_the_story_goes_and_reads_only_the_past(
    babi_folder: Path, tmp_path: Path, embedder
) -> None:
    config = BabiConfig(data=str(babi_folder), tasks=(1, 2), n=10, out=str(tmp_path / "out"))
    fake = FakeGenerator()
    results, written = run_task("babi", config, generator=fake, embedder=embedder)
    one = results["tasks"]["1"]["configs"]
    assert one["dense+recency"]["recall"] == 1.0 and one["dense+recency"]["questions_read"] == 3
    assert one["gold"]["accuracy"] == 100.0 and one["closed_book"]["accuracy"] == 0.0
    assert one["gold"]["recall"] is None and one["concat"]["slots_in_prompt"] == pytest.approx(
        (2 + 4 + 2) / 3
    )
    records = [json.loads(line) for line in (tmp_path / "out" / "per_question.jsonl").open()]
    first = [r for r in records if r["config"] == "dense" and r["task"] == 1]
    assert [r["supporting"] for r in first] == [[1], [4], [2]]
    # the first question is asked after line 2: it can read lines 1 and 2 only
    assert set(first[0]["retrieved"]) <= {1, 2} and first[0]["story"] == 0
    assert {r["config"] for r in records} >= {"closed_book", "gold", "concat", "dense+recency"}
    assert all(
        set(r)
        == {
            "task",
            "story",
            "question",
            "answer",
            "supporting",
            "config",
            "retrieved",
            "prediction",
        }
        for r in records
    )
    two = results["tasks"]["2"]["configs"]["dense+recency+hops"]
    assert two["reads_per_question"]["hops"] == 2
    gold_calls = [
        c
        for c in fake.calls
        if c["slots"] == ["Mary got the football there.", "Mary went to the garden."]
    ]
    assert gold_calls and gold_calls[0]["fusion"] == "concat"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "supporting-fact recall@k" in report and "MemN2N" in report
    assert {p.name for p in written.values()} >= {
        "results.json",
        "report.md",
        "per_question.jsonl",
        "babi_accuracy.png",
    }


def test_cli_retrieval_only(babi_folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "babi",
            "--data",
            str(babi_folder),
            "--tasks",
            "1",
            "--n",
            "0",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dense+recency" in result.output and "accuracy" not in result.output
    bad = CliRunner().invoke(main, ["eval", "babi", "--data", str(babi_folder), "--tasks", "0"])
    assert bad.exit_code != 0 and "1-20" in bad.output
