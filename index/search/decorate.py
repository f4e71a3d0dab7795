"""What a hit shows beyond its record: the last step of :func:`index.search.run.search`.

Highlight marks in the headline, how many pages show the image, the facet counts in
order, corrections as words a person reads, and a suggestion when nothing matched.
All of it is decoration: it never makes a search fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from whoosh import highlight
from whoosh import query as Q
from whoosh.searching import Searcher
from whoosh.spelling import ReaderCorrector

from index import _whoosh  # noqa: F401  (_whoosh applies the project's Whoosh fixes)
from index.fast import arrays as fastsearch
from index.model.schema import SURFACE_FIELD, nfc
from index.search.budget import Budget, BudgetExceeded, Cancelled
from index.search.expand import terms_within
from index.search.typos import PLAIN_WORD, transpositions, written_rank, written_within

__all__ = ["decorate", "highlighter", "ordered_facets", "shown_corrections", "suggestion", "written_suggestion"]


def decorate(
    searcher: Searcher,
    ranked: list[tuple[float, dict[str, Any]]],
    *,
    scored: bool,
    marked: Callable[[str], str] | None,
) -> list[dict[str, Any]]:
    """The hits as the caller sees them: each record with its ``score`` (None unless
    ``scored``), ``uses`` (pages showing the image) and, with ``marked``, its
    ``headline_marked``."""
    hits = []
    for score, record in ranked:
        record["score"] = round(float(score or 0.0), 4) if scored else None
        record["uses"] = _uses(searcher, record.get("image_url"))
        if marked:
            record["headline_marked"] = marked(record.get("headline") or "")
        hits.append(record)
    return hits


class _Marks(highlight.Formatter):
    """Wraps matched terms in the caller's marks (ANSI bold, <mark>, ...)."""

    def __init__(self, start: str, end: str) -> None:
        self.start, self.end = start, end

    def format_token(self, text: str, token: Any, replace: bool = False) -> str:
        return f"{self.start}{highlight.get_text(text, token, replace)}{self.end}"


def highlighter(searcher: Searcher, q: Q.Query, marks: tuple[str, str]) -> Callable[[str], str]:
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
        # In the form the analyzer reads (its character offsets are into that form).
        text = nfc(text)
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


def ordered_facets(raw: Mapping[str, Mapping[Any, int]]) -> dict[str, dict[Any, int]]:
    """Each facet's counts, largest first (ties by value), without the empty value."""
    return {
        name: dict(sorted(((k, v) for k, v in groups.items() if k), key=lambda kv: (-kv[1], str(kv[0]))))
        for name, groups in raw.items()
    }


def shown_corrections(searcher: Searcher, corrections: dict[str, str], hits: list[dict[str, Any]]) -> dict[str, str]:
    """Corrections as words a person reads: the index holds stems (`exercis`), so each
    is shown as the first hit's word with that stem (`exercises`)."""
    if not hits:
        return {}
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


class _Corrector(ReaderCorrector):
    """Whoosh's reader corrector, with the index words found by Whoosh's Levenshtein
    automaton over the field's sorted words (:func:`index.search.expand.terms_within`): over
    several segments, Whoosh's own falls back to an edit distance computed in Python for
    every word of the field (over a second per suggestion at a million documents). A swap
    of two neighbour letters counts as one edit, as in Whoosh's fallback."""

    budget: Budget | None = None  # the search's, checked as the automaton walks the words

    def _suggestions(self, text: str, maxdist: int, prefix: int) -> Any:
        reader, fieldname = self.reader, self.fieldname
        spelled = reader.schema[fieldname].spelling_fieldname(fieldname)
        words = terms_within(reader, spelled, text, maxdist, prefix, budget=self.budget)
        words |= {w for w in transpositions(text) if w[:prefix] == text[:prefix] and (spelled, w) in reader}
        for word in words:
            # Whoosh's ranking: higher is better, so the distance and frequency negated.
            yield 0 - (maxdist + (1.0 / (reader.frequency(fieldname, word) or 1) * 0.5)), word


def suggestion(searcher: Searcher, q: Q.Query, text: str, budget: Budget | None = None) -> str | None:
    """A spelling suggestion for a query that found nothing, if it differs: each typed
    word the index does not hold replaced by the likeliest word as written
    (:func:`written_suggestion`); Whoosh's over the stems for an index without them."""
    reader = searcher.reader()
    if SURFACE_FIELD in searcher.schema and "text" in searcher.schema:
        try:
            return written_suggestion(reader, searcher.schema, text, budget)
        except (BudgetExceeded, Cancelled):
            raise
        except Exception:  # noqa: BLE001 - a suggestion is best effort
            return None
    try:
        correctors = {
            name: _Corrector(reader, name, searcher.schema[name])
            for name in {t.fieldname for t in q.all_tokens()}
            if name in searcher.schema
        }
        for corrector in correctors.values():
            corrector.budget = budget
        corrected = searcher.correct_query(q, text, correctors=correctors)
    except (BudgetExceeded, Cancelled):
        raise
    except Exception:  # noqa: BLE001 - a suggestion is best effort (Whoosh fails on e.g. `00:00`)
        return None
    return corrected.string if corrected is not None and corrected.query != q else None


# A suggestion is asked for only when nothing matched, so it may reach further than
# typo tolerance does: one edit from words this long, two from these.
SUGGEST_ONE_EDIT_FROM, SUGGEST_TWO_EDITS_FROM = 3, 6


def written_suggestion(reader: Any, schema: Any, text: str, budget: Budget | None = None) -> str | None:
    """``text`` with each plain word the index does not hold (in any form) replaced by
    the closest word as written, the most frequent among equals; None if none is.

    Shown as people write (`yoga related`, not the stems `yoga relat`), and what is not
    a word (`&`) is left as typed, since the parser ignores it anyway."""
    surface, analyzer = schema[SURFACE_FIELD], schema["text"].analyzer
    changed = False
    out: list[str] = []
    last = 0
    text = nfc(text)
    for m in PLAIN_WORD.finditer(text):
        raw = m.group(2)
        if not raw:
            continue
        pieces = list(surface.process_text(raw, mode="query"))
        fixed = []
        for piece in pieces:
            stems = [t.text for t in analyzer(piece)]
            if not stems or all(("text", stem) in reader for stem in stems) or len(piece) < SUGGEST_ONE_EDIT_FROM:
                fixed.append(piece)
                continue
            if budget is not None:
                budget.check()
            edits = 2 if len(piece) >= SUGGEST_TWO_EDITS_FROM else 1
            best = min(written_within(reader, piece, edits, budget), key=written_rank(reader, piece), default=None)
            fixed.append(piece if best is None else best)
        if fixed != pieces:
            changed = True
            out += [text[last : m.start(2)], " ".join(fixed)]
            last = m.end(2)
    if not changed:
        return None
    return "".join([*out, text[last:]])
