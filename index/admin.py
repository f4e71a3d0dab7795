"""Operating an index: ``python -m index stats | check | optimize | forget``."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.api import IndexMissing
from index.deletion import canonical_start
from index.model.state import load_page_states
from index.options import ARRAY_STORE_FILE
from index.writing.lock import SessionLock

__all__ = ["LAST_CRAWL", "STARTS", "check", "counts", "forget", "optimize", "record_crawl", "starts", "stats"]

LAST_CRAWL = "last_crawl.json"
# start → when a crawl of it last finished (any reason): how `stats` tells stale starts.
STARTS = "starts.json"
# A start no crawl has reached for this long is reported as stale.
STALE_AFTER = dt.timedelta(days=7)


@contextlib.contextmanager
def _writing(index_dir: str | Path, wait: bool) -> Iterator[Path]:
    """The index folder, held with the writer's session lock for the block (one writer
    per index: a crawl, an ingest, forget or optimize)."""
    path = Path(index_dir)
    if not whoosh_index.exists_in(str(path)):
        raise IndexMissing(f"no index at {path}")
    lock = SessionLock(path, wait=wait)
    lock.acquire()
    try:
        yield path
    finally:
        lock.release()


def _search() -> Any:
    """index.search.run, imported when used: it loads the search stack (NumPy), which a
    crawl calling record_crawl does not need (half a second of its start)."""
    import index.search.run

    return index.search.run


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True), "utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def record_crawl(index_dir: str | Path, summary: dict[str, Any]) -> None:
    """Keep the last crawl's summary next to the index (for `stats`), and when each of
    its starts was last crawled."""
    _write_json(Path(index_dir) / LAST_CRAWL, summary)
    crawled = _read_json(Path(index_dir) / STARTS) or {}
    for start in summary.get("starts") or []:
        crawled[canonical_start(start)] = summary.get("finished_at")
    _write_json(Path(index_dir) / STARTS, crawled)


def starts(
    index_dir: str | Path, now: dt.datetime | None = None, stale_after: dt.timedelta = STALE_AFTER
) -> list[dict]:
    """The starts the index holds pages for: pages, when a crawl of each last finished,
    and whether it is stale (not crawled for ``stale_after``, or never on record). A
    stale start's pages are never deleted by a refresh that does not name it; `forget`
    drops them. Reads every page record (as a crawl's start does)."""
    now = now or dt.datetime.now(dt.UTC)
    crawled = _read_json(Path(index_dir) / STARTS) or {}
    pages: Counter[str] = Counter()
    for state in load_page_states(index_dir).values():
        pages[canonical_start(state["start"]) if state.get("start") else ""] += 1
    rows = []
    for start, n in sorted(pages.items()):
        last = crawled.get(start)
        try:
            when = dt.datetime.fromisoformat(last) if last else None
        except ValueError:
            when = None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        stale = when is None or now - when > stale_after
        rows.append({"start": start or None, "pages": n, "last_crawled": last, "stale": stale})
    return rows


def forget(index_dir: str | Path, start: str, wait: bool = False) -> dict[str, int]:
    """Delete every page (and its images) recorded under ``start``, in any spelling of
    it: for a start no refresh names any more (a retired sitemap, the http:// twin of a
    site that moved to https://), whose pages no refresh would ever delete."""
    from index.writing.pagewriter import PageWriter

    key = canonical_start(start)
    with _writing(index_dir, wait) as path:
        urls = sorted(
            url
            for url, state in load_page_states(path).items()
            if state.get("start") and canonical_start(state["start"]) == key
        )
        if urls:
            writer = PageWriter(path, lock=False)
            writer.open()
            try:
                writer.delete_pages(urls)
            except BaseException:
                writer.cancel()
                raise
            writer.close()
        crawled = _read_json(path / STARTS) or {}
        if crawled.pop(key, None) is not None:
            _write_json(path / STARTS, crawled)
    return {"pages": len(urls)}


def _size(path: Path, store: bool = False) -> int:
    """The index's files, or (``store``) those of the search processes' array store."""
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.name.startswith(ARRAY_STORE_FILE) == store)


def _live_terms(searcher: Any, field: str) -> int:
    """How many terms of ``field`` at least one live document carries. The lexicon keeps
    the terms of deleted documents until a merge rewrites their segment, so counting it
    would count domains and sites that are gone; postings skip deleted documents."""
    return sum(1 for term in searcher.lexicon(field) if searcher.postings(field, term).is_active())


def counts(index_dir: str | Path) -> dict[str, int]:
    """Live image and page documents (what a refresh job reports after each crawl)."""
    ix = _search()._open(index_dir)
    with ix.searcher() as s:
        pages = sum(1 for _ in s.document_numbers(kind="page"))
        # doc_count() leaves deleted documents out; only the (few) pages are walked.
        return {"documents": s.doc_count() - pages, "pages": pages}


def stats(index_dir: str | Path) -> dict[str, Any]:
    """The index's figures: live documents only (a deleted page's documents, domains and
    sites stop counting at once, not at the next merge)."""
    ix = _search()._open(index_dir)
    with ix.searcher() as s:
        pages = sum(1 for _ in s.document_numbers(kind="page"))
        live = s.doc_count()
        deleted = s.doc_count_all() - live
        domains = _live_terms(s, "domain")
        sites = _live_terms(s, "site")
    segments = len(ix._segments())
    generation = ix.latest_generation()
    last = Path(index_dir) / LAST_CRAWL
    return {
        "index": str(index_dir),
        "documents": live - pages,
        "pages": pages,
        "domains": domains,
        "sites": sites,
        "segments": segments,
        "deleted_documents": deleted,
        "generation": generation,
        "last_commit": dt.datetime.fromtimestamp(ix.last_modified(), dt.UTC).isoformat(timespec="seconds"),
        "size_bytes": _size(Path(index_dir)),
        "array_store_bytes": _size(Path(index_dir), store=True),
        "last_crawl": json.loads(last.read_text("utf-8")) if last.exists() else None,
        "starts": starts(index_dir),
    }


def check(index_dir: str | Path) -> list[str]:
    """Consistency between page and image documents; returns the problems found."""
    ix = _search()._open(index_dir)
    problems: list[str] = []
    with ix.searcher() as s:
        expected: dict[str, int] = {}
        ids: Counter[str] = Counter()
        per_page: Counter[str] = Counter()
        for _docnum, fields in s.iter_docs():
            ids[fields["id"]] += 1
            if fields.get("kind") == "page":
                expected[fields["page_url"]] = int(json.loads(fields["record"]).get("image_count") or 0)
            else:
                per_page[fields["page_url"]] += 1
    problems += [f"duplicate document id {i} ({n} copies)" for i, n in ids.items() if n > 1]
    problems += [f"images without a page document: {url}" for url in per_page if url not in expected]
    problems += [
        f"page {url} says {n} images, index has {per_page.get(url, 0)}"
        for url, n in expected.items()
        if per_page.get(url, 0) != n
    ]
    return problems


def optimize(index_dir: str | Path, wait: bool = False) -> dict[str, int]:
    """Merge all segments into one (takes the writer lock)."""
    with _writing(index_dir, wait) as path:
        ix = whoosh_index.open_dir(str(path))
        before = len(ix._segments())
        ix.optimize()
        after = len(whoosh_index.open_dir(str(path))._segments())
    return {"segments_before": before, "segments_after": after}
