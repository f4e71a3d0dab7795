"""Search the index: the library behind ``scrapy search`` and ``python -m index search``.

>>> results = search("data/index", "chair yoga", limit=5)   # doctest: +SKIP
>>> [hit["headline"] for hit in results.hits]               # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh import query as Q
from whoosh import sorting
from whoosh.qparser import (
    FieldAliasPlugin,
    FuzzyTermPlugin,
    GtLtPlugin,
    MultifieldParser,
    OperatorsPlugin,
)
from whoosh.qparser.dateparse import DateParserPlugin

from index.schema import EXACT_FIELDS

__all__ = ["DEFAULT_FIELDS", "IndexMissing", "QueryError", "Results", "SearchError", "search"]

DEFAULT_FIELDS = ("headline", "title", "caption", "alt", "tags")
# headline > title > caption, as people expect from a headline-first result list.
FIELD_BOOSTS = {"headline": 3.0, "title": 2.0, "caption": 1.0, "alt": 0.8, "tags": 1.5}
FACETS = ("domain", "site", "board", "author", "image_host")
SORTS = {"relevance": None, "date": ("date", False), "-date": ("date", True), "domain": ("domain", False)}

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


@dataclass
class Results:
    query: str
    total: int
    hits: list[dict[str, Any]]
    elapsed_ms: float
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    page: int = 1
    parsed: str = ""
    suggestion: str | None = None


def _open(index_dir: str | Path) -> whoosh_index.Index:
    path = Path(index_dir)
    if not path.is_dir() or not whoosh_index.exists_in(str(path)):
        raise IndexMissing(
            f"no index at {path}",
            hint=f"create it with: {CRAWL_HINT} -s INDEX_DIR={path}",
        )
    try:
        ix = whoosh_index.open_dir(str(path))
    except Exception as exc:  # noqa: BLE001 - any open failure is one message
        raise IndexMissing(f"cannot open index at {path}: {exc}") from None
    if ix.is_empty():
        raise IndexMissing(f"index at {path} is empty", hint=f"fill it with: {CRAWL_HINT} -s INDEX_DIR={path}")
    return ix


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


def make_parser(schema: Any) -> tuple[MultifieldParser, list[str]]:
    errors: list[str] = []
    parser = MultifieldParser(list(DEFAULT_FIELDS), schema, fieldboosts=FIELD_BOOSTS)
    parser.add_plugin(FieldAliasPlugin({"tags": ["tag"], "page_url": ["url"]}))
    # `-word` as a second spelling of `NOT word`, only at the start of a term, so that
    # `tag:page-tag` stays one term. (Whoosh's PlusMinusPlugin would turn AND into OR.)
    parser.replace_plugin(OperatorsPlugin(Not=r"(^|(?<=(\s|[()])))(NOT(?=\s)|-(?=[^\s-]))"))
    parser.add_plugin(FuzzyTermPlugin())
    parser.add_plugin(GtLtPlugin())
    parser.add_plugin(DateParserPlugin(callback=errors.append, free=False))
    return parser, errors


def parse_query(schema: Any, text: str) -> Q.Query:
    if not text.strip():
        raise QueryError("empty query")
    _check_syntax(text)
    parser, errors = make_parser(schema)
    q = parser.parse(text)
    if errors:
        raise QueryError(f"cannot read date in query: {errors[0]}")
    if q is Q.NullQuery or isinstance(q, type(Q.NullQuery)):
        raise QueryError("query matches nothing it can parse")
    return q


def _hit(hit: Any) -> dict[str, Any]:
    record = json.loads(hit["record"])
    record["score"] = round(float(hit.score or 0.0), 4)
    return record


def search(
    index_dir: str | Path,
    query: str,
    *,
    limit: int = 10,
    page: int = 1,
    sort: str = "relevance",
    facets: tuple[str, ...] | list[str] = (),
    filters: dict[str, str] | None = None,
) -> Results:
    """Run ``query`` against the image documents of the index at ``index_dir``."""
    if limit < 1:
        raise QueryError("--limit must be at least 1")
    if page < 1:
        raise QueryError("--page must be at least 1")
    if sort not in SORTS:
        raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    unknown = [f for f in facets if f not in FACETS]
    if unknown:
        raise QueryError(f"unknown facet {unknown[0]!r}; use any of {', '.join(FACETS)}")
    start = time.perf_counter()
    ix = _open(index_dir)
    q = parse_query(ix.schema, query)
    restrict: list[Q.Query] = [Q.Term("kind", "image")]
    for name, value in (filters or {}).items():
        if name in EXACT_FIELDS and value:
            restrict.append(Q.Term(name, value.lower()))
    filter_q = Q.And(restrict) if len(restrict) > 1 else restrict[0]
    kwargs: dict[str, Any] = {}
    sort_spec = SORTS[sort]
    if sort_spec:
        kwargs["sortedby"] = sorting.FieldFacet(sort_spec[0], reverse=sort_spec[1])
    if facets:
        kwargs["groupedby"] = {name: sorting.FieldFacet(name, maptype=sorting.Count) for name in facets}
    with ix.searcher() as searcher:
        results = searcher.search_page(q, page, pagelen=limit, filter=filter_q, **kwargs)
        hits = [_hit(h) for h in results]
        facet_counts = {}
        for name in facets:
            groups = results.results.groups(name)
            facet_counts[name] = dict(sorted(groups.items(), key=lambda kv: (-kv[1], str(kv[0]))))
        total = len(results)
    return Results(
        query=query,
        total=total,
        hits=hits,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        facets=facet_counts,
        page=page,
        parsed=str(q),
    )
