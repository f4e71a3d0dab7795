"""Search the index: the library behind ``scrapy search`` and ``python -m index search``.

>>> results = search("data/index", "chair yoga", limit=5)   # doctest: +SKIP
>>> [hit["headline"] for hit in results.hits]               # doctest: +SKIP
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import itertools
import json
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from whoosh import highlight, sorting
from whoosh import index as whoosh_index
from whoosh import query as Q
from whoosh.qparser import (
    FieldAliasPlugin,
    FuzzyTermPlugin,
    GtLtPlugin,
    MultifieldParser,
    OperatorsPlugin,
)
from whoosh.qparser.dateparse import DateParserPlugin
from whoosh.searching import Searcher

from index import (
    _whoosh_fixes,  # noqa: F401 - reads segments in place (see there)
    fastsearch,
)
from index.documents import TEXT_SECTIONS
from index.query import (
    Budget,
    BudgetExceeded,
    Cancelled,
    Tolerance,
    bounded_collector,
    check_size,
    expand_multiterms,
    tolerate,
)
from index.schema import EXACT_FIELDS

__all__ = ["DEFAULT_FIELDS", "IndexMissing", "QueryError", "Results", "SearchError", "search"]

DEFAULT_FIELDS = ("headline", "title", "caption", "alt", "tags")
FACETS = ("domain", "site", "board", "author", "image_host")
SORTS = {"relevance": None, "date": ("date", False), "-date": ("date", True), "domain": ("domain", False)}

# Above this estimated number of matches, the total is reported as "about N".
EXACT_COUNT_LIMIT = 5_000
# Collapsing looks at this many times the hits it needs, then more if repeats ate them.
COLLAPSE_OVERSAMPLE = 4
CRAWL_HINT = "scrapy crawl pages -a start=PATH_OR_URL"


class SearchError(Exception):
    """A search that cannot run; ``str()`` is the one-line message for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class IndexMissing(SearchError):
    pass


class QueryError(SearchError):
    pass


class SearchCancelled(SearchError):
    """The caller cancelled the search (its client went away)."""


@dataclass
class Results:
    query: str
    total: int
    hits: list[dict[str, Any]]
    elapsed_ms: float
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    page: int = 1
    limit: int = 10
    parsed: str = ""
    suggestion: str | None = None
    total_exact: bool = True
    # Typo tolerance: each word as typed → the index word its results needed instead.
    corrections: dict[str, str] = field(default_factory=dict)


def _open(index_dir: str | Path) -> whoosh_index.Index:
    path = Path(index_dir)
    if not path.is_dir() or not whoosh_index.exists_in(str(path)):
        raise IndexMissing(
            f"no index at {path}",
            hint=f"create it with: {CRAWL_HINT} -s INDEX_DIR={path}",
        )
    try:
        return whoosh_index.open_dir(str(path))
    except Exception as exc:  # noqa: BLE001 - any open failure is one message
        raise IndexMissing(f"cannot open index at {path}: {exc}") from None


# One searcher per index, refreshed (not reopened) when a writer has committed since:
# a long-lived caller (the web page, the benchmarks) pays the open cost once, and every
# search still sees the last committed state. Readers never wait for the writer.
# One per thread, too: the search page searches in worker threads, and a Whoosh searcher
# is not meant to be shared between threads.
_SEARCHERS: dict[tuple[str, int], Searcher] = {}
# Recent results per searcher: people page back and forth and repeat queries; a hit
# costs a dict copy instead of a search. Bounded, and stale the moment the index changes.
RESULT_CACHE_SIZE = 256
_RESULTS: OrderedDict[tuple[Any, ...], Results] = OrderedDict()
_RESULTS_LOCK = threading.Lock()
# Results are keyed by their searcher's serial number. Not by id(): a refreshed searcher
# could reuse the address of the one it replaced (found by a test whose searches saw
# totals go back to an older commit's).
_SERIAL = itertools.count()


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
            if fresh is not searcher:
                fresh._pages_serial = next(_SERIAL)
            _SEARCHERS[key] = fresh
            searcher = fresh
        else:
            _SEARCHERS.pop(key, None)
            searcher = None
    if searcher is None:
        searcher = _open(index_dir).searcher()
        searcher._pages_serial = next(_SERIAL)
        _SEARCHERS[key] = searcher
    if searcher.doc_count() == 0:
        raise IndexMissing(
            f"index at {index_dir} is empty", hint=f"fill it with: {CRAWL_HINT} -s INDEX_DIR={index_dir}"
        )
    return searcher


