"""Search the index: the library behind ``scrapy search`` and ``python -m index search``.

A search is three steps, one module each: read the query and the options
(:mod:`index.search.parse`); collect, count and facet the hits (:mod:`index.search.collect`,
which expands the query's words against the index within a budget, :mod:`index.search.budget`);
decorate the hits (:mod:`index.search.decorate`). Here: the entry point, its errors and results,
and the caches of searchers and recent results.

>>> results = search("data/index", "chair yoga", limit=5)   # doctest: +SKIP
>>> [hit["headline"] for hit in results.hits]               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from whoosh import index as whoosh_index
from whoosh.searching import Searcher

from index import _whoosh
from index.api import IndexMissing, IndexUnreadable, QueryError, Results, SearchCancelled, SearchError
from index.cache import KEEP_FREE_BYTES, Cache, free_unused, on_clear, sizeof
from index.fast import arrays as fastsearch
from index.fast.arrays import flush_store
from index.model.schema import SURFACE_FIELD
from index.search import collect, decorate, expand
from index.search.budget import Budget, BudgetExceeded, Cancelled, check_size
from index.search.parse import check_options, parse

__all__ = ["as_search_errors", "search", "start_warming", "stop_warming", "warm"]

R = TypeVar("R")

CRAWL_HINT = "scrapy crawl pages -a start=PATH_OR_URL"
logger = logging.getLogger(__name__)
# What a damaged or unreadable index raises from inside Whoosh while a search reads it (a
# truncated or deleted segment, a garbled table of contents, a file without permission):
# one line for the user instead of a traceback that scripts read as "no hits".
DAMAGE = (
    OSError,
    EOFError,
    struct.error,
    zlib.error,
    pickle.UnpicklingError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    whoosh_index.IndexError,  # Whoosh's own, not the built-in one: a garbled table of contents
)


def as_search_errors(fn: Callable[..., R]) -> Callable[..., R]:
    """Budget overruns, cancellations, a query nested too deeply and a damaged index,
    raised anywhere inside a search (or anything else that reads the index to answer
    the page: its start page), as the search errors its callers handle."""

    @functools.wraps(fn)
    def wrapper(index_dir: str | Path, *args: Any, **kwargs: Any) -> R:
        error: SearchError
        _in_flight(+1)
        try:
            return fn(index_dir, *args, **kwargs)
        except SearchError as exc:
            error = exc
        except BudgetExceeded as exc:
            error = QueryError(str(exc))
        except Cancelled as exc:
            error = SearchCancelled(str(exc))
        except RecursionError:
            error = QueryError("query nested too deeply: remove some brackets or minus signs")
        except DAMAGE as exc:
            logger.debug("search of %s failed", index_dir, exc_info=True)
            error = unreadable_index(index_dir, exc)
        finally:
            _in_flight(-1)
            # What this search decoded, kept for the next process (a cut-short search's
            # too); in a server, by its warm-up thread, not in the answer's time.
            if not _FLUSHERS[0]:
                flush_store()
            # And what it freed, given back to the system once it adds up (index.cache).
            budget = kwargs.get("budget")
            free_unused(now=budget is not None and budget.spent_bytes >= KEEP_FREE_BYTES)
        # Raised out here, bare: an error raised in the handler, or one carrying its
        # traceback, keeps every frame of the stopped search and their arrays (up to the
        # budget's 512 MiB) for as long as anything holds the error, and a server's idle
        # worker thread holds its last one.
        error.__context__ = error.__cause__ = None
        raise error.with_traceback(None)

    return wrapper


@as_search_errors
def search(
    index_dir: str | Path,
    query: str,
    *,
    limit: int = 10,
    page: int = 1,
    sort: str = "relevance",
    facets: tuple[str, ...] | list[str] = (),
    filters: dict[str, str] | None = None,
    since: str | None = None,
    until: str | None = None,
    collapse: bool = True,
    marks: tuple[str, str] | None = None,
    exact: bool = False,
    budget: Budget | None = None,
) -> Results:
    """Run ``query`` against the image documents of the index at ``index_dir``.

    ``filters`` are exact-field filters (domain, site, author, board, image_host);
    ``since``/``until`` bound the page date (inclusive days); ``collapse`` keeps one hit
    per image URL (each hit's ``uses`` says on how many pages it appears); ``marks``
    adds ``headline_marked`` with matched terms wrapped in the two strings; ``budget``
    bounds the time (a :class:`QueryError` past it) and can cancel the search."""
    check_size(query)
    budget = budget or Budget()
    check_options(limit=limit, page=page, sort=sort, facets=facets)
    # The work starts here: time spent queued before is reported, not charged.
    budget.start()
    budget.check()  # a search queued behind others may already be unwanted
    start = time.perf_counter()
    searcher = _searcher(index_dir)
    filtered = tuple(sorted((filters or {}).items()))
    key = (_whoosh.searcher_serial(searcher), query, limit, page, sort, tuple(facets), filtered, since, until)
    key += (collapse, marks, exact)
    cached = _cached(key)
    if cached is not None:
        return replace(cached, elapsed_ms=(time.perf_counter() - start) * 1000, queued_ms=budget.queued * 1000)
    parsed = parse(searcher.schema, query, sort=sort, filters=filters, since=since, until=until)
    found = collect.find(
        searcher, parsed, query, window=page * limit, collapse=collapse, exact=exact, facets=facets, budget=budget
    )
    marked = decorate.highlighter(searcher, found.q, marks) if marks else None
    ranked = found.top[(page - 1) * limit : page * limit]
    shown = decorate.decorate(searcher, ranked, scored=parsed.sortedby is None, marked=marked)
    suggestion = None
    if not shown:
        budget.check()
        suggestion = decorate.suggestion(searcher, parsed.words, query, budget=budget)
    corrections = decorate.shown_corrections(searcher, found.tolerance.corrections, shown)
    results = Results(
        query=query,
        total=found.total,
        hits=shown,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        facets=decorate.ordered_facets(found.facets),
        page=page,
        limit=limit,
        parsed=str(found.q),
        suggestion=suggestion,
        total_exact=found.total_exact,
        corrections=corrections,
        queued_ms=budget.queued * 1000,
    )
    if not found.provisional:
        _remember(key, results)
    return results


# -- searchers and recent results --------------------------------------------------------------


def unreadable_index(index_dir: str | Path, exc: BaseException) -> IndexUnreadable:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    return IndexUnreadable(
        f"cannot read index at {index_dir}: {reason}".splitlines()[0][:300],
        hint=f"check its permissions, or rebuild it with: {CRAWL_HINT} -s INDEX_DIR={index_dir}",
    )


def _open(index_dir: str | Path) -> whoosh_index.Index:
    path = Path(index_dir)
    try:
        os.listdir(path)  # an unreadable folder is not a missing index
    except (PermissionError, NotADirectoryError) as exc:
        raise unreadable_index(path, exc) from None
    except OSError:
        pass
    try:
        exists = path.is_dir() and whoosh_index.exists_in(str(path))
    except DAMAGE as exc:  # there, but its table of contents cannot be read
        raise unreadable_index(path, exc) from None
    if not exists:
        raise IndexMissing(
            f"no index at {path}",
            hint=f"create it with: {CRAWL_HINT} -s INDEX_DIR={path}",
        )
    try:
        return whoosh_index.open_dir(str(path))
    except Exception as exc:  # noqa: BLE001 - any open failure is one message
        raise unreadable_index(path, exc) from None


# One searcher per index, refreshed (not reopened) when a writer has committed since:
# a long-lived caller (the web page, the benchmarks) pays the open cost once, and every
# search still sees the last committed state. Readers never wait for the writer.
# One per thread, too: the search page searches in worker threads, and a Whoosh searcher
# is not meant to be shared between threads.
_SEARCHERS: dict[tuple[str, int], Searcher] = {}
# Recent results per searcher: people page back and forth and repeat queries; a hit
# costs a dict copy instead of a search. Bounded, and stale the moment the index changes:
# they are keyed by their searcher's serial number (index._whoosh.searcher_serial), not
# by id(), which a refreshed searcher could reuse (found by a test whose searches saw
# totals go back to an older commit's).
# A page of results holds 3.4-5.3 times its pickle's length in memory (index.cache's
# held_bytes, 120 pages of the bench's queries with and without facets, 10 and 50 hits):
# four times it is charged within the caches' tolerance, and costs 0.1 ms, where walking
# every value of every hit (index.cache.sizeof) cost 1.2 ms of each answer's time.
PICKLED_TO_HELD = 4


def _results_size(results: Results) -> int:
    try:
        return PICKLED_TO_HELD * len(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError):  # a value pickle cannot take
        return sizeof(results)


_RESULTS: Cache[Results] = Cache("results", 32 * 2**20, sizer=_results_size)


@on_clear
def _close_searchers() -> None:
    for searcher in list(_SEARCHERS.values()):
        searcher.close()
    _SEARCHERS.clear()


def _forget_ended_threads() -> None:
    """Close the searchers of threads that have ended: a server's thread pool replaces
    idle threads, and each ended thread's searcher (its segment readers, their column
    readers) was otherwise kept for the life of the process."""
    alive = {t.ident for t in threading.enumerate()}
    for key in [k for k in list(_SEARCHERS) if k[1] not in alive]:
        searcher = _SEARCHERS.pop(key, None)
        if searcher is not None:
            with contextlib.suppress(Exception):  # already closed, or its files gone
                searcher.close()


def _searcher(index_dir: str | Path) -> Searcher:
    path = os.path.abspath(index_dir)
    key = (path, threading.get_ident())
    searcher = _SEARCHERS.get(key)
    if searcher is not None:
        try:
            fresh = searcher.refresh()
        except Exception:  # noqa: BLE001 - the index moved or vanished: open again
            fresh = None
        if fresh is not None and Path(path).is_dir():
            _SEARCHERS[key] = searcher = fresh
        else:
            _SEARCHERS.pop(key, None)
            searcher = None
    if searcher is None:
        _forget_ended_threads()
        searcher = _SEARCHERS[key] = _open(index_dir).searcher()
    _whoosh.bound_searcher_caches(searcher)
    if searcher.doc_count() == 0:
        raise IndexMissing(
            f"index at {index_dir} is empty", hint=f"fill it with: {CRAWL_HINT} -s INDEX_DIR={index_dir}"
        )
    return searcher


def _cached(key: tuple[Any, ...]) -> Results | None:
    """The results remembered under ``key``, as a copy the caller may change."""
    cached = _RESULTS.get(key)
    if cached is None:
        return None
    return replace(cached, hits=[dict(h) for h in cached.hits])


def _remember(key: tuple[Any, ...], results: Results) -> None:
    _RESULTS.put(key, replace(results, hits=[dict(h) for h in results.hits]))


# -- the server's warm-up ----------------------------------------------------------------------

# Searches running in this process now, and when the last one ended: the warm-up gives
# way to them, and works only once the process has had no search for IDLE seconds (a
# server's first query, asked as it starts, had to share the interpreter with the
# warm-up and was stopped at 3 s; alone it answered in 2.4 s).
_RUNNING = [0, time.monotonic()]
_RUNNING_LOCK = threading.Lock()
# Told when the last search in flight ends: the warm-up sleeps on it rather than looking
# every few milliseconds (a thread that wakes a hundred times a second takes the
# interpreter lock from the searches as often).
_QUIET = threading.Condition(_RUNNING_LOCK)
IDLE = 0.5
# How often the warm-up looks for a new commit of the index and writes what searches
# decoded to the array store (seconds).
WARM_EVERY = 2.0
# Warm-up threads running in this process: while there is one, searches leave the
# writing of the array store to it.
_FLUSHERS = [0]


def _in_flight(change: int = 0) -> int:
    with _RUNNING_LOCK:
        _RUNNING[0] += change
        if change < 0:
            _RUNNING[1] = time.monotonic()
            if not _RUNNING[0]:
                _QUIET.notify_all()
        return _RUNNING[0]


def _wait_for_idle(cancel: threading.Event) -> None:
    """Return once no search has run for IDLE seconds, or ``cancel`` is set."""
    with _QUIET:
        while not cancel.is_set():
            if _RUNNING[0]:
                _QUIET.wait(IDLE)  # woken when the last one ends; IDLE bounds a missed stop
                continue
            left = IDLE - (time.monotonic() - _RUNNING[1])
            if left <= 0:
                return
            _QUIET.wait(left)


class _GivingWay(Budget):
    """The warm-up's budget: no deadline, stopped by its ``cancel`` flag, and between two
    steps of a build (where it holds nothing a search waits for) it waits until no
    search has run for IDLE seconds, so that it takes no search's time (nor the
    interpreter lock) for longer than one step."""

    def between(self) -> None:
        _wait_for_idle(self.cancel)
        self.check()


def warm(index_dir: str | Path, facets: tuple[str, ...] = (), budget: Budget | None = None) -> None:
    """Build the per-index arrays and word lists the first searches on ``index_dir``
    need (each resumable: :func:`index.search.budget.resumable`), within ``budget``, and
    keep them in the array store for the next process."""
    budget = budget or Budget()
    budget.between()  # opening the index is work too
    searcher = _searcher(index_dir)
    collect.page_docs(searcher)
    fastsearch.warm(searcher, tuple(facets), budget)
    fields = tuple(f for f in ("text", SURFACE_FIELD) if f in searcher.schema)
    expand.merge_words(searcher.reader(), fields, budget)
    flush_store()


def start_warming(index_dir: str | Path, facets: tuple[str, ...] = ()) -> threading.Event:
    """A daemon thread that warms ``index_dir`` (:func:`warm`) now and after each new
    commit, giving way to searches, and writes what the searches decoded to the array
    store every WARM_EVERY seconds (so that no answer waits for it); set the returned
    event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        seen = None
        budget = _GivingWay(cancel=stop)
        try:
            while not stop.is_set():
                try:
                    budget.between()
                    flush_store()
                    searcher = _searcher(index_dir)
                    serial = _whoosh.searcher_serial(searcher)
                    if serial != seen:
                        seen = serial
                        t0 = time.perf_counter()
                        warm(index_dir, facets, budget)
                        logger.info("warmed %s in %.1f s", index_dir, time.perf_counter() - t0)
                except Cancelled:
                    return
                except Exception:  # searches report a damaged or missing index themselves
                    logger.debug("warming %s failed", index_dir, exc_info=True)
                stop.wait(WARM_EVERY)
        finally:
            with _RUNNING_LOCK:
                _FLUSHERS[0] -= 1
            flush_store()
            searcher = _SEARCHERS.pop((os.path.abspath(index_dir), threading.get_ident()), None)
            if searcher is not None:
                searcher.close()

    with _RUNNING_LOCK:
        _FLUSHERS[0] += 1
        _RUNNING[1] = time.monotonic()  # idle from now on, not since the import
    threading.Thread(target=loop, name="warm-up", daemon=True).start()
    return stop


def stop_warming(stop: threading.Event) -> None:
    """Stop the warm-up :func:`start_warming` started, and write what the searches
    decoded since its last write (a server that exits keeps it for the next one)."""
    stop.set()
    with _QUIET:
        _QUIET.notify_all()
    flush_store()
