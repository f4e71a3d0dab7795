"""The query language: what a person types, and the search's options, read into Whoosh
queries. The first step of :func:`index.search.run.search`; no searcher needed, only the
schema (the lexicon work, expansions and typo tolerance, is :mod:`index.search.budget`).

Whoosh's ``MultifieldParser`` does the reading, configured by plugins (field aliases,
``-word``, ``word~``, ``>``/``<``, dates). Around it, what the parser gets wrong or drops
without a word: unbalanced quotes and brackets are errors, relational dates are read
here, and each default-field word is searched in the combined ``text`` field.

>>> from index.model.schema import make_schema
>>> print(parse_query(make_schema(), "yoga -chair site:YouTube"))
(text:yoga AND NOT text:chair AND site:youtube)
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whoosh import query as Q
from whoosh import sorting
from whoosh.qparser import (
    FieldAliasPlugin,
    FuzzyTermPlugin,
    GtLtPlugin,
    MultifieldParser,
    OperatorsPlugin,
)
from whoosh.qparser.dateparse import DateParserPlugin, English

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.api import FACETS, SORTS, QueryError
from index.model.documents import TEXT_SECTIONS
from index.model.schema import EXACT_FIELDS

__all__ = [
    "DEFAULT_FIELDS",
    "ParsedSearch",
    "check_options",
    "combine_fields",
    "make_parser",
    "parse",
    "parse_query",
    "query_boosts",
]

DEFAULT_FIELDS = ("headline", "title", "caption", "alt", "tags")


@dataclass(frozen=True)
class ParsedSearch:
    """A search's query and options, read."""

    words: Q.Query  # the query as parsed, before any expansion against the index
    filter: Q.Query | None  # exact-field filters and the date bounds
    sortedby: sorting.FieldFacet | None  # None: by relevance


def check_options(*, limit: int, page: int, sort: str, facets: Sequence[str]) -> None:
    """The options that need no index, refused before one is opened."""
    if limit < 1:
        raise QueryError("--limit must be at least 1")
    if page < 1:
        raise QueryError("--page must be at least 1")
    if sort not in SORTS:
        raise QueryError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    unknown = [f for f in facets if f not in FACETS]
    if unknown:
        raise QueryError(f"unknown facet {unknown[0]!r}; use any of {', '.join(FACETS)}")


def parse(
    schema: Any,
    text: str,
    *,
    sort: str = "relevance",
    filters: Mapping[str, str] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> ParsedSearch:
    """``text`` and the options (already checked by :func:`check_options`) as queries.

    ``filters`` keeps hits whose exact field has the value (empty values and fields
    that are not exact are ignored); ``since``/``until`` bound the page date, whole
    days inclusive."""
    words = parse_query(schema, text)
    restrict: list[Q.Query] = [
        Q.Term(name, value.lower()) for name, value in (filters or {}).items() if name in EXACT_FIELDS and value
    ]
    low, high = _parse_day(since, "since"), _parse_day(until, "until", end=True)
    if low or high:
        restrict.append(Q.DateRange("date", low, high))
    spec = SORTS[sort]
    return ParsedSearch(
        words=words,
        filter=(Q.And(restrict) if len(restrict) > 1 else restrict[0]) if restrict else None,
        sortedby=sorting.FieldFacet(spec[0], reverse=spec[1]) if spec else None,
    )


def query_boosts(schema: Any) -> dict[str, float]:
    """What the parser multiplies each default field's words by: the field's weight
    (index.model.documents.TEXT_SECTIONS) over the boost its postings already carry from the
    index (the schema's ``field_boost``), so the weight counts once, not twice."""
    return {
        name: TEXT_SECTIONS[name] / (getattr(schema[name].format, "field_boost", 1.0) or 1.0) for name in DEFAULT_FIELDS
    }


# Whoosh's English date grammar: its construction compiles hundreds of regular expressions
# (≈2 ms, a fifth of a warm search at 1M), and parsing with it keeps no state (the base
# date is read at each parse), so one serves every parser.
_DATES = English()
# A parser per thread and schema: building one costs about as much as the grammar.
_PARSERS = threading.local()


def make_parser(schema: Any) -> tuple[MultifieldParser, list[str]]:
    """The parser, and the list its date plugin reports unreadable dates to."""
    errors: list[str] = []
    parser = MultifieldParser(list(DEFAULT_FIELDS), schema, fieldboosts=query_boosts(schema))
    parser.add_plugin(FieldAliasPlugin({"tags": ["tag"], "page_url": ["url"]}))
    # `-word` as a second spelling of `NOT word`, only at the start of a term, so that
    # `tag:page-tag` stays one term. (Whoosh's PlusMinusPlugin would turn AND into OR.)
    parser.replace_plugin(OperatorsPlugin(Not=r"(^|(?<=(\s|[()])))(NOT(?=\s)|-(?=[^\s-]))"))
    parser.add_plugin(FuzzyTermPlugin())
    parser.add_plugin(GtLtPlugin())
    parser.add_plugin(DateParserPlugin(dateparser=_DATES, callback=errors.append, free=False))
    return parser, errors


def _parser(schema: Any) -> tuple[MultifieldParser, list[str]]:
    """This thread's parser for ``schema`` (a refreshed searcher's schema is a new one),
    with its error list emptied."""
    cached = getattr(_PARSERS, "cached", None)
    if cached is None or cached[0] is not schema:
        cached = _PARSERS.cached = (schema, *make_parser(schema))
    cached[2].clear()
    return cached[1], cached[2]


def parse_query(schema: Any, text: str) -> Q.Query:
    """The query a person typed, as a Whoosh query (:class:`QueryError` if it cannot be
    read as they meant it)."""
    text, date_filters = _relative_dates(_STRAY_OPERATOR.sub(" ", text))
    if not text.strip():
        if date_filters:
            return Q.And(date_filters) if len(date_filters) > 1 else date_filters[0]
        raise QueryError("empty query")
    _check_syntax(text)
    parser, errors = _parser(schema)
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
    return _unpositioned_phrases(q, schema)


def _unpositioned_phrases(q: Q.Query, schema: Any) -> Q.Query:
    """A phrase in a field that keeps no positions (the tag list: `"0,0"` is two tags
    there) as all of its words: Whoosh refuses to run it (a traceback, found by
    tests/test_search_untrusted_input.py's fuzzer)."""
    if isinstance(q, Q.Phrase):
        fieldname = q.fieldname
        if fieldname in schema and not schema[fieldname].format.supports("positions"):
            return Q.And([Q.Term(fieldname, w) for w in q.words], boost=q.boost)
        return q
    if q.is_leaf():
        return q
    return q.apply(lambda sub: _unpositioned_phrases(sub, schema))


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


_EXPANDABLE = (Q.Term, Q.Prefix, Q.Wildcard, Q.FuzzyTerm)


def combine_fields(q: Q.Query, head_boost: float = 1.0) -> Q.Query:
    """Turn each default-field word (the parser's run of the same term in all five
    default fields, in ``DEFAULT_FIELDS`` order) into that term in the combined ``text``
    field: same matches, far less work per document (see index.model.schema.BoostedText).
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
