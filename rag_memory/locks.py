"""Locks: one writer process per memory (flock), and a readers-writer lock between threads."""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import CorruptFileError, InvalidInputError, MemoryLockedError
from .validation import is_number, shown

LOCK_NAME = "LOCK"
_POLL_SECONDS = 0.05


class WriterLock:
    """An exclusive flock on DIR/LOCK, held while a process has the memory open for writing.

    The kernel drops a flock when its process dies (kill -9 included), so a crash never
    leaves a stale lock behind, unlike a lock *file* whose existence is the lock.
    """

    def __init__(self, directory: Path, timeout: float | None = 0.0) -> None:
        timeout = check_lock_timeout(timeout)
        self.path = directory / LOCK_NAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise CorruptFileError(
                self.path, "is a directory, not the writer's lock file"
            ) from None
        try:
            self._acquire(directory, timeout)
        except BaseException:  # an interrupted wait included: never leak the descriptor
            os.close(self._fd)
            self._fd = -1
            raise

    def _acquire(self, directory: Path, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise MemoryLockedError(
                        f"{directory} is open for writing in another process; open it with "
                        f"read_only=True, or pass lock_timeout=<seconds> to wait"
                    ) from None
                time.sleep(_POLL_SECONDS)

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:  # closing the descriptor drops the flock too
                os.close(fd)


def check_lock_timeout(timeout: Any) -> float | None:
    """Seconds to wait for another writer: a number >= 0, or None to wait forever."""
    if timeout is not None and (not is_number(timeout) or math.isnan(timeout) or timeout < 0):
        raise InvalidInputError(
            f"lock_timeout must be seconds >= 0 or None (wait forever), got {shown(timeout)}"
        )
    return None if timeout is None else float(timeout)


class ReadWriteLock:
    """Many concurrent readers or one writer, phase-fair: a waiting writer blocks new readers,
    and the readers that were waiting when a writer releases go in before the next writer.
    Neither side starves: a writer that writes in a loop lets a batch of readers through
    between its writes, and a stream of readers lets a waiting writer in once those present
    leave (Brandenburg and Anderson, "Spin-based reader-writer synchronization for
    multiprocessor real-time systems", 2010, call this phase-fairness)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._readers_turn = False  # the readers waiting at a writer's release go first
        # read() is on every search's path: a reusable class-based context manager costs a
        # fraction of a generator-based @contextmanager's per-call setup
        self._reading = _Held(self._enter_read, self._exit_read)

    def read(self) -> _Held:
        """Hold the lock for reading (a context manager)."""
        return self._reading

    def _enter_read(self) -> None:
        with self._cond:
            if self._writer or self._writers_waiting:  # else the fast path: no one to wait for
                self._wait_to_read()
            self._readers += 1

    def _wait_to_read(self) -> None:
        self._readers_waiting += 1
        try:
            while self._writer or (self._writers_waiting and not self._readers_turn):
                self._cond.wait()
        finally:  # an interrupted wait must not hold the writers back
            self._readers_waiting -= 1
            if not self._readers_waiting:
                self._readers_turn = False  # every reader of this turn is in
                self._cond.notify_all()

    def _exit_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers and self._writers_waiting:  # only writers wait for readers
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers or self._readers_turn:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._readers_turn = self._readers_waiting > 0
                self._cond.notify_all()


class _Held:
    """A context manager that calls `enter` on entry and `exit` on leaving: stateless, so
    one instance serves every thread and every nesting."""

    __slots__ = ("_enter", "_exit")

    def __init__(self, enter: Callable[[], None], exit: Callable[[], None]) -> None:
        self._enter = enter
        self._exit = exit

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: object) -> None:
        self._exit()
