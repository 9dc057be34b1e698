"""Deferred maintenance: a seal (or the slot table's record of one) that fails is retried later,
never turned into the failure of the write that triggered it.

`add` commits its rows, then seals the growing shard when it is full. If that seal raised, a
caller would see an error for rows that are stored (a retry then hits "id already stored") and
the growing shard would never seal again. Like an LSM-tree's background flush and compaction
(RocksDB retries a failed flush after a "soft" background error, and reports it), a failed
seal is logged, counted, reported in `stats()["maintenance"]` and retried after a backoff that
doubles per consecutive failure.
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

RETRY_SECONDS = 30.0  # the first wait after a failure; doubles per consecutive failure
RETRY_MAX_SECONDS = 600.0


class DeferredMaintenance:
    """Failures of automatic maintenance, and when to try again."""

    def __init__(self) -> None:
        self.failures = 0  # since the memory was opened
        self.consecutive = 0
        self.last_error: str | None = None
        self._retry_at = 0.0

    def due(self) -> bool:
        """Whether an automatic attempt may run now (always, unless one failed recently)."""
        return time.monotonic() >= self._retry_at

    def failed(self, what: str, exc: BaseException, retry: bool = True) -> None:
        """Record that `what` failed with `exc`; unless `retry` is False (the next commit
        retries it anyway) the next automatic attempt waits RETRY_SECONDS, doubling per
        consecutive failure up to RETRY_MAX_SECONDS."""
        self.failures += 1
        self.consecutive += 1
        self.last_error = f"{what} failed: {type(exc).__name__}: {exc}"
        wait = min(RETRY_MAX_SECONDS, RETRY_SECONDS * 2 ** (self.consecutive - 1)) if retry else 0.0
        self._retry_at = time.monotonic() + wait
        logger.warning("%s; retrying in %.0f s", self.last_error, wait, exc_info=exc)

    def succeeded(self) -> None:
        if self.consecutive:
            logger.info("deferred maintenance succeeded after %d failures", self.consecutive)
        self.consecutive = 0
        self.last_error = None
        self._retry_at = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "last_error": self.last_error,
            "retry_in_seconds": max(0.0, round(self._retry_at - time.monotonic(), 1)),
        }