# Per searcher (so they go when it goes): the page documents, as sorted numbers for the
# fast path and as a set for Whoosh's `mask=`.
_PAGE_DOCS: weakref.WeakKeyDictionary[Searcher, tuple[np.ndarray, set[int]]] = weakref.WeakKeyDictionary()


def _page_docs(searcher: Searcher) -> tuple[np.ndarray, set[int]]:
    found = _PAGE_DOCS.get(searcher)
    if found is None:
        try:
            docs = fastsearch.live_docnums(searcher, "kind", "page")
        except fastsearch.Unsupported:
            docs = np.array(sorted(Q.Term("kind", "page").docs(searcher)), dtype=np.int64)
        found = _PAGE_DOCS[searcher] = (docs, set(docs.tolist()))
    return found


_UNBALANCED = (("(", ")"), ("[", "]"))


def _check_syntax(text: str) -> None:
    """Whoosh's parser silently drops what it cannot parse; people deserve to know."""
    outside = re.sub(r'"[^"]*"', '""', text)
    if outside.count('"') % 2:
        raise QueryError("unclosed quote in query")
    for open_, close in _UNBALANCED:
        if outside.count(open_) != outside.count(close):
            raise QueryError(f"unbalanced '{open_}{close}' in query")
    m = re.search(r"(?:^|\s)(\w+):(?=\s|$|\)|\])", outside)
    if m:
        raise QueryError(f"nothing after '{m.group(1)}:' in query")


def query_boosts(schema: Any) -> dict[str, float]:
    """What the parser multiplies each default field's words by: the field's weight
    (index.documents.TEXT_SECTIONS) over the boost its postings already carry from the
    index (the schema's ``field_boost``), so the weight counts once, not twice."""
    return {
        name: TEXT_SECTIONS[name] / (getattr(schema[name].format, "field_boost", 1.0) or 1.0) for name in DEFAULT_FIELDS
    }


def make_parser(schema: Any) -> tuple[MultifieldParser, list[str]]:
    errors: list[str] = []
    parser = MultifieldParser(list(DEFAULT_FIELDS), schema, fieldboosts=query_boosts(schema))
    parser.add_plugin(FieldAliasPlugin({"tags": ["tag"], "page_url": ["url"]}))
    # `-word` as a second spelling of `NOT word`, only at the start of a term, so that
    # `tag:page-tag` stays one term. (Whoosh's PlusMinusPlugin would turn AND into OR.)
    parser.replace_plugin(OperatorsPlugin(Not=r"(^|(?<=(\s|[()])))(NOT(?=\s)|-(?=[^\s-]))"))
    parser.add_plugin(FuzzyTermPlugin())
    parser.add_plugin(GtLtPlugin())
    parser.add_plugin(DateParserPlugin(callback=errors.append, free=False))
    return parser, errors


_STRAY_OPERATOR = re.compile(r"(?<!\S)[-+](?!\S)")
# Whoosh's GtLtPlugin reads `date:>2021-12-31` as `>= 2021-01-01` (it stops at the first
# hyphen and ignores the strictness), so relational dates are read here, as filters.
_RELATIVE_DATE = re.compile(r'(?<!\S)date:(>=|<=|>|<)"?([0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2}(?:T[0-9:.]+)?)?)?)"?(?!\S)')


def _period(value: str) -> tuple[dt.datetime, dt.datetime]:
    """The first and last instant of a year, month, day or moment."""
    parts = value.split("-")
    try:
        if len(parts) == 1:
            start = dt.datetime(int(parts[0]), 1, 1)
            end = dt.datetime(start.year + 1, 1, 1)
        elif len(parts) == 2:
            start = dt.datetime(int(parts[0]), int(parts[1]), 1)
            end = dt.datetime(start.year + (start.month == 12), start.month % 12 + 1, 1)
        elif "T" not in value:
            start = dt.datetime.fromisoformat(value)
            end = start + dt.timedelta(days=1)
        else:
            start = dt.datetime.fromisoformat(value)
            return start, start
    except ValueError:
        raise QueryError(f"cannot read date in query: {value}") from None
    except OverflowError:
        raise QueryError(f"date out of range in query: {value}") from None
    return start, end - dt.timedelta(microseconds=1)


