"""Collecting a search's hits: the second step of :func:`index.search.run.search`.

The first hits of the page asked for, ranked, one per image URL when collapsing, with
how many there are and the facet counts. The NumPy path (:mod:`index.fast.arrays`) when
it can rank the query; Whoosh's searcher otherwise (sorted searches, phrases), within
the query's budget. Page documents are never hits.

One budget covers it all: the expansions, both evaluations when typo tolerance widens
the query, the facets, collapsing and reading the records of a deep page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from whoosh import query as Q
from whoosh import sorting
from whoosh.searching import Searcher

from index import _whoosh
from index.fast import arrays as fastsearch
from index.search.budget import UNBOUNDED, Budget, BudgetExceeded, bounded_collector, bounded_query
from index.search.expand import expand_multiterms
from index.search.parse import ParsedSearch
from index.search.typos import Tolerance, tolerate

__all__ = ["Found", "find", "page_docs"]

# Above this estimated number of matches, the total is reported as "about N".
EXACT_COUNT_LIMIT = 5_000
# Collapsing looks at this many times the hits it needs, then more if repeats ate them.
COLLAPSE_OVERSAMPLE = 4
# The share of a search's time left that counting distinct images may take.
COUNT_SHARE = 0.5


@dataclass
class Found:
    """A search's hits before decoration, and how it found them."""

    q: Q.Query  # what ran: expanded, and widened if typo tolerance was needed
    top: list[tuple[float, dict[str, Any]]]  # the first `window` hits, scores and records
    total: int
    total_exact: bool
    facets: dict[str, Any]  # facet name → {value: count}, unordered
    tolerance: Tolerance
    # Not what an unbounded search would answer (the budget cut an exact count short):
    # never remembered as the query's results.
    provisional: bool = False


def find(
    searcher: Searcher,
    parsed: ParsedSearch,
    text: str,
    *,
    window: int,
    collapse: bool,
    exact: bool,
    facets: tuple[str, ...] | list[str],
    budget: Budget,
) -> Found:
    """The first ``window`` hits of the parsed query (``text`` as typed, for typo
    tolerance), how many there are, and the facet counts."""
    reader = searcher.reader()
    q = expand_multiterms(parsed.words, reader, budget=budget)
    tolerance = Tolerance()
    # Page documents hold a page's state (front matter, file facts), never a hit, whatever
    # the query's shape (`*:*`, `-word`, `url:*`). Masked rather than filtered: there are
    # far fewer pages than images, and Whoosh builds a set of its filter on each search.
    pages, page_set = page_docs(searcher)
    evaluation, top = _evaluate(searcher, q, None, parsed, pages, window, collapse, budget)
    # Typo tolerance and word starts widen the search only when the words as typed do
    # not fill the page asked for (Typesense's typo_tokens_threshold, in effect): their
    # results rank below every exact one anyway, so the page is the same, and a common
    # word does not pay for fifty variants it cannot use.
    if not exact and "text" in searcher.schema and (evaluation is None or len(top) < window):
        budget.check()
        tolerant, tolerance = tolerate(parsed.words, reader, searcher.schema["text"].analyzer, text, budget=budget)
        if tolerance.groups:
            q = expand_multiterms(tolerant, reader, budget=budget)
            evaluation, top = _evaluate(searcher, q, tolerance.groups, parsed, pages, window, collapse, budget)
    if evaluation is not None:
        total, exact_total = len(evaluation), True
        if collapse and total:
            budget.check()
            try:
                # Counting distinct images may need a per-index build (each segment's
                # image ordinals): given half the time left, it is resumed by the next
                # search if it does not finish, and this one answers "about N".
                total = _distinct_images(searcher, evaluation.docnums, budget.part(COUNT_SHARE))
            except BudgetExceeded:
                budget.check()  # the search's own time: stopped if it is spent too
                exact_total = False  # documents, not images: an upper bound
        counts = {
            name: fastsearch.facet_counts(searcher, evaluation, name, budget) for name in budget.walk(facets, every=1)
        }
        return Found(q, top, total, exact_total, counts, tolerance, provisional=not exact_total)
    top, total, total_exact, counts = _by_whoosh(searcher, q, parsed, window, collapse, facets, page_set, budget)
    return Found(q, top, total, total_exact, counts, tolerance)


