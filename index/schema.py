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

__all__ = ["EXACT_FIELDS", "make_schema"]

EXACT_FIELDS = ("domain", "site", "image_host", "author", "board")


def text_analyzer():
    # Accent folding before stemming, so `Épinglé` and `epingle` meet on one term.
    return RegexTokenizer() | LowercaseFilter() | CharsetFilter(accent_map) | StopFilter() | StemFilter(cachesize=50000)


def exact_analyzer():
    # Exact values, but `site:youtube` should find `YouTube`.
    return IDTokenizer() | LowercaseFilter()


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
        record=fields.STORED(),
    )
