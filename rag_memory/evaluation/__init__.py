"""The evaluation harness: numbers anyone can rerun.

Tasks live in a registry (`tasks.TASKS`): `retrieval` (BEIR quality and systems figures of a
memory, next to an exact-FAISS anchor) and `systems` (synthetic vectors: build time, recall vs
QPS, latency, bytes per tier). `qa` is planned (`tasks.PLANNED`). Each run writes a result
folder: results.json, report.md and PNG plots.
"""

from .retrieval import RetrievalConfig
from .systems import SystemsConfig
from .tasks import PLANNED, TASKS, run_task

__all__ = ["PLANNED", "TASKS", "RetrievalConfig", "SystemsConfig", "run_task"]
