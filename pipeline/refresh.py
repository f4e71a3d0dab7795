"""What a refresh crawl knows and decides: one object per crawl, shared by the spider
(which skips unchanged files and sends conditional requests) and the IndexWriter
pipeline (which skips unchanged pages, counts new/changed, deletes vanished pages).

Pure bookkeeping: no Scrapy, no Whoosh. The rules:

* a page is *seen* when this crawl reached it, whatever the outcome (new, changed,
  unchanged, or a network error/5xx, which keeps the old documents);
* a page is *vanished* when its start completed and the crawl did not see it (a deleted
  file, a 404/410, a URL dropped from a sitemap);
* only a crawl that finished normally deletes anything, and only for starts that
  completed: an interrupted crawl (Ctrl-C, kill, ``CLOSESPIDER_*``) deletes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.documents import start_key

__all__ = ["RefreshState", "start_key"]


@dataclass
class RefreshState:
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    incomplete: set[str] = field(default_factory=set)
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

    def mark_incomplete(self, start: str) -> None:
        self.incomplete.add(start_key(start))

    def known(self, url: str) -> dict[str, Any] | None:
        return self.states.get(url)

    def file_unchanged(self, url: str, stat: os.stat_result) -> bool:
        """The fast path: same size and mtime as when the page was indexed."""
        state = self.states.get(url)
        return bool(state) and state.get("size") == stat.st_size and state.get("mtime") == stat.st_mtime_ns

    def content_unchanged(self, url: str, content_hash: str) -> bool:
        state = self.states.get(url)
        return bool(state) and state.get("content_hash") == content_hash

    def sitemap_unchanged(self, url: str, lastmod: str | None) -> bool:
        state = self.states.get(url)
        return bool(lastmod and state and state.get("lastmod") and state["lastmod"] >= lastmod)

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
    def vanished(self, finished: bool, starts: Iterable[str] | None = None) -> list[str]:
        """Pages to delete: those of completed starts that this crawl did not see."""
        if not finished:
            return []
        complete = {start_key(s) for s in (starts if starts is not None else self.starts)} - self.incomplete
        return sorted(
            url
            for url, state in self.states.items()
            if state.get("start") and start_key(state["start"]) in complete and url not in self.seen
        )
