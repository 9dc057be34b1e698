"""File system access: crash-safe file replacement (temp file, fsync, rename, fsync of the
directory), and the one mapping from an OSError to the StorageError a caller sees."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFullError, NotWritableError, StorageError, UnsyncedReplaceError

# EFBIG: the file outgrew RLIMIT_FSIZE or the file system's largest file; like ENOSPC and
# EDQUOT it means "no room", which freeing space (or raising the limit) cures.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


_READ_ONLY_HINT = "a read-only file system or permissions; open it with read_only=True to read it"


def storage_error(path: Path, action: str, why: str, number: int | None) -> StorageError:
    """The StorageError for a failure `why` with errno `number` while `action` (e.g.
    "writing") `path`: a DiskFullError for no room, a NotWritableError for read-only media
    or permissions. The caller chains the cause (`raise storage_error(...) from exc`)."""
    if number in _NO_ROOM:
        return DiskFullError(path, f"{action} failed: {why} (free space and retry)", number)
    if number in _NOT_WRITABLE:
        return NotWritableError(path, f"{action} failed: {why} ({_READ_ONLY_HINT})", number)
    return StorageError(path, f"{action} failed: {why}", number)


@contextmanager
def storage_errors(path: Path, action: str) -> Iterator[None]:
    """Turn an OSError raised inside into a `storage_error` naming `path`, cause chained."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(path, action, exc.strerror or str(exc), exc.errno) from exc


def unwritable(path: Path, problem: str) -> NotWritableError:
    """A NotWritableError for `path`, errno EROFS on a read-only file system, else EACCES."""
    read_only = os.statvfs(path).f_flag & os.ST_RDONLY
    return NotWritableError(path, problem, errno.EROFS if read_only else errno.EACCES)


def check_writable(*paths: Path) -> None:
    """Raise a NotWritableError naming the first of the existing `paths` this process may not
    write, before a writer starts (rather than failing part way through its first write)."""
    for path in paths:
        if path.exists() and not os.access(path, os.W_OK):
            raise unwritable(path, f"not writable ({_READ_ONLY_HINT})")


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX needs the directory entry flushed too)."""
    with storage_errors(path, "syncing"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file whole.

    A failure (StorageError) before the rename leaves the old file and no temp file; a failure
    of the directory fsync after it (UnsyncedReplaceError) leaves the new file in place, not
    yet durable."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with storage_errors(path, "writing"):
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    try:
        fsync_dir(path.parent)
    except StorageError as exc:
        raise UnsyncedReplaceError(exc.path, exc.problem, exc.errno) from exc.__cause__