def _relative_dates(text: str) -> tuple[str, list[Q.Query]]:
    ranges: list[Q.Query] = []

    def take(m: re.Match[str]) -> str:
        op, value = m.group(1), m.group(2)
        try:
            start, end = _period(value)
            low = start if op == ">=" else end + dt.timedelta(microseconds=1) if op == ">" else None
            high = end if op == "<=" else start - dt.timedelta(microseconds=1) if op == "<" else None
        except OverflowError:  # before year 1 or after 9999: Python's calendar ends there
            raise QueryError(f"date out of range in query: {m.group(0).strip()}") from None
        ranges.append(Q.DateRange("date", low, high))
        return " "

    return _RELATIVE_DATE.sub(take, text), ranges


_EXPANDABLE = (Q.Term, Q.Prefix, Q.Wildcard, Q.FuzzyTerm)


def combine_fields(q: Q.Query, head_boost: float = 1.0) -> Q.Query:
    """Turn each default-field word (the parser's run of the same term in all five
    default fields, in ``DEFAULT_FIELDS`` order) into that term in the combined ``text``
    field: same matches, far less work per document (see index.schema.BoostedText).
    Phrases and words a person aimed at one field stay as they are."""
    if not isinstance(q, Q.Or):
        return q.apply(lambda sub: combine_fields(sub, head_boost))
    subs = [combine_fields(sub, head_boost) for sub in q.subqueries]
    out: list[Q.Query] = []
    width = len(DEFAULT_FIELDS)
    i = 0
    while i < len(subs):
        run = subs[i : i + width]
        if (
            len(run) == width
            and isinstance(run[0], _EXPANDABLE)
            and all(type(sub) is type(run[0]) for sub in run)
            and tuple(sub.fieldname for sub in run) == DEFAULT_FIELDS
        ):
            head = run[0]  # the headline's: analysed like the combined field
            combined = copy.copy(head)
            combined.fieldname = "text"
            # The parser multiplied the word's own boost (`word^2`) by the field's.
            combined.boost = head.boost / head_boost
            out.append(combined)
            i += width
        else:
            out.append(subs[i])
            i += 1
    if len(out) == 1:
        single = copy.copy(out[0])
        single.boost *= q.boost
        return single
    new = copy.copy(q)
    new.subqueries = out
    return new


def parse_query(schema: Any, text: str) -> Q.Query:
    text, date_filters = _relative_dates(_STRAY_OPERATOR.sub(" ", text))
    if not text.strip():
        if date_filters:
            return Q.And(date_filters) if len(date_filters) > 1 else date_filters[0]
        raise QueryError("empty query")
    _check_syntax(text)
    parser, errors = make_parser(schema)
    try:
        q = parser.parse(text)
    except Exception as exc:  # noqa: BLE001 - Whoosh raises bare Exception for e.g. `date:[x to y]`
        message = str(exc).replace("'", "")
        raise QueryError(
            f"cannot read date in query: {message}" if "date" in message else f"bad query: {message}"
        ) from None
    if date_filters:
        q = Q.And([q, *date_filters])
    if errors:
        raise QueryError(f"cannot read date in query: {errors[0]}")
    if q is Q.NullQuery or isinstance(q, type(Q.NullQuery)):
        raise QueryError("query matches nothing it can parse")
    if "text" in schema:  # an index built before the combined field searches the old way
        q = combine_fields(q, query_boosts(schema)["headline"])
    return q


class _Marks(highlight.Formatter):
    """Wraps matched terms in the caller's marks (ANSI bold, <mark>, ...)."""

    def __init__(self, start: str, end: str) -> None:
        self.start, self.end = start, end

    def format_token(self, text: str, token: Any, replace: bool = False) -> str:
        return f"{self.start}{highlight.get_text(text, token, replace)}{self.end}"


def _highlighter(searcher: Searcher, q: Q.Query, marks: tuple[str, str]) -> Any:
    """A function wrapping the query's words in ``marks`` in a headline.

    The words are matched in the combined ``text`` field, which Whoosh's hit highlighter
    does not know belongs to the headline, so the terms are handed over explicitly
    (prefixes and fuzzy words expanded to the index's own words)."""
    try:
        found = q.existing_terms(searcher.reader(), phrases=True, expand=True)
    except Exception:  # noqa: BLE001 - highlighting is decoration, never an error
        found = set()
    words = frozenset(
        word.decode("utf-8") if isinstance(word, bytes) else str(word)
        for name, word in found
        if name in ("text", "headline")
    )
    analyzer = searcher.schema["headline"].analyzer
    formatter, fragmenter = _Marks(*marks), highlight.WholeFragmenter()

    def mark(text: str) -> str:
        # Page text that already holds the mark strings would unbalance them.
        for m in marks:
            if m and m in text:
                text = text.replace(m, "\ufffd")
        if not text or not words:
            return text
        return highlight.highlight(text, words, analyzer, fragmenter, formatter, top=1, minscore=0) or text

    return mark


