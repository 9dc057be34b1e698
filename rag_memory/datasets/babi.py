"""bAbI task files (Weston et al., "Towards AI-Complete Question Answering: A Set of
Prerequisite Toy Tasks", 2015): stories of numbered statements with questions among them.

Each line is `N text`; N restarts at 1 where a new story begins. A question line is
`N question<TAB>answer<TAB>supporting line numbers`; the answer of a few tasks is a comma list.
Files are picked by task number whatever their split suffix (`qa1_*_train.txt`,
`qa1_*_test.txt`). Every line is validated as read: a malformed one raises InvalidInputError
naming the file and line, because a skipped question changes every figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError

_FILE = re.compile(r"^qa(\d+)_.*_(train|test|valid)\.txt$")
_LINE = re.compile(r"^(\d+) (.*)$")


@dataclass(frozen=True)
class Statement:
    """A fact of a story: its line number (the story's clock) and its text."""

    line: int
    text: str


@dataclass(frozen=True)
class BabiQuestion:
    """A question at its point in a story: the statements before it are what it may read."""

    line: int
    text: str
    answers: tuple[str, ...]
    supporting: tuple[int, ...]  # line numbers of the statements that answer it


@dataclass(frozen=True)
class Story:
    """One story in file order: statements and questions interleaved as written."""

    index: int  # position in its file, from 0
    events: tuple[Statement | BabiQuestion, ...]

    @property
    def questions(self) -> list[BabiQuestion]:
        return [e for e in self.events if isinstance(e, BabiQuestion)]


def task_files(folder: Path, tasks: tuple[int, ...], split: str | None = None) -> dict[int, Path]:
    """The file of each task number in `folder`; with several splits present, `split` picks."""
    if not folder.is_dir():
        raise InvalidInputError(f"bAbI folder {folder} does not exist")
    found: dict[int, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if match:
            found.setdefault(int(match[1]), {})[match[2]] = path
    out: dict[int, Path] = {}
    for task in tasks:
        splits = found.get(task, {})
        if split is not None:
            splits = {s: p for s, p in splits.items() if s == split}
        if not splits:
            raise InvalidInputError(
                f"no bAbI file for task {task}{f' ({split})' if split else ''} in {folder}"
            )
        if len(splits) > 1:
            raise InvalidInputError(
                f"task {task} has {sorted(splits)} files in {folder}: choose one with --split"
            )
        out[task] = next(iter(splits.values()))
    return out


def read_babi(path: Path) -> list[Story]:
    """The stories of one bAbI file, validated (module docstring)."""
    stories: list[Story] = []
    events: list[Statement | BabiQuestion] = []
    lines: set[int] = set()

    def fail(n: int, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{path}, line {n}: {problem}")

    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _LINE.match(raw.strip())
        if match is None:
            raise fail(n, f"not 'N text': {raw[:60]!r}")
        number, body = int(match[1]), match[2]
        if number == 1 and events:
            stories.append(Story(len(stories), tuple(events)))
            events, lines = [], set()
        if number in lines or (events and number != events[-1].line + 1):
            raise fail(n, f"line number {number} does not follow {events[-1].line}")
        lines.add(number)
        if "\t" not in body:
            events.append(Statement(number, body.strip()))
            continue
        parts = body.split("\t")
        if len(parts) != 3 or not parts[1].strip():
            raise fail(n, "a question needs 'question<TAB>answer<TAB>supporting ids'")
        try:
            supporting = tuple(int(s) for s in parts[2].split())
        except ValueError:
            raise fail(n, f"supporting ids must be line numbers, got {parts[2]!r}") from None
        facts = {e.line for e in events if isinstance(e, Statement)}
        if not supporting or not set(supporting) <= facts:
            raise fail(n, f"supporting ids {supporting} are not earlier statements")
        answers = tuple(a.strip() for a in parts[1].split(","))
        events.append(BabiQuestion(number, parts[0].strip(), answers, supporting))
    if events:
        stories.append(Story(len(stories), tuple(events)))
    if not stories:
        raise InvalidInputError(f"{path} holds no story")
    return stories
