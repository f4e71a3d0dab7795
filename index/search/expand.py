"""Words that stand for many index words (``stretc*``, ``exer?ise``, ``exercise~2``)
expanded to at most :data:`MAX_EXPANSIONS` of them, the most frequent first, with
Whoosh's own lexicon tools over a merged, cached word list.

The expanded query is plain terms, which the NumPy fast path (:mod:`index.fast.arrays`)
evaluates with the same scores as Whoosh.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from whoosh import query as Q
from whoosh.automata import fsa, lev
from whoosh.codec.base import Automata

from index import _whoosh
from index.cache import Cache, sizeof
from index.fast import store as arraystore
from index.model.schema import SURFACE_FIELD
from index.search.budget import UNBOUNDED, Budget, resumable

__all__ = [
    "MAX_EXPANSIONS",
    "expand_multiterms",
    "lexicon_key",
    "merge_words",
    "most_frequent",
    "prefix_terms",
    "terms_within",
]

MAX_FUZZY_DISTANCE = 2
# Index words one query word may stand for (the most frequent), and how many candidate
# words a wildcard may look at to find them.
MAX_EXPANSIONS = 50
MAX_SCANNED = 20_000


# A Levenshtein automaton costs milliseconds to build and typing repeats words; the
# automata of long random words are large, so the bound is in bytes (about 1.4 KB a
# state, measured with tracemalloc on a distance-2 automaton of a 30-letter word).
def _dfa_bytes(dfa: Any) -> int:
    # The tables, measured: renumbered to ints, a state costs a fifth of what it did (the
    # old 1,400 bytes a state charged 4.4 times over, tests/test_cache_charges.py); its
    # labels are one-letter strings and its states small ints, which Python shares.
    tables = (dfa.transitions, dfa.defaults, dfa.final_states, dfa.outlabels)
    return sum(sys.getsizeof(t) for t in tables) + sum(sys.getsizeof(row) for row in dfa.transitions.values())


_AUTOMATA: Cache[Any] = Cache("automata", 32 * 2**20, sizer=_dfa_bytes, entry_bytes=200)


def _dfa(word: str, maxdist: int, prefix: int) -> Any:
    key = (word, maxdist, prefix)
    dfa = _AUTOMATA.get(key)
    if dfa is None:
        # States renumbered to ints (to_dfa names each by the frozenset of its NFA states):
        # a cached automaton is then dicts of strings and ints, which the garbage collector
        # stops tracking, not thousands of frozensets that every full collection walks
        # while it stops the server (a 32-word typo query left 92,000 of them).
        dfa = _AUTOMATA.put(key, fsa.renumber_dfa(lev.levenshtein_automaton(word, maxdist, prefix).to_dfa()))
    return dfa


def _leaves(reader: Any) -> list[Any]:
    return [r for r, _ in reader.leaf_readers()] if hasattr(reader, "leaf_readers") else [reader]


# A reader of more segments than this has its field's words merged into one sorted list
# (once per index state): Whoosh's automaton then walks one list instead of every
# segment's term file, and word starts are one binary search. The words as written are
# merged however few the segments: typo tolerance walks them with no first letter kept,
# which over a segment's term file took twice as long as the old walk over the stems.
MERGE_LEXICON_SEGMENTS = 2
ALWAYS_MERGED = frozenset({SURFACE_FIELD})
# ...unless the field has more words than this (memory: roughly 100 bytes a word).
MERGED_LEXICON_WORDS = 2_000_000


# Merged word lists per index state and field (roughly 100 bytes a word).
def _lexicon_bytes(lexicon: Any) -> int:
    # The words are both the list's items and the dict's keys: counted once (sizeof on
    # the whole object counted them twice, 2.6 times what a list held).
    return sizeof(lexicon.words) + sys.getsizeof(lexicon.frequency) + 28 * len(lexicon.frequency)


_LEXICONS: Cache[Any] = Cache("word lists", 256 * 2**20, sizer=_lexicon_bytes)
_UNKNOWN = object()


@dataclass
class _Lexicon:
    """One field's words over all segments of a reader, sorted, with their document
    frequencies (deleted documents included, as Whoosh's own counts)."""

    words: list[str]
    frequency: dict[str, int]

    def lookup(self, text: str) -> str | None:
        """The first word >= ``text``: what Whoosh's automaton walk asks for."""
        i = bisect.bisect_left(self.words, text)
        return self.words[i] if i < len(self.words) else None

    def starting_with(self, prefix: str) -> list[str]:
        i = bisect.bisect_left(self.words, prefix)
        j = bisect.bisect_left(self.words, prefix + "\U0010ffff", lo=i)
        return self.words[i:j]


def _merged_lexicon(reader: Any, fieldname: str, budget: Budget | None = None) -> _Lexicon | None:
    leaves = _leaves(reader)
    key = lexicon_key(reader)
    few = len(leaves) <= MERGE_LEXICON_SEGMENTS and fieldname not in ALWAYS_MERGED
    if key is None or few or fieldname not in reader.schema:
        return None
    key = (key, fieldname)
    found = _LEXICONS.get(key, _UNKNOWN)  # None is an answer too: a field too big to merge
    if found is not _UNKNOWN:
        return found
    row = _lexicon_row(leaves, fieldname)
    lexicon = None if row is None else _stored_lexicon(row, fieldname)
    if lexicon is not None:
        return _LEXICONS.put(key, lexicon)
    # A segment's words per step, resumed by the next search if this one stops. A field
    # too big to merge is remembered as such (None), at the cost of a key.
    lexicon = resumable(_LEXICONS, key, lambda: _MergedWords(fieldname), leaves, budget or UNBOUNDED)
    if lexicon is not None and row is not None:
        _store_lexicon(row, fieldname, lexicon)
    return lexicon


def merge_words(reader: Any, fieldnames: tuple[str, ...], budget: Budget) -> None:
    """Merge (or read back from the store) the word lists typo tolerance and word starts
    walk, within ``budget``: what a server's warm-up does before the first search."""
    for fieldname in fieldnames:
        _merged_lexicon(reader, fieldname, budget)


class _MergedWords:
    """A merged word list in steps (``resumable``): one segment's words per step."""

    def __init__(self, fieldname: str) -> None:
        self.fieldname = fieldname
        self.frequency: dict[str, int] = {}
        self.next = 0
        self.too_big = False

    def nbytes(self) -> int:
        return 100 * len(self.frequency)

    def step(self, leaves: list[Any], budget: Budget) -> bool:
        walked = budget.walk(leaves[self.next].iter_field(self.fieldname), every=4096)
        words = [(_text(btext), info.doc_frequency()) for btext, info in walked]
        # Merged only once the segment's words are all read: stopped before, the
        # partial is as it was.
        frequency = self.frequency
        for word, count in words:
            frequency[word] = frequency.get(word, 0) + count
        self.next += 1
        self.too_big = len(frequency) > MERGED_LEXICON_WORDS
        return self.too_big or self.next == len(leaves)

    def result(self) -> tuple[_Lexicon | None, int]:
        if self.too_big:
            return None, 64
        lexicon = _Lexicon(sorted(self.frequency), self.frequency)
        return lexicon, _lexicon_bytes(lexicon)


# Merging a field's words walks every segment's term file (seconds at a million
# documents), so the merged list is also kept in the index folder's array store, under
# the first segment, for the same set of segments; a new set replaces it.
_WORD_SEPARATOR = "\x00"


def _lexicon_row(leaves: list[Any], fieldname: str) -> tuple[Any, str, bytes] | None:
    """Where the merged list of these segments' words is stored: the store, the first
    segment and the key of this set of segments (None: no store)."""
    locations = [_whoosh.segment_location(leaf) for leaf in leaves]
    if any(loc is None for loc in locations):
        return None
    ids = "\n".join(sorted(loc[1] for loc in locations if loc is not None))
    folder, first = locations[0]  # type: ignore[misc]
    store = arraystore.for_folder(folder)
    if store.disabled:
        return None
    return store, first, hashlib.blake2b(f"{fieldname}\n{ids}".encode(), digest_size=16).digest()


def _stored_lexicon(row: tuple[Any, str, bytes], fieldname: str) -> _Lexicon | None:
    found = row[0].get(row[1], "m", fieldname, row[2])
    if found is None:
        return None
    joined, counts = found
    words = joined.tobytes().decode("utf-8").split(_WORD_SEPARATOR) if len(joined) else []
    if len(words) != len(counts):
        return None
    return _Lexicon(words, dict(zip(words, counts.tolist(), strict=True)))


def _store_lexicon(row: tuple[Any, str, bytes], fieldname: str, lexicon: _Lexicon) -> None:
    if any(_WORD_SEPARATOR in w for w in lexicon.words):
        return
    joined = np.frombuffer(_WORD_SEPARATOR.join(lexicon.words).encode("utf-8"), dtype=np.uint8)
    counts = np.array([lexicon.frequency[w] for w in lexicon.words], dtype=np.int64)
    row[0].put(row[1], "m", fieldname, row[2], [joined, counts], replaces_kind=True)


def terms_within(
    reader: Any, fieldname: str, word: str, maxdist: int, prefix: int = 0, budget: Budget | None = None
) -> set[str]:
    """Index words within ``maxdist`` edits of ``word`` (Levenshtein), found by walking
    Whoosh's Levenshtein automaton over the sorted words of the field (merged, or each
    segment's term list) -- what a segment reader's ``terms_within`` does, without the
    multi-segment reader's fallback, which scans the whole lexicon in Python. The walk
    checks ``budget`` every :data:`CHECK_EVERY` lookups (each segment, unmerged)."""
    if maxdist <= 0:
        return {word} if (fieldname, word) in reader else set()
    dfa = _dfa(word, maxdist, min(prefix, len(word)))
    merged = _merged_lexicon(reader, fieldname, budget)
    if merged is not None:
        return set(fsa.find_all_matches(dfa, _checked(merged.lookup, budget)))
    found: set[str] = set()
    for leaf in _leaves(reader):
        if budget is not None:
            budget.check()
        if fieldname not in leaf.schema or not hasattr(leaf, "cursor"):
            found.update(leaf.terms_within(fieldname, word, maxdist, prefix))
            continue
        found.update(Automata.find_matches(dfa, leaf.cursor(fieldname)))
    return found


# Lexicon steps (automaton lookups, scanned words) between two looks at the budget.
CHECK_EVERY = 256


def _checked(lookup: Any, budget: Budget | None) -> Any:
    """``lookup``, looking at ``budget`` every :data:`CHECK_EVERY` calls."""
    if budget is None:
        return lookup
    calls = itertools.count()

    def checked(text: str) -> Any:
        if not next(calls) % CHECK_EVERY:
            budget.check()
        return lookup(text)

    return checked


def _scanned(words: Any, budget: Budget | None) -> Any:
    """At most :data:`MAX_SCANNED` of ``words``, looking at ``budget`` on the way."""
    return (budget or UNBOUNDED).walk(itertools.islice(words, MAX_SCANNED), every=CHECK_EVERY)


def frequency_of(reader: Any, fieldname: str) -> Any:
    """A function from a word to its document frequency in ``fieldname``: the merged
    word list's when there is one, else the reader's (looked up once per call site, not
    once per word)."""
    merged = _merged_lexicon(reader, fieldname)
    if merged is not None:
        return lambda word: merged.frequency.get(word, 0)
    return lambda word: reader.doc_frequency(fieldname, word)


def most_frequent(reader: Any, fieldname: str, words: Any, limit: int) -> list[str]:
    frequency = frequency_of(reader, fieldname)
    return heapq.nlargest(limit, words, key=lambda w: (frequency(w), w))


def prefix_terms(
    reader: Any, fieldname: str, prefix: str, limit: int = MAX_EXPANSIONS, budget: Budget | None = None
) -> list[str]:
    """The ``limit`` most frequent index words starting with ``prefix`` (Whoosh's
    ``iter_prefix``: one pass over that range of the sorted term list, bounded)."""
    merged = _merged_lexicon(reader, fieldname, budget)
    if merged is not None:
        scanned = _scanned(merged.starting_with(prefix), budget)
        return heapq.nlargest(limit, scanned, key=lambda w: (merged.frequency[w], w))
    seen = _scanned(reader.iter_prefix(fieldname, prefix), budget)
    best = heapq.nlargest(limit, seen, key=lambda item: (item[1].doc_frequency(), item[0]))
    return [_text(word) for word, _ in best]


def _text(word: Any) -> str:
    return word.decode("utf-8") if isinstance(word, bytes) else str(word)


def _or(fieldname: str, words: list[str], original: Q.Query, fallback: str) -> Q.Query:
    if not words:
        # Nothing matches; a term that is not in the index keeps `And` semantics
        # (Whoosh drops a NullQuery from an And, which would widen the query).
        return Q.Term(fieldname, fallback, boost=original.boost)
    if len(words) == 1:
        return Q.Term(fieldname, words[0], boost=original.boost)
    return Q.Or([Q.Term(fieldname, w) for w in words], boost=original.boost)


def expand_multiterms(q: Q.Query, reader: Any, budget: Budget | None = None) -> Q.Query:
    """``q`` with every prefix, wildcard and fuzzy word replaced by an OR of at most
    :data:`MAX_EXPANSIONS` index words (fuzzy distance at most 2), within ``budget``."""
    kind = type(q)
    if kind is Q.Prefix:
        return _or(q.fieldname, prefix_terms(reader, q.fieldname, q.text, budget=budget), q, q.text)
    if kind is Q.FuzzyTerm:
        maxdist = max(0, min(int(q.maxdist), MAX_FUZZY_DISTANCE))
        words = terms_within(reader, q.fieldname, q.text, maxdist, q.prefixlength, budget=budget)
        return _or(q.fieldname, most_frequent(reader, q.fieldname, words, MAX_EXPANSIONS), q, q.text)
    if kind is Q.Wildcard:
        pattern = re.compile(_whoosh.wildcard_pattern(q))
        literal = re.split(r"[*?]", q.text, maxsplit=1)[0]
        scanned = _scanned(reader.expand_prefix(q.fieldname, literal), budget)
        words = [w for w in map(_text, scanned) if pattern.match(w)]
        return _or(q.fieldname, most_frequent(reader, q.fieldname, words, MAX_EXPANSIONS), q, q.text)
    if isinstance(q, Q.MultiTerm) and not isinstance(q, (Q.Every,)):
        return q  # ranges and the like: bounded by the collector's budget
    if q.is_leaf():
        return q
    return q.apply(lambda sub: expand_multiterms(sub, reader, budget))


def lexicon_key(reader: Any) -> tuple[Any, ...] | None:
    """The identity of a reader's set of segments (their words never change), or None
    for readers without one (no cache then)."""
    try:
        return tuple(_whoosh.segment_key(leaf) for leaf in _leaves(reader))
    except AttributeError:
        return None
