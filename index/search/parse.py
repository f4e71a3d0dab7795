"""The query language: what a person types, and the search's options, read into Whoosh
queries. The first step of :func:`index.search.run.search`; no searcher needed, only the
schema (the lexicon work, expansions and typo tolerance, is :mod:`index.search.budget`).

Whoosh's ``MultifieldParser`` does the reading, configured by plugins (field aliases,
``-word``, ``word~``, ``>``/``<``, dates, and :class:`PlainWords`: what cannot be a word
is dropped, stopwords are never required). Around it, what the parser gets wrong or
drops without a word: unbalanced quotes and brackets, brackets nested too deep and
reversed ranges are errors, relational dates are read here, ``*:*`` beside other
clauses means those clauses, and each default-field word is searched in the combined
``text`` field. Queries are read in NFC (index.model.schema.nfc), as the text is indexed.

>>> from index.model.schema import make_schema
>>> print(parse_query(make_schema(), "yoga -chair site:YouTube"))
(text:yoga AND NOT text:chair AND site:youtube)
>>> print(parse_query(make_schema(), "exercises for seniors 🧘 &"))
(text:exercis AND text:senior)
>>> print(parse_query(make_schema(), "for the"))
(words:for AND words:the)
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whoosh import fields, sorting
from whoosh import query as Q
from whoosh.qparser import (
    FieldAliasPlugin,
    FuzzyTermPlugin,
    GtLtPlugin,
    MultifieldParser,
    OperatorsPlugin,
    PhrasePlugin,
    Plugin,
    syntax,
)
from whoosh.qparser.dateparse import DateParserPlugin, DateRangeNode, English
from whoosh.qparser.syntax import PrefixOperator, RangeNode

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.api import FACETS, SORTS, QueryError
from index.model.documents import TEXT_SECTIONS
from index.model.schema import EXACT_FIELDS, SURFACE_FIELD, nfc

__all__ = [
    "DEFAULT_FIELDS",
    "ParsedSearch",
    "PlainWords",
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
    parser.add_plugin(PlainWords(schema))
    return parser, errors


class PlainWords(Plugin):
    """Plain words (no field named) as the text field reads them, before they are
    looked up in every default field (Whoosh's multifield filter, priority 110).

    A word the text analyzer drops would otherwise be required from the one default
    field that keeps it (the tag list: `exercises for seniors` required the tag
    `for`). So: what holds no letter or digit (`&`, `—`, an emoji) is dropped; a
    stopword is dropped when the query has a word that is not one, and otherwise
    searched where stopwords are kept (``words``, as written). Ranges are checked here
    too, while their ends are still as typed: a reversed one is an error, not (as
    Whoosh's date parser makes it) a wider range."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def filters(self, parser: Any) -> list[tuple[Any, int]]:
        return [(self.do_words, 105)]

    def do_words(self, parser: Any, group: Any) -> Any:
        found: list[_Word] = []
        self._collect(group, found)
        content = any(w.kind == "word" and not w.negated for w in found)
        keep_stops = not content and SURFACE_FIELD in self.schema
        drop: list[tuple[Any, int]] = []
        for w in found:
            if w.kind == "word" and w.pieces:
                w.parent[w.index] = syntax.AndGroup([_piece(w.node, piece) for piece in w.pieces])
            elif w.kind == "stop" and keep_stops:
                w.node.set_fieldname(SURFACE_FIELD)
            elif w.kind != "word":
                # The word and a NOT before it, which would otherwise negate the next word.
                drop += [(w.parent, w.index)] + ([(w.parent, w.negated)] if w.negated is not None else [])
        # From the end, so that the positions of the others stay right.
        for parent, i in sorted(drop, key=lambda d: (id(d[0]), d[1]), reverse=True):
            del parent[i]
        return group

    def _collect(self, group: Any, found: list[_Word]) -> None:
        text_field = self.schema["text"] if "text" in self.schema else self.schema[DEFAULT_FIELDS[0]]
        surface = self.schema[SURFACE_FIELD] if SURFACE_FIELD in self.schema else None  # noqa: SIM401 (no .get)
        negation: int | None = None
        for i, node in enumerate(group):
            if isinstance(node, syntax.GroupNode):
                self._collect(node, found)
            elif isinstance(node, RangeNode):
                group[i] = _read_range(self.schema, node)
            elif type(node) is syntax.WordNode and _is_date_field(self.schema, node.fieldname):
                group[i] = _read_date(node)
            elif getattr(node, "fieldname", 0) is None and (type(node) is syntax.WordNode or _is_phrase(node)):
                stems = list(text_field.process_text(node.text, mode="query"))
                kind = "word" if stems else "stop" if any(ch.isalnum() for ch in node.text) else "symbol"
                pieces: list[str] = []
                if len(stems) > 1 and surface is not None and not _is_phrase(node):
                    # `chair-exercises`, `helpguide.org`: each piece a word of its own, so
                    # that each is looked up (and forgiven) in the combined field.
                    pieces = list(surface.process_text(node.text, mode="query"))
                found.append(_Word(group, i, node, kind, negation, pieces if len(pieces) > 1 else []))
            if not (isinstance(node, syntax.MarkerNode) and node.is_ws()):
                negation = i if isinstance(node, PrefixOperator) and node.grouptype is syntax.NotGroup else None


@dataclass
class _Word:
    """A plain word or phrase of a query at the parser's stage of :class:`PlainWords`."""

    parent: Any  # the syntax group holding it
    index: int
    node: Any
    kind: str  # "word", "stop" (only stopwords) or "symbol" (no letter or digit)
    negated: int | None  # the index of the NOT just before it
    pieces: list[str]  # a word the tokenizer splits: its pieces


def _is_phrase(node: Any) -> bool:
    return isinstance(node, PhrasePlugin.PhraseNode)


def _piece(node: Any, text: str) -> Any:
    piece = copy.copy(node)
    piece.text = text
    return piece


def _is_date_field(schema: Any, fieldname: str | None) -> bool:
    return fieldname in schema and isinstance(schema[fieldname], fields.DATETIME)


# Whoosh's English date grammar reads `2020-06-01` as the year 2020 (it stops at the
# first hyphen), so ISO dates are read here: `date:2020-06`, `date:[2020-01-15 to 2020-03]`.
_ISO_DATE = re.compile(r"[0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2}(?:T[0-9:.]+)?)?)?")


def _date_node(node: Any, start: dt.datetime | None, end: dt.datetime | None) -> Any:
    new = DateRangeNode(node.fieldname, start, end)
    new.startchar, new.endchar = node.startchar, node.endchar
    return new


def _read_date(node: Any) -> Any:
    if not _ISO_DATE.fullmatch(node.text):
        return node
    return _date_node(node, *_period(node.text))


def _read_range(schema: Any, node: Any) -> Any:
    """A range with its ISO dates read, or a :class:`QueryError` if it ends before it
    starts (swapping the ends would guess which one was mistyped; Whoosh's date parser
    widened the range to both periods instead)."""
    fieldname, start, end = node.fieldname, node.start, node.end
    if not _is_date_field(schema, fieldname):
        if start and end and start > end:
            raise QueryError(f"range {fieldname}:[{start} to {end}] ends before it starts")
        return node
    iso = [not value or _ISO_DATE.fullmatch(value) for value in (start, end)]
    if all(iso):
        low = _period(start)[0] if start else None
        high = _period(end)[1] if end else None
        if low and high and low > high:
            raise QueryError(f"range {fieldname}:[{start} to {end}] ends before it starts")
        return _date_node(node, low, high)
    if start and end:
        dates, now = _DATES.get_parser(), dt.datetime.now()
        low, high = dates.date_from(start, now), dates.date_from(end, now)
        if low is not None and high is not None and _floor(low) > _floor(high):
            raise QueryError(f"range {fieldname}:[{start} to {end}] ends before it starts")
    return node


def _floor(value: Any) -> dt.datetime:
    return value.floor() if hasattr(value, "floor") else value


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
    text, date_filters = _relative_dates(_STRAY_OPERATOR.sub(" ", nfc(text)))
    if not text.strip():
        if date_filters:
            return Q.And(date_filters) if len(date_filters) > 1 else date_filters[0]
        raise QueryError("empty query")
    _check_syntax(text)
    parser, errors = _parser(schema)
    try:
        q = _everything_beside(parser.parse(text, normalize=False)).normalize()
    except QueryError:
        raise
    except RecursionError:  # _check_syntax bounds brackets; this is the last line
        raise QueryError("query nested too deeply") from None
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
        if not any(ch.isalnum() for ch in text):
            raise QueryError("query has no word to search for (symbols and marks are ignored)")
        raise QueryError("query matches nothing it can parse")
    if "text" in schema:  # an index built before the combined field searches the old way
        q = combine_fields(q, query_boosts(schema)["headline"])
    return _unpositioned_phrases(q, schema)


def _everything_beside(q: Q.Query) -> Q.Query:
    """``*:*`` in an AND beside other clauses adds nothing to them (beside only negated
    ones, a query of those is everything but them already); Whoosh's normalization
    instead lets it swallow them all (`site:YouTube *:*` was everything, so was
    `*:* -pin`)."""
    if isinstance(q, Q.And):
        subs = [_everything_beside(sub) for sub in q.subqueries]
        rest = [sub for sub in subs if not _is_everything(sub)]
        if rest:  # (only negated ones: a query of those is everything but them already)
            subs = rest
        new = copy.copy(q)
        new.subqueries = subs
        return new
    if q.is_leaf():
        return q
    return q.apply(_everything_beside)


def _is_everything(q: Q.Query) -> bool:
    if isinstance(q, Q.Or):
        return any(_is_everything(sub) for sub in q.subqueries)
    if isinstance(q, Q.And):
        return bool(q.subqueries) and all(_is_everything(sub) for sub in q.subqueries)
    return isinstance(q, Q.Every) and q.fieldname in (None, "*")


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
# Nobody nests deeper than this; Whoosh's parser and the query tree are recursive.
MAX_NESTING = 20


def _check_syntax(text: str) -> None:
    """Whoosh's parser silently drops what it cannot parse; people deserve to know."""
    outside = re.sub(r'"[^"]*"', '""', text)
    if outside.count('"') % 2:
        raise QueryError("unclosed quote in query")
    for open_, close in _UNBALANCED:
        if outside.count(open_) != outside.count(close):
            raise QueryError(f"unbalanced '{open_}{close}' in query")
    depth = deepest = 0
    for ch in outside:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise QueryError(f"brackets nested {deepest} deep in query (at most {MAX_NESTING})")
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
