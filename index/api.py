"""What a search takes and what it gives, importable without Whoosh or NumPy.

The search (:mod:`index.search.run`), the command line (:mod:`index.cli`), the page
(:mod:`index.serve.web`) and the client of a resident server (:mod:`index.serve.remote`) share these
facts; the client must not pay for importing the search stack to know them (that import
is most of a new process's start, see README "The command line, answered by a running
search page").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FACETS",
    "FILTERS",
    "MARK_END",
    "MARK_START",
    "MAX_LIMIT",
    "MAX_PAGE",
    "SERVER_SEARCH_SECONDS",
    "SORTS",
    "IndexMissing",
    "IndexUnreadable",
    "QueryError",
    "Results",
    "SearchCancelled",
    "SearchError",
    "from_api",
    "to_api",
]

FACETS = ("domain", "site", "board", "author", "image_host")
# The exact-field filters the command line and the search page offer (the library takes
# any of index.model.schema.EXACT_FIELDS).
FILTERS = ("domain", "site", "author", "board")
SORTS = {"relevance": None, "date": ("date", False), "-date": ("date", True), "domain": ("domain", False)}
# What the page and its API answer at most: a bigger request is clamped there (and the
# command line searches in its own process instead).
MAX_LIMIT = 200
MAX_PAGE = 10_000
# A query's time budget on the page and its API: past it, a one-line error instead of a
# stalled page (the command line has none; index.serve.remote waits a little longer than this).
SERVER_SEARCH_SECONDS = 3.0
# The search marks matches with private-use characters: they never occur in escaped page
# text, so they survive escaping and become markup (bold on a terminal, <mark> on the
# page) only afterwards, without ever trusting page text.
MARK_START, MARK_END = "\ue000", "\ue001"


class SearchError(Exception):
    """A search that cannot run; ``str()`` is the one-line message for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class QueryError(SearchError):
    """The query or an option cannot be read (or costs too much)."""


class IndexMissing(SearchError):
    """No index (or an empty one) where the search was pointed."""


class IndexUnreadable(SearchError):
    """An index that is there but cannot be read: damaged files, or no permission."""


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
    # Time the search waited for a thread before its work (and its budget) started.
    queued_ms: float = 0.0


# What `/api/search` answers: the Results but `parsed` (a debugging aid, Whoosh's own syntax).
_API_FIELDS = (
    "query",
    "hits",
    "facets",
    "total",
    "total_exact",
    "page",
    "limit",
    "elapsed_ms",
    "suggestion",
    "corrections",
    "queued_ms",
)


def to_api(results: Results) -> dict[str, Any]:
    """``results`` as the page's API answers them (JSON-ready)."""
    body = {name: getattr(results, name) for name in _API_FIELDS}
    body["elapsed_ms"] = round(results.elapsed_ms, 2)
    body["queued_ms"] = round(results.queued_ms, 2)
    return body


def from_api(body: dict[str, Any]) -> Results | None:
    """An API answer back as Results (``None``: not one, e.g. from another version)."""
    try:
        return Results(**{name: body[name] for name in _API_FIELDS})
    except (KeyError, TypeError):
        return None