def _by_whoosh(
    searcher: Searcher,
    q: Q.Query,
    parsed: ParsedSearch,
    window: int,
    collapse: bool,
    facets: tuple[str, ...] | list[str],
    page_set: set[int],
    budget: Budget,
) -> tuple[list[tuple[float, dict[str, Any]]], int, bool, dict[str, Any]]:
    """What :func:`find` returns, from Whoosh's searcher, one search at a time in the
    budget's slow lane."""
    kwargs: dict[str, Any] = {"mask": page_set} if page_set else {}
    if parsed.filter is not None:
        kwargs["filter"] = parsed.filter
    if parsed.sortedby is not None:
        kwargs["sortedby"] = parsed.sortedby
    if facets:
        kwargs["groupedby"] = {name: sorting.FieldFacet(name, maptype=sorting.Count) for name in facets}
    q = bounded_query(q, budget)
    with budget.slow():
        inner, top, fetched = _collect(searcher, q, window, collapse, kwargs, budget)
        total, total_exact = _count(searcher, q, inner, fetched, parsed.filter, page_set, budget)
        if collapse and total_exact and total:
            matched = _run(searcher, q, budget, limit=None, scored=False, filter=parsed.filter, mask=page_set or None)
            total = _distinct_images(searcher, matched.docs(), budget)
        elif collapse and not total_exact:
            # The estimate counts documents; collapsed hits are images, and no query
            # finds more than the index holds: "about N" stays an upper bound.
            total = max(len(top), min(total, _images_in_index(searcher, page_set)))
    return top, total, total_exact, {name: inner.groups(name) for name in facets}


def _images_in_index(searcher: Searcher, page_set: set[int]) -> int:
    """Distinct images of the whole index (live documents that are not page documents),
    worked out once per searcher."""

    def build() -> int:
        reader = searcher.reader()
        live = np.fromiter((d for d in reader.all_doc_ids() if d not in page_set), dtype=np.int64)
        return _distinct_images(searcher, live)

    return _whoosh.per_searcher(searcher, "images_in_index", build)


def page_docs(searcher: Searcher) -> tuple[np.ndarray, set[int]]:
    """The page documents, as sorted numbers for the fast path and as a set for
    Whoosh's ``mask=``; worked out once per searcher."""

    def build() -> tuple[np.ndarray, set[int]]:
        try:
            docs = fastsearch.live_docnums(searcher, "kind", "page")
        except fastsearch.Unsupported:
            docs = np.array(sorted(Q.Term("kind", "page").docs(searcher)), dtype=np.int64)
        return docs, set(docs.tolist())

    return _whoosh.per_searcher(searcher, "page_docs", build)


def _evaluate(
    searcher: Searcher,
    q: Q.Query,
    tiers: list[list[tuple[str, str, int]]] | None,
    parsed: ParsedSearch,
    exclude: np.ndarray,
    window: int,
    collapse: bool,
    budget: Budget,
) -> tuple[fastsearch.Evaluation | None, list[tuple[float, dict[str, Any]]]]:
    """The NumPy evaluation of ``q`` and its first ``window`` hits, one per image URL
    when collapsing (records are read only for the ranks looked at); None and no hits
    when it cannot rank ``q`` (sorted, or a shape it does not support): Whoosh's
    searcher then runs it."""
    if parsed.sortedby is not None:
        return None, []
    try:
        evaluation = fastsearch.evaluate(searcher, q, parsed.filter, exclude=exclude, tiers=tiers, budget=budget)
    except fastsearch.Unsupported:
        return None, []
    top: list[tuple[float, dict[str, Any]]] = []
    seen: set[Any] = set()
    key = _image_key(searcher) if collapse else None
    start, fetch = 0, window * COLLAPSE_OVERSAMPLE if collapse else window
    while len(top) < window and start < len(evaluation):
        docnums, scores = evaluation.ranked(start, fetch)
        # A deep page, or collapsing over a much-shared image, reads many records.
        for docnum, score in budget.walk(zip(docnums.tolist(), scores.tolist(), strict=True)):
            if _take(searcher, top, seen, score, docnum, key) >= window:
                break
        start, fetch = fetch, fetch * COLLAPSE_OVERSAMPLE
    return evaluation, top


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
        for hit in budget.walk(inner):
            if _take(searcher, top, seen, hit.score, hit.docnum, key) >= window:
                break
        if len(top) >= window or inner.scored_length() < fetch:
            return inner, top, fetch
        fetch *= COLLAPSE_OVERSAMPLE


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


def _distinct_images(searcher: Searcher, docnums: Any, budget: Budget = UNBOUNDED) -> int:
    """Hits left after collapsing: distinct image URLs among ``docnums``, within ``budget``."""
    ids = np.asarray(sorted(docnums) if not isinstance(docnums, np.ndarray) else docnums, dtype=np.int64)
    try:
        return fastsearch.distinct_count(searcher, ids, "image_url", budget)
    except fastsearch.Unsupported:
        # What collapsing itself compares: the image URL, else the document (the
        # document ids `url#n` counted every document, not every image).
        key = _image_key(searcher)
        return len({key(d) for d in budget.walk(ids.tolist(), every=4096)})
