"""Retrieval metrics, computed by ranx (a maintained IR-metrics library), never by hand.

The plumbing here turns search hits into a ranx run at *document* level: a document split
into several slots (chunks) is scored by its best chunk (max over chunks), as BEIR does for
passage-level retrieval of long documents. A hit's document id is `hit.metadata["doc_id"]`
when present, else `hit.id`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInputError
from ..types import Hit

logger = logging.getLogger(__name__)

# ranx metric names; "ndcg" is Järvelin & Kekäläinen's (gain = grade), as trec_eval and BEIR.
# "map" is average precision over the whole run, i.e. MAP@run-depth (the retrieval k).
METRICS: tuple[str, ...] = ("ndcg@10", "recall@1", "recall@10", "recall@100", "mrr@10", "map")
PRIMARY_METRIC = "ndcg@10"

Run = dict[str, dict[str, float]]


def doc_id_of(slot_id: str, metadata: Any) -> str:
    """The document a slot belongs to: metadata["doc_id"] when set (chunks), else its slot id."""
    doc_id = metadata.get("doc_id") if isinstance(metadata, dict) else None
    return str(doc_id) if doc_id is not None else slot_id


def hit_doc_id(hit: Hit) -> str:
    """The document a search hit belongs to (see `doc_id_of`)."""
    return doc_id_of(hit.id, hit.metadata)


def doc_scores(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Collapse (doc id, score) pairs into one score per document: the max over its chunks."""
    best: dict[str, float] = {}
    for doc_id, score in pairs:
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = float(score)
    return best


def hits_to_run(query_ids: Sequence[str], hits: Sequence[Sequence[Hit]]) -> Run:
    """A document-level run {query id: {doc id: score}} from `mem.search` results."""
    if len(query_ids) != len(hits):
        raise InvalidInputError(f"{len(query_ids)} query ids but {len(hits)} hit lists")
    return {
        qid: doc_scores([(hit_doc_id(h), h.score) for h in row])
        for qid, row in zip(query_ids, hits, strict=True)
    }


def evaluate_run(
    qrels: dict[str, dict[str, int]], run: Run, metrics: Sequence[str] = METRICS
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean per metric, {query id: {metric: score}}) over the queries of `qrels`.

    A query of `qrels` that retrieved nothing scores 0 on every metric (it stays in the mean);
    queries of `run` without judgements are ignored.
    """
    from ranx import Qrels, evaluate  # lazy: ranx JIT-compiles with numba
    from ranx import Run as RanxRun

    if not qrels:
        raise InvalidInputError("qrels is empty: nothing to evaluate")
    # ranx cannot hold an empty ranking, so a query that retrieved nothing is scored 0 here.
    empty = [q for q in qrels if not run.get(q)]
    judged = {q: qrels[q] for q in qrels if q not in empty}
    per_query: dict[str, dict[str, float]] = {q: {m: 0.0 for m in metrics} for q in empty}
    if judged:
        ranx_run = RanxRun.from_dict({q: dict(run[q]) for q in judged})
        with warnings.catch_warnings():  # numba's harmless uint64->int64 cast warning
            warnings.simplefilter("ignore")
            evaluate(
                Qrels.from_dict(judged),
                ranx_run,
                list(metrics),
                return_mean=False,
                make_comparable=True,
            )
        for metric in metrics:
            for qid, score in ranx_run.scores[metric].items():
                per_query.setdefault(qid, {})[metric] = float(score)
    means = {m: sum(per_query[q][m] for q in qrels) / len(qrels) for m in metrics}
    logger.info(
        "evaluated %d queries: %s", len(qrels), ", ".join(f"{m}={v:.4f}" for m, v in means.items())
    )
    return means, {q: per_query[q] for q in qrels}


def mean_difference(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """a - b per metric (quality is compared by difference, speed by ratio)."""
    return {m: a[m] - b[m] for m in a if m in b}
