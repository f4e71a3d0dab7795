"""Memory probes for the crawl summary and the benchmarks: this process's peak, and the
peak of the largest child that has ended (the Whoosh sub-writers)."""

from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["children_peak_rss_kb", "peak_rss_kb"]


def peak_rss_kb() -> int:
    """Peak resident memory of this process in KiB. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss over fork+exec, so a child of a big process would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def children_peak_rss_kb() -> int:
    """Peak resident memory of the largest child process that has ended (the Whoosh
    sub-writers of the multiprocess writer), in KiB. Counted high: Linux carries the
    starting process's ru_maxrss over fork+exec, and this process is small when it
    starts them (~30 MB against their ~200 MB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
