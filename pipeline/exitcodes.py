"""Exit statuses of ``scrapy crawl pages``: one definition, read by the crawl command and
by the monitoring files (STATS_FILE, METRICS_FILE), so both always agree.

=====  ==========================================================================
0      finished; every page that could be read is in the index
1      the crawl failed: the index writer failed (the index keeps its last commit),
       Scrapy could not start, or a distributed crawler lost Redis
25     a refresh refused a mass deletion (REFRESH_MAX_DELETE); nothing was deleted.
       The number is rsync's for its ``--max-delete`` limit.
75     another crawl holds the index (EX_TEMPFAIL: "try again later")
=====  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from index.deletion import EXIT_DELETE_REFUSED

__all__ = ["EXIT_DELETE_REFUSED", "EXIT_FAILED", "EXIT_LOCKED", "EXIT_OK", "exit_status"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_LOCKED = 75

# Finish reasons set by this project's components when they stop a crawl.
_FAILED_REASONS = {"index_locked": EXIT_LOCKED, "index_error": EXIT_FAILED, "redis_error": EXIT_FAILED}


def exit_status(stats: Mapping[str, Any], bootstrap_failed: bool = False) -> int:
    """The exit status a crawl with these final stats ends with.

    >>> exit_status({"finish_reason": "finished"})
    0
    >>> exit_status({"finish_reason": "index_locked"})
    75
    >>> exit_status({"finish_reason": "finished", "pages/delete_refused": 12})
    25
    >>> exit_status({"finish_reason": "finished", "index/errors": 1, "pages/delete_refused": 12})
    1
    """
    reason = stats.get("finish_reason")
    if reason in _FAILED_REASONS:
        return _FAILED_REASONS[reason]
    if bootstrap_failed or stats.get("index/errors") or stats.get("redis/errors"):
        # The crawl ran but its writes did not land (disk full, Redis gone): a refresh job
        # must not look successful.
        return EXIT_FAILED
    if stats.get("pages/delete_refused"):
        return EXIT_DELETE_REFUSED
    return EXIT_OK
