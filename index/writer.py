"""Writing the index: the public names, gathered from the modules that do each job.

- :mod:`index.pagewriter`: :class:`PageWriter`, batched commits of whole pages;
- :mod:`index.writerprocess`: :class:`WriterProcess`, the same in a child process;
- :mod:`index.lock`: :class:`SessionLock`, one writer per index at a time;
- :mod:`index.merging`: the merge policy of every commit;
- :mod:`index.memory`: peak memory probes;
- :mod:`index._whoosh.mpwriter`: Whoosh's multiprocess writer made safe to fail.
"""

from __future__ import annotations

from index.errors import IndexLocked, WriterError
from index.lock import SessionLock
from index.memory import children_peak_rss_kb, peak_rss_kb
from index.pagewriter import PageWriter, auto_procs, open_or_create
from index.writerprocess import WriterProcess

__all__ = [
    "IndexLocked",
    "PageWriter",
    "SessionLock",
    "WriterError",
    "WriterProcess",
    "auto_procs",
    "children_peak_rss_kb",
    "open_or_create",
    "peak_rss_kb",
]
