"""The PNG figures of an eval run: a recall-vs-QPS plot (as ann-benchmarks draws it), a
latency histogram, bars of answer scores per mode and a metric-vs-weight curve (the
hybrid fusion sweep). matplotlib's object API with the Agg
canvas is used, not pyplot, so no global backend state is touched and nothing needs a display."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float = 7.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def recall_qps(points: Sequence[Mapping[str, Any]], k: int, path: Path, title: str) -> Path:
    """Recall@k (x) against queries per second (y, log scale), one line per system; a system
    with a knob is a curve annotated with the knob values, one without is a single marker."""
    fig = _figure()
    ax = fig.add_subplot()
    markers = iter("o^sDv<>")
    for system in dict.fromkeys(p["system"] for p in points):
        own = sorted((p for p in points if p["system"] == system), key=lambda p: p["recall"])
        xs, ys = [p["recall"] for p in own], [p["qps"] for p in own]
        knob = own[0]["knob"]
        label = f"{system} ({knob} sweep)" if knob else system
        ax.plot(
            xs,
            ys,
            marker=next(markers, "o"),
            linestyle="-" if len(own) > 1 else "none",
            markersize=7 if len(own) == 1 else 5,
            label=label,
        )
        if knob:
            for p in own:
                ax.annotate(
                    str(p["value"]),
                    (p["recall"], p["qps"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
    ax.set_yscale("log")
    ax.set_xlabel(f"recall@{k}")
    ax.set_ylabel("queries per second (batch, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def latency_histogram(latencies: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    """Single-query latency distributions (ms, log-spaced bins) with p50 / p99 marks."""
    fig = _figure()
    ax = fig.add_subplot()
    all_ms = np.concatenate([np.asarray(v) * 1e3 for v in latencies.values()])
    lo, hi = max(all_ms.min(), 1e-3), all_ms.max()
    bins = np.geomspace(lo * 0.9, hi * 1.1, 40)
    for name, seconds in latencies.items():
        ms = np.asarray(seconds) * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        ax.hist(ms, bins=bins, alpha=0.5, label=f"{name}: p50 {p50:.3g} ms, p99 {p99:.3g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("single-query latency (ms, log scale)")
    ax.set_ylabel("queries")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def score_bars(
    scores: Mapping[str, Mapping[str, float]], metrics: Mapping[str, str], path: Path, title: str
) -> Path:
    """Grouped bars of percentages: a group per system (mode), a bar per metric (key -> label in
    the legend), values written on top."""
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(scores))
    width = 0.8 / len(metrics)
    for j, (metric, label) in enumerate(metrics.items()):
        values = [s[metric] for s in scores.values()]
        bars = ax.bar(x + (j - (len(metrics) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, list(scores))
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 118)  # room above 100 % for the legend
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=len(metrics))
    fig.tight_layout()
    fig.savefig(path)
    return path


def metric_vs_weight(
    xs: Sequence[float],
    ys: Sequence[float],
    lines: Mapping[str, float],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """A metric (y) over a weight (x) as one marked curve, with horizontal reference lines
    (label -> value, e.g. each leg alone) to read the curve against; the best point is
    annotated."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(xs, ys, marker="o", label=ylabel)
    best = int(np.argmax(ys))
    ax.annotate(
        f"{ys[best]:.4f} at {xs[best]:g}",
        (xs[best], ys[best]),
        textcoords="offset points",
        xytext=(0, 8),
        ha="center",
        fontsize=8,
    )
    styles = iter(("--", ":", "-.", (0, (5, 1))))
    for label, value in lines.items():
        ax.axhline(value, linestyle=next(styles, "--"), color="grey", linewidth=1)
        ax.annotate(
            f"{label} {value:.4f}",
            (xs[0], value),
            textcoords="offset points",
            xytext=(2, 3),
            fontsize=7,
            color="dimgrey",
        )
    ax.margins(y=0.12)  # room above the best point for its label
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
