"""Children that die with their parent: the writer process with the crawl, the Whoosh
sub-writers with the writer process. No orphan ever keeps the index locked."""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["die_with_parent"]


def die_with_parent(parent: int) -> None:
    """Exit at once when the crawl process dies (kill -9): no orphan keeps the index
    locked. Exiting mid-batch is safe: it is what a kill of the writer itself does, and
    the index keeps its last commit. (Cancelling politely is not possible: a parent
    killed mid-message leaves this process blocked reading the rest of it.)"""
    try:  # Linux: the kernel does it.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # elsewhere, and as a backstop: poll.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # died before we got here
        os._exit(3)
