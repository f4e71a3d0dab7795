"""What a refresh crawl knows and decides: one object per crawl, owned by the spider
(which skips unchanged files, sends conditional requests and records what it listed and
saw) and read by the pipeline that writes the index (which loads the page states into it
and, at the end, deletes what vanished).

Pure bookkeeping: no Scrapy, no Whoosh. The rules:

* a page is *seen* when this crawl reached it, whatever the outcome (new, changed,
  unchanged, or a network error/5xx, which keeps the old documents);
* a start is *complete* only on positive evidence: every listing it depends on (its start
  requests, the folder walk, each sitemap) was opened and then read to its end with no
  error, and nothing of that start raised. A listing that never reports its end (an
  exception nobody foresaw, a generator closed by a shutdown, a dropped request) leaves
  its start incomplete: default deny;
* only a crawl that finished normally deletes anything, only for complete starts, and
  only what :func:`index.deletion.plan_deletions`'s mass-deletion guard lets through;
* a page whose new version *collapsed* (lost all its images, or its front matter with no
  image in its place) is held back until the end: the guard counts it with the vanished
  pages, and a start over the limit replaces none of them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.deletion import DeletionPlan, canonical_start, plan_deletions
from index.options import DeletionGuard
from pipeline.sitemaps import parse_lastmod

__all__ = ["RUN", "RefreshState"]

# The key that marks the whole run incomplete: a failure that names no start.
RUN = "*"


@dataclass
class RefreshState:
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    # start key (or RUN) -> the first reason it is incomplete
    incomplete: dict[str, str] = field(default_factory=dict)
    # start key -> listings opened and not yet read to their end
    open_listings: Counter[str] = field(default_factory=Counter)
    # start key -> entries its listings yielded (files, sitemap URLs)
    listed: Counter[str] = field(default_factory=Counter)
    # collapsed page URL -> the start that fetched it (see index.deletion.collapsed)
    collapsed: dict[str, str] = field(default_factory=dict)
    seen_log: Path | None = None
    _log_handle: Any = None

    # -- loading -------------------------------------------------------------------------
    def resume(self, seen_log: Path) -> None:
        """Keep the seen set in a file (Scrapy's JOBDIR), so a paused and resumed crawl
        knows everything the first half saw before it decides what vanished."""
        self.seen_log = seen_log
        if seen_log.exists():
            self.seen.update(line for line in seen_log.read_text("utf-8").splitlines() if line)
        seen_log.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = seen_log.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    # -- what the crawl saw ----------------------------------------------------------------
    def mark_seen(self, url: str) -> None:
        if url not in self.seen:
            self.seen.add(url)
            if self._log_handle is not None:
                self._log_handle.write(url + "\n")
                self._log_handle.flush()

    def mark_incomplete(self, start: str | None, reason: str) -> None:
        """``start`` None (a failure that cannot be traced to a start) marks the run."""
        key = canonical_start(start) if start and start != RUN else RUN
        self.incomplete.setdefault(key, reason)

    def listing_opened(self, start: str) -> None:
        self.open_listings[canonical_start(start)] += 1

    def listing_read(self, start: str) -> None:
        """A listing of ``start`` was read to its end without an error."""
        self.open_listings[canonical_start(start)] -= 1

    def count_listed(self, start: str, n: int = 1) -> None:
        self.listed[canonical_start(start)] += n

    def complete_starts(self) -> set[str]:
        if RUN in self.incomplete:
            return set()
        return {
            key
            for key in map(canonical_start, self.starts)
            if key in self.open_listings and self.open_listings[key] == 0 and key not in self.incomplete
        }

    def unfinished_starts(self) -> dict[str, str]:
        """Every start that is not complete, with why (for the log and the stats)."""
        if RUN in self.incomplete:
            return {key: self.incomplete[RUN] for key in map(canonical_start, self.starts)} or {
                RUN: self.incomplete[RUN]
            }
        reasons = dict(self.incomplete)
        for key in map(canonical_start, self.starts):
            if key in reasons:
                continue
            if key not in self.open_listings:
                reasons[key] = "not_started"
            elif self.open_listings[key]:
                reasons[key] = "listing_unfinished"
        return reasons

    # -- what is unchanged ------------------------------------------------------------------
    def file_unchanged(self, url: str, stat: os.stat_result) -> bool:
        """The fast path: same size and mtime as when the page was indexed."""
        state = self.states.get(url)
        return bool(state) and state.get("size") == stat.st_size and state.get("mtime") == stat.st_mtime_ns

    def content_unchanged(self, url: str, content_hash: str) -> bool:
        state = self.states.get(url)
        return bool(state) and state.get("content_hash") == content_hash

    def sitemap_unchanged(self, url: str, lastmod: str | None, now: dt.datetime | None = None) -> bool:
        """The sitemap's ``<lastmod>`` is no later than when the page was indexed, as
        instants (``20:00-05:00`` is after ``23:00Z``). A date that cannot be read, or one
        in the future (a bogus stored ``2204-06-01`` would otherwise hide every later
        change), proves nothing: fetch (a conditional request, so still cheap)."""
        state = self.states.get(url)
        if not (lastmod and state and state.get("lastmod")):
            return False
        new, old = parse_lastmod(lastmod), parse_lastmod(state["lastmod"])
        if new is None or old is None:
            return False
        now = now or dt.datetime.now(dt.UTC)
        return new <= old <= now

    def validators(self, url: str) -> dict[str, str]:
        """Conditional request headers for a page indexed from HTTP before."""
        state = self.states.get(url) or {}
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        return headers

    # -- what vanished -----------------------------------------------------------------------
    def deletions(self, finished: bool, guard: DeletionGuard | None = None) -> DeletionPlan:
        """Pages to delete and collapsed pages to hold back (see
        :func:`index.deletion.plan_deletions`), as far as ``guard`` (default: the
        settings' defaults) lets through; no deletion unless the crawl finished normally."""
        kwargs = (guard or DeletionGuard()).plan_deletions()
        if not finished:
            # Nothing is deleted, but collapsed pages still face the guard.
            return plan_deletions(self.states, (), self.seen, collapsed=self.collapsed, **kwargs)
        return plan_deletions(
            self.states, self.complete_starts(), self.seen, listed=self.listed, collapsed=self.collapsed, **kwargs
        )
