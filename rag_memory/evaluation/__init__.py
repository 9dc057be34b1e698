"""The evaluation harness: numbers anyone can rerun.

Tasks live in a registry (`tasks.TASKS`): `retrieval` (BEIR quality and systems figures of a
memory, next to an exact-FAISS anchor) and `systems` (synthetic vectors: build time, recall vs
QPS, latency, bytes per tier) and `qa` (SQuAD answer quality of the generator per fusion
mode, closed-book and oracle). Each run writes a result folder: results.json, report.md and
PNG plots.
"""

from .qa import QAConfig
from .retrieval import RetrievalConfig
from .systems import SystemsConfig
from .tasks import TASKS, run_task

__all__ = ["TASKS", "QAConfig", "RetrievalConfig", "SystemsConfig", "run_task"]
