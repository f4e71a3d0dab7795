"""The Whoosh schema: one document per image occurrence, one per page (``kind``).

Only what a query matches, filters, sorts or facets on is indexed; everything a hit
prints lives in one stored JSON field (``record``), which keeps the writer lean: the
writer is the slowest stage of the whole crawl.
"""

from __future__ import annotations

import weakref
from typing import Any

from whoosh import fields
from whoosh.analysis import (
    CharsetFilter,
    IDTokenizer,
    LowercaseFilter,
    RegexTokenizer,
    StemFilter,
    StopFilter,
    Token,
)
from whoosh.analysis.analyzers import Analyzer
from whoosh.support.charset import accent_map
from whoosh.system import pack_uint

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.model.documents import TEXT_SECTIONS

__all__ = ["EXACT_FIELDS", "TEXT_SECTIONS", "BoostedText", "CachedAnalyzer", "make_schema"]

EXACT_FIELDS = ("domain", "site", "image_host", "author", "board")


# Per analyzer object, outside it: the analyzer is pickled into the index's schema.
_CACHES: weakref.WeakKeyDictionary[CachedAnalyzer, dict[tuple[str, bool, bool], tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)
_SIZE = 50_000


class CachedAnalyzer(Analyzer):
    """Wraps an analyzer and remembers the tokens of each string it indexed.

    Every image document repeats its page's title (88 times for the seed page) and
    captions repeat across pages; the writer is the slowest stage of a crawl, and this
    took about a tenth off it. Only plain indexing calls are cached (no character
    offsets); queries and highlighting go straight to the wrapped analyzer, and the
    tokens are the same either way (tests/test_writing.py)."""

    def __init__(self, inner):
        self.inner = inner

    def __getstate__(self):
        return {"inner": self.inner}

    def __setstate__(self, state):
        self.inner = state["inner"]

    def __eq__(self, other):
        return isinstance(other, CachedAnalyzer) and self.inner == other.inner

    __hash__ = object.__hash__

    def __repr__(self):
        return f"CachedAnalyzer({self.inner!r})"

    def __call__(
        self,
        value,
        positions=False,
        chars=False,
        keeporiginal=False,
        removestops=True,
        start_pos=0,
        start_char=0,
        tokenize=True,
        mode="",
        **kwargs,
    ):
        simple = mode == "index" and not chars and not keeporiginal and not start_pos and not start_char and tokenize
        if not simple or set(kwargs) - {"boosts"}:
            yield from self.inner(
                value,
                positions=positions,
                chars=chars,
                keeporiginal=keeporiginal,
                removestops=removestops,
                start_pos=start_pos,
                start_char=start_char,
                tokenize=tokenize,
                mode=mode,
                **kwargs,
            )
            return
        cache = _CACHES.get(self)
        if cache is None:
            cache = _CACHES[self] = {}
        key = (value, positions, removestops)
        toks = cache.get(key)
        if toks is None:
            toks = tuple(
                (t.text, t.pos if positions else None, t.boost, t.stopped)
                for t in self.inner(value, positions=positions, removestops=removestops, mode=mode, **kwargs)
            )
            if len(cache) >= _SIZE:
                cache.clear()
            cache[key] = toks
        t = Token(positions=positions, removestops=removestops, mode=mode, **kwargs)
        for text, pos, boost, stopped in toks:
            t.text = text
            t.boost = boost
            t.stopped = stopped
            if positions:
                t.pos = pos
            yield t


def text_analyzer():
    # Accent folding before stemming, so `Épinglé` and `epingle` meet on one term.
    return CachedAnalyzer(
        RegexTokenizer() | LowercaseFilter() | CharsetFilter(accent_map) | StopFilter() | StemFilter(cachesize=50000)
    )


def exact_analyzer():
    # Exact values, but `site:youtube` should find `YouTube`.
    return IDTokenizer() | LowercaseFilter()


class BoostedText(fields.TEXT):
    """A text field whose value may be ``[(text, weight), ...]`` sections.

    Every plain query word is looked up here instead of in five fields: one posting list
    per word instead of a union of five is what makes search fast (a union has to be
    walked and scored document by document; a single term can skip whole blocks that
    cannot reach the top hits). The per-field boosts survive as term weights, which is
    what BM25 scores as term frequency."""

    def index(self, value, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(value, str):
            yield from super().index(value, **kwargs)
            return
        # The analyzer (CachedAnalyzer) analyses each distinct section string once.
        freqs: dict[str, int] = {}
        weights: dict[str, float] = {}
        for text, weight in value:
            for token in self.analyzer(text, mode="index", removestops=True):
                if token.stopped:
                    continue
                freqs[token.text] = freqs.get(token.text, 0) + 1
                weights[token.text] = weights.get(token.text, 0.0) + weight
        for word, freq in freqs.items():
            yield word.encode("utf-8"), freq, weights[word], pack_uint(freq)


def make_schema() -> fields.Schema:
    text = text_analyzer()
    exact = exact_analyzer()
    return fields.Schema(
        id=fields.ID(unique=True, stored=True),
        kind=fields.ID(stored=True),
        page_url=fields.ID(stored=True),
        image_url=fields.ID(sortable=True),
        headline=fields.TEXT(analyzer=text, field_boost=TEXT_SECTIONS["headline"]),
        title=fields.TEXT(analyzer=text, field_boost=TEXT_SECTIONS["title"]),
        caption=fields.TEXT(analyzer=text),
        alt=fields.TEXT(analyzer=text),
        tags=fields.KEYWORD(commas=True, lowercase=True, scorable=True),
        domain=fields.ID(analyzer=exact, sortable=True),
        site=fields.ID(analyzer=exact, sortable=True),
        image_host=fields.ID(analyzer=exact, sortable=True),
        author=fields.ID(analyzer=exact, sortable=True),
        board=fields.ID(analyzer=exact, sortable=True),
        date=fields.DATETIME(sortable=True),
        # Positions are not kept: phrases are matched in the separate fields above.
        text=BoostedText(analyzer=text, phrase=False),
        record=fields.STORED(),
    )