def _uses(searcher: Searcher, image_url: str | None) -> int:
    """How many image documents (page occurrences) show this image URL."""
    if not image_url:
        return 0
    try:
        return fastsearch.doc_count(searcher, "image_url", image_url)
    except fastsearch.Unsupported:
        return sum(1 for _ in Q.Term("image_url", image_url).docs(searcher))


def _shown_corrections(searcher: Searcher, corrections: dict[str, str], hits: list[dict[str, Any]]) -> dict[str, str]:
    """Corrections as words a person reads: the index holds stems (`exercis`), so each
    is shown as the first hit's word with that stem (`exercises`)."""
    analyzer = searcher.schema["text"].analyzer if "text" in searcher.schema else None
    shown = {}
    for typed, stem in corrections.items():
        word = stem
        for hit in hits[:10]:
            text = " ".join(str(hit.get(k) or "") for k in ("headline", "title", "alt"))
            surface = next((t.original for t in analyzer(text, keeporiginal=True) if t.text == stem), None)
            if surface:
                word = surface.lower()
                break
        shown[typed] = word
    return shown


def _parse_day(value: str | None, name: str, end: bool = False) -> dt.datetime | None:
    if not value:
        return None
    try:
        day = dt.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"--{name} wants a date like 2020-01-31, not {value!r}") from None
    if end and len(value) <= 10:
        day += dt.timedelta(days=1, microseconds=-1)
    return day


def _image_key(searcher: Searcher) -> Any:
    """Docnum → what collapsing compares (the image URL, else the document itself)."""
    try:
        lookup = fastsearch.column_lookup(searcher, "image_url")
    except fastsearch.Unsupported:

        def lookup(docnum: int) -> Any:
            return json.loads(searcher.stored_fields(docnum)["record"]).get("image_url")

    return lambda docnum: lookup(docnum) or ("doc", docnum)


def _take(
    searcher: Searcher,
    top: list[tuple[float, dict[str, Any]]],
    seen: set[Any],
    score: float,
    docnum: int,
    key: Any,
) -> int:
    """Add one hit's record to ``top`` unless ``key`` (collapsing) says its image is
    already there; returns how many hits ``top`` holds. The record is read only for a
    hit that is kept."""
    if key is not None:
        url = key(docnum)
        if url in seen:
            return len(top)
        seen.add(url)
    top.append((score, json.loads(searcher.stored_fields(docnum)["record"])))
    return len(top)


def _run(searcher: Searcher, q: Q.Query, budget: Budget, **kwargs: Any) -> Any:
    """``searcher.search(q, **kwargs)``, within the query's budget."""
    collector = bounded_collector(searcher, budget, **kwargs)
    searcher.search_with_collector(q, collector)
    return collector.results()


def _collect(
    searcher: Searcher, q: Q.Query, window: int, collapse: bool, kwargs: dict[str, Any], budget: Budget
) -> tuple[Any, list[tuple[float, dict[str, Any]]], int]:
    """The first ``window`` hits, one per image URL when collapsing.

    Collapsing is done over a bounded, growing top-N rather than with Whoosh's collapse
    collector, which must score every match (and cannot count them, in 2.7): the top-N
    search keeps Whoosh's block-skipping, which is what keeps common words fast."""
    fetch = window * COLLAPSE_OVERSAMPLE if collapse else window
    key = _image_key(searcher) if collapse else None
    while True:
        inner = _run(searcher, q, budget, limit=fetch, **kwargs)
        top: list[tuple[float, dict[str, Any]]] = []
        seen: set[Any] = set()
        for hit in inner:
            if _take(searcher, top, seen, hit.score, hit.docnum, key) >= window:
                break
        if len(top) >= window or inner.scored_length() < fetch:
            return inner, top, fetch
        fetch *= COLLAPSE_OVERSAMPLE


