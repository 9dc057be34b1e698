"""The registry of eval tasks: each task is a runner (config -> figures), a report renderer
and its plots. The CLI and scripts look tasks up here instead of branching on names.

Adding a task means: a config dataclass and a runner module, a renderer in markdown.py, and
one `EvalTask` entry in TASKS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InvalidInputError
from ..hybrid import RRF_K
from . import plots
from .babi import BabiConfig, run_babi
from .markdown import render_babi, render_qa, render_retrieval, render_systems
from .qa import QAConfig, run_qa
from .report import write_result_folder
from .retrieval import RetrievalConfig, run_retrieval
from .systems import SystemsConfig, run_systems

Latencies = Mapping[str, np.ndarray]


class TaskConfig(Protocol):
    """What every task's config dataclass has: the results folder it writes."""

    @property
    def out(self) -> str: ...


@dataclass(frozen=True)
class EvalTask:
    """One evaluation: how to run it, how to render its report, which plots it draws."""

    name: str
    summary: str
    config_type: type[TaskConfig]
    run: Callable[..., tuple[dict[str, Any], Latencies]]  # (config, **dependencies)
    render: Callable[[dict], str]
    plots: Callable[[dict[str, Any], Latencies], dict[str, Callable[[Path], Path]]]


def _retrieval_plots(results: dict[str, Any], lat: Latencies) -> dict[str, Callable[[Path], Path]]:
    where = f"{results['dataset']['path']} / {results['dataset']['split']}"
    title = f"{where}: single-query latency, k={results['config']['k']}"
    drawn = {"latency_histogram": lambda p: plots.latency_histogram(lat, p, title)}
    if "sweep" in results:
        sweep, metric = results["sweep"], results["sweep"]["metric"]
        convex = [p for p in sweep["points"] if p["fusion"] == "convex"]
        rrf = {p["rrf_k"]: p[metric] for p in sweep["points"] if p["fusion"] == "rrf"}
        lines = {f"{leg} only": sweep[f"{leg}_only"][metric] for leg in ("dense", "lexical")}
        if RRF_K in rrf:
            lines[f"RRF k={RRF_K}"] = rrf[RRF_K]
        drawn["fusion_sweep"] = lambda p: plots.metric_vs_weight(
            [c["alpha"] for c in convex],
            [c[metric] for c in convex],
            lines,
            p,
            f"{where}: hybrid {metric} vs convex alpha (fetch_k={sweep['depth']})",
            "alpha (weight of the dense leg; 0 = lexical order, 1 = dense order)",
            metric,
        )
    return drawn


def _systems_plots(results: dict[str, Any], lat: Latencies) -> dict[str, Callable[[Path], Path]]:
    data, k = results["data"], results["config"]["k"]
    what = f"{data['n']:,} x {data['dim']} synthetic vectors"
    return {
        "recall_qps": lambda p: plots.recall_qps(
            results["sweep"], k, p, f"recall@{k} vs QPS, {what}"
        ),
        "latency_histogram": lambda p: plots.latency_histogram(
            lat, p, f"single-query latency, k={k}, {what}"
        ),
    }


def _qa_plots(results: dict[str, Any], lat: Latencies) -> dict[str, Callable[[Path], Path]]:
    what = (
        f"{results['dataset']['sampled']} questions of {Path(results['dataset']['path']).name}"
        f", k={results['config']['k']}"
    )
    return {
        "qa_scores": lambda p: plots.score_bars(
            results["scores"],
            {"em": "EM", "f1": "F1", "match": "match"},
            p,
            f"EM / F1 / match per mode, {what}",
        ),
        "latency_histogram": lambda p: plots.latency_histogram(
            lat, p, f"time to first token per question, {what}"
        ),
    }


def _babi_plots(results: dict[str, Any], lat: Latencies) -> dict[str, Callable[[Path], Path]]:
    tasks = results["tasks"]
    scores = {
        name: {task: t["configs"][name]["accuracy"] or 0.0 for task, t in tasks.items()}
        for name in next(iter(tasks.values()))["configs"]
        if any(t["configs"][name]["accuracy"] is not None for t in tasks.values())
    }
    if not scores:  # --n 0: retrieval figures only
        return {}
    return {
        "babi_accuracy": lambda p: plots.score_bars(
            scores,
            {task: f"task {task}" for task in tasks},
            p,
            f"bAbI answer accuracy per configuration ({results['config']['n']} questions a task)",
        )
    }


TASKS: dict[str, EvalTask] = {
    "retrieval": EvalTask(
        "retrieval",
        "BEIR retrieval quality + systems figures, memory vs exact FAISS",
        RetrievalConfig,
        run_retrieval,
        render_retrieval,
        _retrieval_plots,
    ),
    "systems": EvalTask(
        "systems",
        "synthetic vectors: build time, recall vs QPS, latency, bytes per tier",
        SystemsConfig,
        run_systems,
        render_systems,
        _systems_plots,
    ),
    "qa": EvalTask(
        "qa",
        "SQuAD answer quality (EM / F1), gold-paragraph recall@k and latency "
        "per fusion mode, closed-book and oracle",
        QAConfig,
        run_qa,
        render_qa,
        _qa_plots,
    ),
    "babi": EvalTask(
        "babi",
        "bAbI: facts written as a story goes, supporting-fact recall, accuracy and reads "
        "per configuration (closed-book, gold, concat, dense, recency, hops, hybrid)",
        BabiConfig,
        run_babi,
        render_babi,
        _babi_plots,
    ),
}


def run_task(name: str, config: Any, **dependencies: Any) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run task `name` with `config` and write its result folder at `config.out`.

    `dependencies` go to the runner as keyword arguments: parts it would otherwise load
    itself (the qa runner's generator), so a test can pass small stand-ins."""
    if name not in TASKS:
        raise InvalidInputError(f"no eval task {name!r}; available: {sorted(TASKS)}")
    task = TASKS[name]
    if not isinstance(config, task.config_type):
        raise InvalidInputError(f"task {name!r} needs a {task.config_type.__name__}")
    results, lat = task.run(config, **dependencies)
    written = write_result_folder(Path(config.out), results, task.render, task.plots(results, lat))
    return results, written
