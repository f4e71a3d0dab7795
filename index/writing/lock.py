"""One writer per index at a time: the session lock.

An exclusive ``flock`` on ``<index>/.writer.lock``, held for the whole session (a crawl,
an ingest, an optimize) and released by the kernel when the process dies, so a killed
crawl never leaves a stale lock. Whoosh's own lock still guards each Whoosh writer."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from index.errors import IndexLocked

__all__ = ["LOCK_NAME", "IndexLocked", "SessionLock"]

LOCK_NAME = ".writer.lock"


class SessionLock:
    """An exclusive flock on ``<index>/.writer.lock`` holding the owner's pid."""

    def __init__(self, index_dir: str | os.PathLike[str], wait: bool = False) -> None:
        self.path = Path(index_dir) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexLocked(
                f"index {self.path.parent} is being written by another process (pid {owner}); "
                "wait for it to finish or set INDEX_LOCK_WAIT=True"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