def _collect_fast(
    searcher: Searcher, evaluation: fastsearch.Evaluation, window: int, collapse: bool
) -> list[tuple[float, dict[str, Any]]]:
    """The first ``window`` hits of a whole-array evaluation, one per image URL when
    collapsing (records are read only for the ranks looked at)."""
    top: list[tuple[float, dict[str, Any]]] = []
    seen: set[Any] = set()
    key = _image_key(searcher) if collapse else None
    start, fetch = 0, window * COLLAPSE_OVERSAMPLE if collapse else window
    while len(top) < window and start < len(evaluation):
        docnums, scores = evaluation.ranked(start, fetch)
        for docnum, score in zip(docnums.tolist(), scores.tolist(), strict=True):
            if _take(searcher, top, seen, score, docnum, key) >= window:
                break
        start, fetch = fetch, fetch * COLLAPSE_OVERSAMPLE
    return top


def _count(
    searcher: Searcher,
    q: Q.Query,
    inner: Any,
    fetched: int,
    filter_q: Q.Query | None,
    mask: set[int],
    budget: Budget,
) -> tuple[int, bool]:
    """Matching image documents: exact when all were collected or there are few enough to
    count in an unscored pass; otherwise Whoosh's estimate (an exact count walks every
    match, which is what makes common words slow at scale)."""
    collected = inner.scored_length()
    if collected < fetched:
        return collected, True
    estimate = q.estimate_size(searcher.reader())
    if estimate <= EXACT_COUNT_LIMIT:
        counted = _run(searcher, q, budget, limit=None, scored=False, filter=filter_q, mask=mask or None)
        return len(counted), True
    # Whoosh's estimate adds up every expanded term's documents (`exercise~2`): it can
    # exceed the number of image documents, which no result set can.
    return min(max(estimate, collected), searcher.doc_count() - len(mask)), False


def _distinct_images(searcher: Searcher, docnums: Any) -> int:
    """Hits left after collapsing: distinct image URLs among ``docnums``."""
    ids = np.asarray(sorted(docnums) if not isinstance(docnums, np.ndarray) else docnums, dtype=np.int64)
    try:
        return fastsearch.distinct_count(searcher, ids, "image_url")
    except fastsearch.Unsupported:
        # What collapsing itself compares: the image URL, else the document (the
        # document ids `url#n` counted every document, not every image).
        key = _image_key(searcher)
        return len({key(d) for d in ids.tolist()})


def _evaluate(
    searcher: Searcher,
    q: Q.Query,
    tiers: list[list[tuple[str, str, int]]] | None,
    filter_q: Q.Query | None,
    exclude: np.ndarray,
    sort_spec: Any,
) -> tuple[fastsearch.Evaluation | None, list[Any]]:
    """The NumPy evaluation of ``q`` when it can rank it (relevance order, a supported
    shape), else None: Whoosh's searcher then runs it."""
    if sort_spec:
        return None, []
    try:
        return fastsearch.evaluate(searcher, q, filter_q, exclude=exclude, tiers=tiers), []
    except fastsearch.Unsupported:
        return None, []


