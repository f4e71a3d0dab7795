"""What the search page shows before a query: the index at a glance.

How many images from how many pages, domains and sites, when the index last changed and
the last crawl finished, the biggest sites, domains and boards (each a link to its
search), and the newest images. Counted with the fast path's arrays (live postings, one
``bincount`` per facet, the same per-segment arrays the searches use and keep), never by
walking documents, and kept per index state: a new commit or crawl makes a new overview,
any other request reuses the last one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from index import _whoosh
from index.admin import LAST_CRAWL
from index.api import IndexMissing
from index.cache import Cache
from index.fast import arrays
from index.search import decorate
from index.search.run import _searcher, as_search_errors

__all__ = ["TOP", "Overview", "overview", "search_link", "start_page"]

# Entries per list: what fits beside the newest images without scrolling.
TOP = 8
NEWEST = 12
# The lists of the start page, as the fields they count.
TOP_FIELDS = ("site", "domain", "board")

# A few overviews (one per index state and index folder); small.
_OVERVIEWS: Cache[Overview] = Cache("overview", 2 * 2**20)
# Per segment (its files never change), every document's date as the column stores it:
# 8 bytes a document, read once, so a commit costs only its new segments.
_DATES: Cache[np.ndarray] = Cache("overview-dates", 64 * 2**20)


@dataclass(frozen=True)
class Overview:
    images: int  # distinct image URLs, as search totals count them
    occurrences: int  # image documents: an image on three pages counts three times
    pages: int
    domains: int
    sites: int
    boards: int
    top: dict[str, list[tuple[str, int]]]  # field → [(value, images)], largest first
    newest: list[dict[str, Any]]  # hits as search returns them, newest page date first
    last_commit: str | None  # ISO 8601, UTC
    last_crawl: dict[str, Any] | None = field(default=None)  # finished_at, reason, counts


def search_link(fieldname: str, value: str) -> str:
    """The search page's URL for everything with ``value`` in ``fieldname``: the query
    ``site:"X"``, or, for a value the query language cannot quote, the filter parameter.

    >>> search_link("site", "Health.com")
    '/?q=site%3A%22Health.com%22'
    >>> search_link("board", 'The "best" board')
    '/?q=%2A%3A%2A&board=The+%22best%22+board'
    """
    if '"' in value:
        return "/?" + urlencode({"q": "*:*", fieldname: value})
    return "/?" + urlencode({"q": f'{fieldname}:"{value}"'})


def start_page(index_dir: str | Path) -> dict[str, Any]:
    """The start page's template context: ``overview``, or ``missing`` and ``hint`` when
    there is no index to show yet."""
    try:
        return {"overview": overview(index_dir)}
    except IndexMissing as exc:
        return {"missing": str(exc), "hint": exc.hint}


@as_search_errors
def overview(index_dir: str | Path) -> Overview:
    """The index at ``index_dir`` at a glance (see the module's docstring). Raises
    :class:`IndexMissing` when there is no index, or an empty one, and
    :class:`IndexUnreadable` when it cannot be read, as a search does."""
    searcher = _searcher(index_dir)
    last_crawl = Path(index_dir) / LAST_CRAWL
    try:
        crawl_mtime = last_crawl.stat().st_mtime_ns
    except OSError:
        crawl_mtime = None
    key = (os.path.abspath(index_dir), searcher.reader().generation(), crawl_mtime)
    found = _OVERVIEWS.get(key)
    if found is None:
        found = _OVERVIEWS.put(key, _count(searcher, Path(index_dir), crawl_mtime is not None))
    return found


def _count(searcher: Any, index_dir: Path, crawled: bool) -> Overview:
    images = arrays.live_docnums(searcher, "kind", "image")
    everything = arrays.Evaluation(images, np.zeros(len(images)))
    counts = {name: arrays.facet_counts(searcher, everything, name) for name in TOP_FIELDS}
    ordered = decorate.ordered_facets(counts)
    return Overview(
        images=arrays.distinct_count(searcher, images, "image_url") if len(images) else 0,
        occurrences=len(images),
        pages=arrays.doc_count(searcher, "kind", "page"),
        domains=len(ordered["domain"]),
        sites=len(ordered["site"]),
        boards=len(ordered["board"]),
        top={name: list(values.items())[:TOP] for name, values in ordered.items()},
        newest=_newest(searcher, images, NEWEST),
        last_commit=_last_commit(index_dir),
        last_crawl=_last_crawl(index_dir) if crawled else None,
    )


def _dates(searcher: Any) -> np.ndarray:
    """Every document's date column value, by global document number (the column's
    default, its largest value, where a document has none)."""
    parts = []
    for reader, _offset in searcher.reader().leaf_readers():
        count = reader.doc_count_all()
        key = _whoosh.segment_key(reader)
        values = _DATES.get(key)
        if values is None:
            if reader.has_column("date"):
                column = reader.column_reader("date", translate=False)
                values = np.fromiter(column, dtype=np.uint64, count=count)
            else:
                values = np.full(count, np.iinfo(np.uint64).max, dtype=np.uint64)
            _DATES.put(key, values, values.nbytes + 64)
        parts.append(values)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def _newest(searcher: Any, images: np.ndarray, count: int) -> list[dict[str, Any]]:
    """The ``count`` newest distinct images by page date (undated ones last, the most
    recently indexed first), as search hits."""
    if not len(images):
        return []
    missing = np.iinfo(np.uint64).max
    dates = _dates(searcher)[images]
    # Ascending: the newest date first, undated last (the column's default is its largest).
    age = missing - np.where(dates == missing, 0, dates)
    hits: list[tuple[None, dict[str, Any]]] = []
    seen: set[str] = set()
    # Only the newest candidates are sorted; all of them only when images shown on many
    # pages (collapsed into one hit) use up the candidates.
    for candidates in (min(len(images), 8 * count), len(images)):
        picked = np.argpartition(age, candidates - 1)[:candidates] if candidates < len(images) else None
        pool = np.arange(len(images)) if picked is None else picked
        # Equal dates (a page's images): the later document first.
        order = pool[np.lexsort((-images[pool], age[pool]))]
        hits, seen = [], set()
        for docnum in images[order].tolist():
            record = json.loads(searcher.stored_fields(docnum)["record"])
            url = record.get("image_url") or ""
            if url in seen:
                continue  # one image on many pages is shown once, as search collapses it
            seen.add(url)
            hits.append((None, record))
            if len(hits) == count:
                break
        if len(hits) == count or picked is None:
            break
    return decorate.decorate(searcher, hits, scored=False, marked=None)


def _last_commit(index_dir: Path) -> str | None:
    """When the index last changed: its newest table of contents (one per commit)."""
    times = [p.stat().st_mtime for p in index_dir.glob("*.toc")]
    return _iso(max(times)) if times else None


def _last_crawl(index_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((index_dir / LAST_CRAWL).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")
