"""The Whoosh schema: one document per image occurrence, one per page (``kind``).

Only what a query matches, filters, sorts or facets on is indexed; everything a hit
prints lives in one stored JSON field (``record``), which keeps the writer lean: the
writer is the slowest stage of the whole crawl.
"""

from __future__ import annotations

from whoosh import fields
from whoosh.analysis import (
    CharsetFilter,
    IDTokenizer,
    LowercaseFilter,
    RegexTokenizer,
    StemFilter,
    StopFilter,
)
from whoosh.support.charset import accent_map
from whoosh.system import pack_uint

from index.documents import TEXT_SECTIONS

__all__ = ["EXACT_FIELDS", "TEXT_SECTIONS", "BoostedText", "make_schema"]

EXACT_FIELDS = ("domain", "site", "image_host", "author", "board")


def text_analyzer():
    # Accent folding before stemming, so `Épinglé` and `epingle` meet on one term.
    return RegexTokenizer() | LowercaseFilter() | CharsetFilter(accent_map) | StopFilter() | StemFilter(cachesize=50000)


def exact_analyzer():
    # Exact values, but `site:youtube` should find `YouTube`.
    return IDTokenizer() | LowercaseFilter()


# Section text -> its terms, per process (never in the field: the schema is pickled into
# the index). A page's title and tags repeat in every one of its image documents and
# captions repeat across pages: analysing each distinct string once took a third off
# this field's cost to the writer.
_TERMS_CACHE: dict[str, tuple[str, ...]] = {}
_TERMS_CACHE_SIZE = 50_000


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
        cache = _TERMS_CACHE
        freqs: dict[str, int] = {}
        weights: dict[str, float] = {}
        for text, weight in value:
            terms = cache.get(text)
            if terms is None:
                terms = tuple(t.text for t in self.analyzer(text, mode="index", removestops=True) if not t.stopped)
                if len(cache) >= _TERMS_CACHE_SIZE:
                    cache.clear()
                cache[text] = terms
            for term in terms:
                freqs[term] = freqs.get(term, 0) + 1
                weights[term] = weights.get(term, 0.0) + weight
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
        headline=fields.TEXT(analyzer=text, field_boost=3.0),
        title=fields.TEXT(analyzer=text, field_boost=2.0),
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