def _as_search_errors(fn: Callable[..., Results]) -> Callable[..., Results]:
    """Budget overruns and cancellations raised anywhere inside a search, as the search
    errors its callers handle."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Results:
        try:
            return fn(*args, **kwargs)
        except BudgetExceeded as exc:
            raise QueryError(str(exc)) from None
        except Cancelled as exc:
            raise SearchCancelled(str(exc)) from None

    return wrapper


@_as_search_errors
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
    if limit < 1:
        raise QueryError("--limit must be at least 1")
    if page < 1:
        raise QueryError("--page must be at least 1")
    if sort not in SORTS:
        raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    unknown = [f for f in facets if f not in FACETS]
    if unknown:
        raise QueryError(f"unknown facet {unknown[0]!r}; use any of {', '.join(FACETS)}")
    budget.check()  # a search queued behind others may already be unwanted
    start = time.perf_counter()
    searcher = _searcher(index_dir)
    key = (
        searcher._pages_serial,
        query,
        limit,
        page,
        sort,
        tuple(facets),
        tuple(sorted((filters or {}).items())),
        since,
        until,
        collapse,
        marks,
        exact,
    )
    with _RESULTS_LOCK:
        cached = _RESULTS.get(key)
        if cached is not None:
            _RESULTS.move_to_end(key)
    if cached is not None:
        return replace(cached, hits=[dict(h) for h in cached.hits], elapsed_ms=(time.perf_counter() - start) * 1000)
    reader = searcher.reader()
    plain = parse_query(searcher.schema, query)
    q = expand_multiterms(plain, reader)
    tolerance = Tolerance()
    # Page documents hold a page's state (front matter, file facts), never a hit, whatever
    # the query's shape (`*:*`, `-word`, `url:*`). Masked rather than filtered: there are
    # far fewer pages than images, and Whoosh builds a set of its filter on each search.
    page_docs, page_set = _page_docs(searcher)
    restrict: list[Q.Query] = []
    for name, value in (filters or {}).items():
        if name in EXACT_FIELDS and value:
            restrict.append(Q.Term(name, value.lower()))
    low, high = _parse_day(since, "since"), _parse_day(until, "until", end=True)
    if low or high:
        restrict.append(Q.DateRange("date", low, high))
    kwargs: dict[str, Any] = {"mask": page_set} if page_set else {}
    if restrict:
        kwargs["filter"] = Q.And(restrict) if len(restrict) > 1 else restrict[0]
    sort_spec = SORTS[sort]
    if sort_spec:
        kwargs["sortedby"] = sorting.FieldFacet(sort_spec[0], reverse=sort_spec[1])
    if facets:
        kwargs["groupedby"] = {name: sorting.FieldFacet(name, maptype=sorting.Count) for name in facets}
    window = page * limit
    evaluation, top = _evaluate(searcher, q, None, kwargs.get("filter"), page_docs, sort_spec)
    if evaluation is not None:
        top = _collect_fast(searcher, evaluation, window, collapse)
    # Typo tolerance and word starts widen the search only when the words as typed do
    # not fill the page asked for (Typesense's typo_tokens_threshold, in effect): their
    # results rank below every exact one anyway, so the page is the same, and a common
    # word does not pay for fifty variants it cannot use.
    if not exact and "text" in searcher.schema and (evaluation is None or len(top) < window):
        tolerant, tolerance = tolerate(plain, reader, searcher.schema["text"].analyzer, query)
        if tolerance.groups:
            q = expand_multiterms(tolerant, reader)
            evaluation, top = _evaluate(searcher, q, tolerance.groups, kwargs.get("filter"), page_docs, sort_spec)
            if evaluation is not None:
                top = _collect_fast(searcher, evaluation, window, collapse)
    if evaluation is not None:
        total, total_exact = len(evaluation), True
        if collapse and total:
            total = _distinct_images(searcher, evaluation.docnums)
        raw_facets = {name: fastsearch.facet_counts(searcher, evaluation, name) for name in facets}
    else:
        with budget.slow():
            inner, top, fetched = _collect(searcher, q, window, collapse, kwargs, budget)
            total, total_exact = _count(searcher, q, inner, fetched, kwargs.get("filter"), page_set, budget)
            if collapse and total_exact and total:
                matched = _run(
                    searcher, q, budget, limit=None, scored=False, filter=kwargs.get("filter"), mask=page_set or None
                )
                total = _distinct_images(searcher, matched.docs())
        raw_facets = {name: inner.groups(name) for name in facets}
    marked = _highlighter(searcher, q, marks) if marks else None
    hits = []
    for score, record in top[(page - 1) * limit : window]:
        # A sorted search's "score" is Whoosh's sort key (a timestamp, a domain's bytes):
        # no relevance was computed, so none is reported.
        record["score"] = None if sort_spec else round(float(score or 0.0), 4)
        record["uses"] = _uses(searcher, record.get("image_url"))
        if marked:
            record["headline_marked"] = marked(record.get("headline") or "")
        hits.append(record)
    facet_counts = {}
    for name, groups in raw_facets.items():
        ordered = sorted(((k, v) for k, v in groups.items() if k), key=lambda kv: (-kv[1], str(kv[0])))
        facet_counts[name] = dict(ordered)
    suggestion = None
    if not hits:
        budget.check()
        try:
            corrected = searcher.correct_query(plain, query)
        except Exception:  # noqa: BLE001 - a suggestion is best effort (Whoosh fails on e.g. `00:00`)
            corrected = None
        if corrected is not None and corrected.query != plain:
            suggestion = corrected.string
    results = Results(
        query=query,
        total=total,
        hits=hits,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        facets=facet_counts,
        page=page,
        limit=limit,
        parsed=str(q),
        suggestion=suggestion,
        total_exact=total_exact,
        corrections=_shown_corrections(searcher, tolerance.corrections, hits) if hits else {},
    )
    with _RESULTS_LOCK:
        _RESULTS[key] = replace(results, hits=[dict(h) for h in hits])
        if len(_RESULTS) > RESULT_CACHE_SIZE:
            _RESULTS.popitem(last=False)
    return results
