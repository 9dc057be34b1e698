"""Building memories from corpora: readers, chunking, the resumable pipeline and its report.

`run_build(BuildConfig(...))` is what `rag-memory build` calls; `run_synthetic` builds from
generated vectors for scale tests. torch is imported only when a build loads its embedder.
"""

from .config import BuildConfig
from .pipeline import run_build
from .records import FieldMap
from .report import BuildReport
from .synthetic import SyntheticConfig, run_synthetic

__all__ = [
    "BuildConfig",
    "BuildReport",
    "FieldMap",
    "SyntheticConfig",
    "run_build",
    "run_synthetic",
]
