"""Whole-array evaluation of the common query shapes, over Whoosh's own index files.

Whoosh scores a query by walking its matchers one document at a time in Python, about
10 µs per matching document; a common word at a million documents matches 100,000 of
them, and counting or faceting the whole result set means walking all of them. This
module evaluates the same queries a posting list at a time with NumPy instead:

- a term's postings (document numbers and weights) are read block by block from the
  segment and kept as arrays (bounded LRU, per immutable segment, so a refreshed searcher
  reuses everything but the new segments);
- AND / OR / NOT are sorted-array set operations, BM25F is one vectorised expression
  with Whoosh's own statistics (idf, average field length, its one-byte field lengths),
  so scores are Whoosh's scores, ties broken the way Whoosh breaks them (lower document
  number first);
- the result-set size is exact, and facet counts are one ``bincount`` over per-segment
  value ordinals;
- the costly arrays (a common word's postings, a segment's value ordinals) are also kept
  on disk beside the index (``index.fast.store``), so a new process does not decode them
  again.

Only the shapes it can score exactly are taken: terms, And, Or, Not inside And, AndNot.
Anything else (phrases, prefixes, fuzzy terms, ranges inside the scored query, custom
sorts) raises :class:`Unsupported` and the caller uses Whoosh's searcher as before.
Filters and negated clauses are unscored, so any query works there: And / Or / Not
structurally, prefixes, wildcards and ranges a term at a time, anything else through
Whoosh's matcher. Every step checks the query's budget (``index.search.budget``) and
charges it the arrays it builds, so a query of fifteen negated ranges stops at its
deadline instead of walking the index fifteen times unchecked. ``tests/test_fast_arrays.py``
checks hit order, scores, totals and facets against Whoosh's searcher on many queries.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from whoosh import query as Q
from whoosh.util.numeric import byte_to_length

from index import _whoosh
from index.cache import Cache, on_clear, sizeof
from index.fast import store as arraystore
from index.options import megabytes_from_env
from index.search.budget import UNBOUNDED, Budget, resumable

__all__ = [
    "Evaluation",
    "Unsupported",
    "distinct_count",
    "doc_count",
    "evaluate",
    "facet_counts",
    "live_docnums",
    "warm",
]


_BYTE_TO_LENGTH = np.array([byte_to_length(b) for b in range(256)], dtype=np.float64)
_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_EMPTY_SCORES = np.zeros(0, dtype=np.float64)
# From this many ids on, removing documents scatters into a boolean array instead of a
# binary search per id.
_SCATTER_FROM = 4096
# Above any BM25 score: tier t ranks as t * _TIER_GAP - score when partitioning.
_TIER_GAP = 1e7


class Unsupported(Exception):
    """This query needs Whoosh's own matchers."""


# The arrays a search process keeps between queries, per segment (a segment's files never
# change once written; deletions live apart and are applied per reader) or per index
# state. Keys start with the kind of array:
#   "p" a word's postings (ids, weights) in one segment     "l" a field's lengths, one segment
#   "s" a word's live ids and scores over the index state    "L" a word's live documents
#   "c" a word's live page count                              "o" a segment's facet ordinals
#   "v" a segment's value ordinals and hashes                 "g" global value ordinals
#   "f" global facet ordinals
# The same letters name the kinds kept on disk by index.fast.store ("m": merged word lists).
# Bounded by $PAGES_SEARCH_CACHE_MB (1 GiB): at a million documents 256 MiB was too
# small, typo and word-start queries evicted each other's arrays (bench/RESULTS.md).
# Each entry is charged what index.cache.sizeof finds in its value (an array's data and
# header, the tuples, the strings of a value list) and 150 bytes more (its key and the
# LRU's node and tuple; tests/test_cache_charges.py measures every kind with tracemalloc).
# Charged as 64 for any entry, a range walk that kept every word of the index held five
# times what the bound said; charged as 560 for any entry, a word's page count (an int)
# was charged five times what it held.
_CACHE: Cache[Any] = Cache("arrays", megabytes_from_env("PAGES_SEARCH_CACHE_MB", 1024, minimum=16), entry_bytes=150)
# How many values were read one by one per (segment, field), and which index states
# have had a distinct count: small, but bounded like everything a server keeps.
_LOOKED_UP: Cache[int] = Cache("lookups", 2**20, sizer=lambda _: 200)
_COUNTED: Cache[bool] = Cache("counted states", 2**20, sizer=lambda _: 200)


_segment_key = _whoosh.segment_key


# Arrays of fewer postings than this are decoded again by the next process rather than
# stored: a few blocks decode about as fast as a stored row is read back.
STORE_MIN_POSTINGS = 1024
_STORES: weakref.WeakKeyDictionary[Any, tuple[arraystore.ArrayStore, str] | None] = weakref.WeakKeyDictionary()
on_clear(_STORES.clear)


def _store(reader: Any) -> tuple[arraystore.ArrayStore, str] | None:
    """The disk store of the reader's index folder and the segment's id in it."""
    try:
        return _STORES[reader]
    except KeyError:
        pass
    location = _whoosh.segment_location(reader)
    found = None if location is None else (arraystore.for_folder(location[0]), location[1])
    _STORES[reader] = found
    return found


def flush_store() -> None:
    """Write the arrays this process decoded to the disk store (after each search)."""
    arraystore.flush_all()


def _compact(ids: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    # Segment-local document numbers fit 32 bits; term weights are counts, so float32 is
    # exact (kept as float64 when it would not be: scores must stay Whoosh's).
    small = weights.astype(np.float32)
    return [ids.astype(np.int32), small if np.array_equal(small, weights) else weights]


def _read_postings(
    reader: Any,
    fieldname: str,
    btext: bytes,
    keep: bool = True,
    budget: Budget = UNBOUNDED,
    keep_from: int = 0,
    to_disk: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """All (docnum, weight) pairs of a term in one segment, deletions included; kept in
    the cache unless ``keep`` is false (the caller keeps what it derives from them) or the
    word has fewer than ``keep_from`` postings; written to the array store unless
    ``to_disk`` is false. Decoding a common word's blocks checks ``budget`` as it goes."""
    key = ("p", _segment_key(reader), fieldname, btext)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    frequency = _whoosh.term_doc_frequency(reader, fieldname, btext)
    keep = keep and frequency >= keep_from
    if not frequency:
        return _CACHE.put(key, (_EMPTY_IDS, _EMPTY_SCORES), 56) if keep else (_EMPTY_IDS, _EMPTY_SCORES)
    stored = _store(reader) if frequency >= STORE_MIN_POSTINGS else None
    found = None if stored is None else stored[0].get(stored[1], "p", fieldname, btext)
    if found is not None:
        ids, weights = found[0].astype(np.int64), found[1].astype(np.float64)
    else:
        ids, weights = _decode_postings(reader, fieldname, btext, budget)
        if stored is not None and to_disk:
            stored[0].put(stored[1], "p", fieldname, btext, _compact(ids, weights))
    if not keep:
        return ids, weights
    return _CACHE.put(key, (ids, weights))


def _decode_postings(
    reader: Any, fieldname: str, btext: bytes, budget: Budget = UNBOUNDED
) -> tuple[np.ndarray, np.ndarray]:
    ids_parts: list[np.ndarray] = []
    weight_parts: list[np.ndarray] = []
    for block_ids, block_weights in budget.walk(_whoosh.posting_blocks(reader, fieldname, btext), every=16):
        ids_parts.append(np.asarray(block_ids, dtype=np.int64))
        weight_parts.append(np.asarray(block_weights, dtype=np.float64))
    ids = np.concatenate(ids_parts) if ids_parts else _EMPTY_IDS
    weights = np.concatenate(weight_parts) if weight_parts else _EMPTY_SCORES
    return ids, weights


def _lengths(reader: Any, fieldname: str) -> np.ndarray:
    """Every document's length in ``fieldname`` as Whoosh scores it (one byte, decoded)."""
    key = ("l", _segment_key(reader), fieldname)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    count = reader.doc_count_all()
    raw = _whoosh.length_codes(reader, fieldname, count)
    if raw is not None:
        codes = np.frombuffer(raw, dtype=np.uint8)
        codes = np.concatenate([codes, np.zeros(count - len(codes), dtype=np.uint8)])
        lengths = _BYTE_TO_LENGTH[codes]
    else:
        lengths = np.array([reader.doc_field_length(d, fieldname, 0) for d in range(count)], dtype=np.float64)
    lengths[lengths == 0] = 1.0  # Whoosh's scorer reads a missing length as 1
    return _CACHE.put(key, lengths)


def _deleted(reader: Any) -> np.ndarray | None:
    if not reader.has_deletions():
        return None
    dead = reader.deleted_docs_set
    dead = dead() if callable(dead) else dead
    return np.sort(np.fromiter(dead, dtype=np.int64, count=len(dead)))


def _live_postings(
    seg: _Segment,
    fieldname: str,
    btext: bytes,
    keep: bool = True,
    budget: Budget = UNBOUNDED,
    keep_from: int = 0,
    to_disk: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A term's (docnum, weight) pairs in a segment, its deleted documents left out
    (``keep``, ``budget``, ``keep_from``, ``to_disk``: as in :func:`_read_postings`)."""
    ids, weights = _read_postings(
        seg.reader, fieldname, btext, keep=keep, budget=budget, keep_from=keep_from, to_disk=to_disk
    )
    if seg.deleted is not None and len(ids):
        live = ~_positions(ids, seg.deleted)[0]
        ids, weights = ids[live], weights[live]
    return ids, weights


def _state(segments: list[_Segment]) -> str:
    """The index state the searcher's segments are in (what per-state arrays are keyed by)."""
    return segments[0].state if segments else ""


@dataclass
class _Segment:
    reader: Any
    searcher: Any
    offset: int
    deleted: np.ndarray | None
    # What identifies the index's state for cached scores: every segment and how many of
    # its documents are deleted (a segment's deletions only grow). Searchers of the same
    # commit (one per thread of the search page) share it, and so their cached scores.
    state: str = ""


@dataclass
class Evaluation:
    """The whole result set: global document numbers with their scores."""

    docnums: np.ndarray
    scores: np.ndarray
    # Per document, the corrections it needed (typo tolerance): fewer rank first,
    # whatever the scores. None: all documents in one tier.
    tiers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.docnums)

    def ranked(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions [start, stop) of the ranking: tier ascending, score descending,
        then docnum ascending (Whoosh's tie-break)."""
        n = len(self.docnums)
        stop = min(stop, n)
        if start >= stop:
            return _EMPTY_IDS, _EMPTY_SCORES
        # Scores summed in a different order differ in the last bits; rounded, equal
        # scores tie and the lower document number wins, whatever the summation order.
        key = -np.round(self.scores, 9)
        tiers = self.tiers
        if stop < n // 4:
            # Partition first: only the candidates that can be in the top `stop`.
            rank = key if tiers is None else tiers * _TIER_GAP + key
            cut = np.partition(rank, stop - 1)[stop - 1]
            keep = np.flatnonzero(rank <= cut + (0 if tiers is None else 1e-6))
        else:
            keep = np.arange(n)
        keys = (self.docnums[keep], key[keep]) if tiers is None else (self.docnums[keep], key[keep], tiers[keep])
        order = keep[np.lexsort(keys)]
        return self.docnums[order[start:stop]], self.scores[order[start:stop]]


_SCRATCH = threading.local()


def _position_map(size: int) -> np.ndarray:
    """This thread's map from a document number to a position, -1 everywhere: used by
    :func:`_positions` and put back to -1 after each use, so that a query pays for the
    numbers it touches, not for allocating and filling the whole span each time."""
    where = getattr(_SCRATCH, "where", None)
    if where is None or len(where) < size:
        where = _SCRATCH.where = np.full(max(size, 1 << 16), -1, dtype=np.int32)
    return where


def _positions(ids: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted unique arrays: which of ``ids`` are in ``other``, and where. A binary
    search per element of the (smaller) ``ids`` -- far cheaper than ``np.isin``, which
    sorts both arrays together, when one posting list is much shorter than the other."""
    if not len(other) or not len(ids):
        return np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=np.int64)
    size = int(max(ids[-1], other[-1])) + 1
    if len(ids) * 16 > size:
        # Many ids for the span of numbers: a position map (one scatter, one gather)
        # beats a binary search per id (2.2 vs 5.1 ms for 100k in 300k at 1M documents).
        where = _position_map(size)
        try:
            where[other] = np.arange(len(other), dtype=np.int32)
            pos = where[ids].astype(np.int64)
        finally:
            where[other] = -1
        found = pos >= 0
        pos[~found] = 0
        return found, pos
    pos = np.searchsorted(other, ids)
    np.minimum(pos, len(other) - 1, out=pos)
    return other[pos] == ids, pos


def _combine_and(
    parts: list[tuple[np.ndarray, np.ndarray]], budget: Budget = UNBOUNDED
) -> tuple[np.ndarray, np.ndarray]:
    parts = sorted(parts, key=lambda p: len(p[0]))
    ids, scores = parts[0]
    # A look between two intersections: at 10M documents each can take a tenth of a second.
    for other_ids, other_scores in budget.walk(parts[1:], every=1):
        if not len(ids):
            break
        mask, pos = _positions(ids, other_ids)
        ids, scores = ids[mask], scores[mask] + other_scores[pos[mask]]
    return ids, scores


def _combine_or(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return _EMPTY_IDS, _EMPTY_SCORES
    if len(parts) == 1:
        return parts[0]
    all_ids = np.concatenate([p[0] for p in parts])
    all_scores = np.concatenate([p[1] for p in parts])
    size = int(all_ids.max()) + 1
    if len(all_ids) * 16 >= size:
        # Dense enough (a word and its variants, common words): one pass over a
        # segment-sized array instead of sorting the concatenation.
        present = np.zeros(size, dtype=bool)
        present[all_ids] = True
        ids = np.flatnonzero(present)
        scores = np.bincount(all_ids, weights=all_scores, minlength=size)[ids]
        return ids, scores
    ids, inverse = np.unique(all_ids, return_inverse=True)
    scores = np.bincount(inverse, weights=all_scores, minlength=len(ids))
    return ids, scores


def _without(ids: np.ndarray, scores: np.ndarray, remove: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` (sorted) and their scores, less the sorted ``remove``."""
    if not len(remove) or not len(ids):
        return ids, scores
    if len(ids) < _SCATTER_FROM:
        keep = ~_positions(ids, remove)[0]
    else:
        # One scatter and one gather instead of a binary search per id (the page
        # documents taken out of a whole result set).
        removed = np.zeros(max(int(ids[-1]), int(remove[-1])) + 1, dtype=bool)
        removed[remove] = True
        keep = ~removed[ids]
    return ids[keep], scores[keep]


class _Evaluator:
    """Evaluates a query over the whole index at once: a term's live documents of every
    segment are kept as one array of global document numbers, so AND / OR / NOT run once
    per query, not once per segment (at a million documents in 54 segments the per-call
    overhead of a hundred small array operations per segment was most of a warm query)."""

    def __init__(self, searcher: Any, budget: Budget = UNBOUNDED) -> None:
        self.top = searcher
        self.segments = _segments(searcher)
        self.state = _state(self.segments)
        self.weighting = searcher.weighting
        self.scorable_stats: dict[tuple[str, bytes], tuple[float, float]] = {}
        self.budget = budget

    # -- scored ------------------------------------------------------------------------

    def scored(self, q: Q.Query) -> tuple[np.ndarray, np.ndarray]:
        self.budget.check()
        ids, scores = self._scored(q)
        self.budget.charge(ids.nbytes + scores.nbytes)
        return ids, scores

    def _scored(self, q: Q.Query) -> tuple[np.ndarray, np.ndarray]:
        kind = type(q)
        if kind is Q.Term:
            ids, scores = self._term(q)
        elif kind is Q.And:
            positive = [s for s in q.subqueries if type(s) is not Q.Not]
            negative = [s for s in q.subqueries if type(s) is Q.Not]
            if not positive:
                raise Unsupported("only negative clauses")
            ids, scores = _combine_and([self.scored(s) for s in positive], self.budget)
            for n in negative:
                ids, scores = _without(ids, scores, self.unscored(n.query))
                # Whoosh intersects with the NOT's inverse matcher, which scores its boost.
                scores = scores + n.boost
        elif kind is Q.Or:
            if q.minmatch or q.scale is not None:
                raise Unsupported("Or with minmatch/scale")
            if any(type(s) is Q.Not for s in q.subqueries):
                raise Unsupported("Not inside Or")
            ids, scores = _combine_or([self.scored(s) for s in q.subqueries])
        elif kind is Q.AndNot:
            ids, scores = self.scored(q.a)
            ids, scores = _without(ids, scores, self.unscored(q.b))
        elif q is Q.NullQuery or kind is type(Q.NullQuery):
            ids, scores = _EMPTY_IDS, _EMPTY_SCORES
        else:
            raise Unsupported(kind.__name__)
        if kind is not Q.Term and q.boost != 1.0:
            scores = scores * q.boost
        return ids, scores

    def _term(self, q: Q.Term) -> tuple[np.ndarray, np.ndarray]:
        fieldname = q.fieldname
        if fieldname not in self.top.schema:
            return _EMPTY_IDS, _EMPTY_SCORES
        field = self.top.schema[fieldname]
        try:
            btext = field.to_bytes(q.text)
        except ValueError:
            return _EMPTY_IDS, _EMPTY_SCORES
        params = self._bm25_params(fieldname) if field.scorable else None
        # A term's live documents and their unboosted scores, kept per index state: the
        # words of a query typed letter by letter, or of popular queries, come back.
        key = ("s", self.state, fieldname, btext, params)
        found = _CACHE.get(key)
        if found is None:
            # A common word at 10M documents decodes for seconds: a segment at a time,
            # resumed by the next search if this one stops.
            found = resumable(_CACHE, key, lambda: _TermArrays(fieldname, q.text, btext, params), self, self.budget)
        ids, scores = found
        return ids, scores * q.boost if q.boost != 1.0 else scores

    def _bm25_params(self, fieldname: str) -> tuple[float, float]:
        w = self.weighting
        if type(w).__name__ != "BM25F":
            raise Unsupported(f"weighting {type(w).__name__}")
        return _whoosh.bm25_params(w, fieldname)

    def _stats(self, fieldname: str, text: Any, btext: bytes) -> tuple[float, float]:
        key = (fieldname, btext)
        stats = self.scorable_stats.get(key)
        if stats is None:
            stats = (self.top.idf(fieldname, text), self.top.avg_field_length(fieldname) or 1)
            self.scorable_stats[key] = stats
        return stats

    # -- unscored ----------------------------------------------------------------------

    def unscored(self, q: Q.Query) -> np.ndarray:
        """Matching global document numbers (sorted) of any query."""
        try:
            return self.scored(q)[0]
        except Unsupported:
            pass
        ids = self._unscored(q)
        self.budget.charge(ids.nbytes)
        return ids

    def _unscored(self, q: Q.Query) -> np.ndarray:
        kind = type(q)
        if kind is Q.Not:
            return _difference(self._all_docs(), self.unscored(q.query))
        if kind is Q.Or and not q.minmatch:
            return self._union([self.unscored(s) for s in q.subqueries])
        if kind is Q.And:
            ids = self.unscored(q.subqueries[0]) if q.subqueries else _EMPTY_IDS
            for s in q.subqueries[1:]:
                if not len(ids):
                    break
                ids = ids[_positions(ids, self.unscored(s))[0]]
            return ids
        if kind is Q.AndNot:
            return _difference(self.unscored(q.a), self.unscored(q.b))
        if isinstance(q, Q.MultiTerm) and not isinstance(q, Q.Variations):
            return self._expanded(q)
        # Anything else (phrases, numeric and date ranges): Whoosh's matcher, a document
        # at a time, within the budget.
        parts = [_EMPTY_IDS]
        for seg in self.segments:
            docs = np.fromiter(self.budget.walk(q.docs(seg.searcher), every=1024), dtype=np.int64)
            docs.sort()
            parts.append(docs + seg.offset)
        return np.concatenate(parts)

    def _expanded(self, q: Q.Query) -> np.ndarray:
        """A prefix, wildcard, fuzzy term or range: the union of its words' documents,
        a word at a time. Whoosh's matcher would first build one sub-matcher per word
        of the range (every word of the index for `text:>1`) before the first document,
        and no budget can stop that."""
        fieldname = q.field()
        parts = [_EMPTY_IDS]
        for seg in self.segments:
            if fieldname not in seg.reader.schema:
                continue
            for btext in self.budget.walk(q._btexts(seg.reader), every=16):
                # Only its common words are kept: a range over most of the index's words
                # would otherwise keep a little more of the whole lexicon after each query
                # the budget stops, and a server's memory grow storm after storm. A rare
                # word's few blocks decode about as fast as they are looked up.
                # Nor written to the array store: a range over every word would fill it
                # (evicting what plain words need) and keep the search writing after its
                # deadline (0.78 s at 10M documents, bench.gaps).
                ids = _live_postings(
                    seg, fieldname, btext, budget=self.budget, keep_from=STORE_MIN_POSTINGS, to_disk=False
                )[0]
                if len(ids):
                    self.budget.charge(ids.nbytes)
                    parts.append(ids + seg.offset)
        return self._union(parts)

    def _union(self, parts: list[np.ndarray]) -> np.ndarray:
        parts = [p for p in parts if len(p)]
        if not parts:
            return _EMPTY_IDS
        if len(parts) == 1:
            return parts[0]
        joined = np.concatenate(parts)
        self.budget.charge(joined.nbytes * 2)
        size = int(joined.max()) + 1
        if len(joined) * 16 < size:
            return np.unique(joined)
        # Dense (a range over most of a field's words): one scatter over the document
        # numbers instead of sorting millions of them (a tenth of a second at 100k documents).
        present = np.zeros(size, dtype=bool)
        present[joined] = True
        return np.flatnonzero(present)

    def _all_docs(self) -> np.ndarray:
        """Every live document's global number (what a bare NOT is the complement of)."""
        parts = [_EMPTY_IDS]
        for seg in self.segments:
            ids = np.arange(seg.offset, seg.offset + seg.reader.doc_count_all(), dtype=np.int64)
            if seg.deleted is not None:
                ids = _difference(ids, seg.deleted + seg.offset)
            parts.append(ids)
        ids = np.concatenate(parts)
        self.budget.charge(ids.nbytes)
        return ids


class _TermArrays:
    """A term's live documents and unboosted scores over the index state (what
    ``_Evaluator._term`` keeps), a segment per step."""

    def __init__(self, fieldname: str, text: Any, btext: bytes, params: tuple[float, float] | None) -> None:
        self.fieldname, self.text, self.btext, self.params = fieldname, text, btext, params
        self.ids: list[np.ndarray] = [_EMPTY_IDS]
        self.scores: list[np.ndarray] = [_EMPTY_SCORES]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.ids) + sum(a.nbytes for a in self.scores)

    def step(self, evaluator: _Evaluator, budget: Budget) -> bool:
        fieldname, btext, params = self.fieldname, self.btext, self.params
        seg = evaluator.segments[len(self.ids) - 1]
        # Not kept twice: the live documents and their scores are what is kept.
        ids, weights = _live_postings(seg, fieldname, btext, keep=False, budget=budget)
        if params is not None and len(ids):
            idf, avgfl = evaluator._stats(fieldname, self.text, btext)
            B, K1 = params
            lengths = _lengths(seg.reader, fieldname)[ids]
            weights = idf * ((weights * (K1 + 1)) / (weights + K1 * ((1 - B) + B * lengths / avgfl)))
        self.ids.append(ids + seg.offset)
        self.scores.append(weights)
        return len(self.ids) - 1 == len(evaluator.segments)

    def result(self) -> tuple[tuple[np.ndarray, np.ndarray], int]:
        # Segments are in offset order, so the concatenation is sorted.
        ids, scores = np.concatenate(self.ids), np.concatenate(self.scores)
        return (ids, scores), sizeof((ids, scores))


def _difference(ids: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """The sorted ``ids`` less the sorted ``remove``."""
    return _without(ids, ids, remove)[0]


def _segments(searcher: Any) -> list[_Segment]:
    # A searcher's segments never change (a commit makes a new searcher): work out their
    # offsets and deleted documents once per searcher, not once per call -- a search asks
    # for them for the evaluation, each facet and each hit's page count.
    def build() -> list[_Segment]:
        out = []
        for sub, offset in searcher.leaf_searchers():
            reader = sub.reader()
            if not _whoosh.is_segment_reader(reader):
                raise Unsupported("not a segment reader")
            # A one-segment searcher is its own leaf: held strongly, it would never be freed.
            leaf = weakref.proxy(sub) if sub is searcher else sub
            out.append(_Segment(reader, leaf, offset, _deleted(reader)))
        state = "|".join(f"{_segment_key(seg.reader)}-{0 if seg.deleted is None else len(seg.deleted)}" for seg in out)
        for seg in out:
            seg.state = state
        return out

    return _whoosh.per_searcher(searcher, "fastsearch.segments", build)


def evaluate(
    searcher: Any,
    q: Q.Query,
    filter_q: Q.Query | None = None,
    exclude: np.ndarray | None = None,
    tiers: list[list[tuple[str, str, int]]] | None = None,
    budget: Budget | None = None,
) -> Evaluation:
    """Every document matching ``q`` (and ``filter_q``, and not in the sorted global
    document numbers ``exclude``), with Whoosh's scores, within ``budget``
    (:class:`~index.search.budget.BudgetExceeded` or ``Cancelled`` past it)."""
    budget = budget or UNBOUNDED
    evaluator = _Evaluator(searcher, budget)
    ids, scores = evaluator.scored(q)
    if filter_q is not None and len(ids):
        keep = _positions(ids, evaluator.unscored(filter_q))[0]
        ids, scores = ids[keep], scores[keep]
    if exclude is not None:
        ids, scores = _without(ids, scores, exclude)
    return Evaluation(ids, scores, _tiers(searcher, ids, tiers, budget) if tiers else None)


def _tiers(
    searcher: Any, ids: np.ndarray, groups: list[list[tuple[str, str, int]]], budget: Budget = UNBOUNDED
) -> np.ndarray:
    """Per result, the sum over the query's tolerant words of the cheapest variant it
    holds (0: the word as typed); a result holding none of a word's variants (the other
    side of an OR) pays nothing for it."""
    total = np.zeros(len(ids), dtype=np.float64)
    for group in groups:
        best = np.full(len(ids), np.inf)
        for fieldname, word, cost in budget.walk(group, every=1):
            found, pos = _positions(live_docnums(searcher, fieldname, word, budget), ids)
            np.minimum.at(best, pos[found], float(cost))
        best[np.isinf(best)] = 0.0
        total += best
    return total


def live_docnums(searcher: Any, fieldname: str, text: str, budget: Budget = UNBOUNDED) -> np.ndarray:
    """Sorted global numbers of the live documents holding ``text`` in ``fieldname``
    (postings decoded within ``budget``)."""
    btext = searcher.schema[fieldname].to_bytes(text)
    segments = _segments(searcher)
    key = ("L", _state(segments), fieldname, btext)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    parts = [_EMPTY_IDS, *(_live_postings(seg, fieldname, btext, budget=budget)[0] + seg.offset for seg in segments)]
    ids = np.concatenate(parts)
    return _CACHE.put(key, ids)


def doc_count(searcher: Any, fieldname: str, text: str) -> int:
    """Live documents holding ``text`` in ``fieldname``, from the cached posting arrays
    (an image URL shown on a thousand pages would otherwise be walked one by one)."""
    btext = searcher.schema[fieldname].to_bytes(text)
    segments = _segments(searcher)
    # Kept per index state: a term-info lookup per segment (a hash and a probe of
    # Whoosh's term table) is slower than the cache, and a result page asks for ten.
    key = ("c", _state(segments), fieldname, btext)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    total = sum(
        # Every holder live: the term info's count is the answer, without the postings.
        _whoosh.term_doc_frequency(seg.reader, fieldname, btext)
        if seg.deleted is None
        else len(_live_postings(seg, fieldname, btext)[0])
        for seg in segments
    )
    return _CACHE.put(key, total)


def _ordinals(reader: Any, fieldname: str, budget: Budget = UNBOUNDED) -> tuple[np.ndarray, list[str]]:
    """Per document of a segment, the index of its value of ``fieldname`` in the returned
    list (-1: none), built from the field's postings (one value per document). Values are
    shown as first written (``YouTube``), as Whoosh's own facets show them, not as the
    lower-cased terms. Built a value at a time within ``budget``, resumed by the next
    search when it stops (:func:`~index.search.budget.resumable`)."""
    key = ("o", _segment_key(reader), fieldname)
    cached, found = _kept(reader, "o", fieldname)
    if cached is not None:
        return cached
    if found is not None:
        ords, sizes, joined = found
        bounds = [0, *np.cumsum(sizes).tolist()]
        data = joined.tobytes()
        shown_values = [data[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(len(sizes))]
        return _CACHE.put(key, (ords, shown_values))
    return resumable(_CACHE, key, lambda: _FacetOrdinals(fieldname, reader.doc_count_all()), reader, budget)


# A step of a segment's facet ordinals reads at least one value's postings, and more
# until this many documents are done.
FACET_STEP_POSTINGS = 262_144


class _FacetOrdinals:
    """``_ordinals`` in steps: the field's values are walked in order, each value's
    documents marked with its index once its postings are read (a step stopped inside a
    value's postings leaves the partial as it was)."""

    def __init__(self, fieldname: str, count: int) -> None:
        self.fieldname = fieldname
        self.ords = np.full(count, -1, dtype=np.int32)
        self.values: list[str] = []
        self.terms: list[bytes] | None = None
        self.next = 0

    def nbytes(self) -> int:
        return self.ords.nbytes + 64 * len(self.values) + 80 * len(self.terms or ())

    def step(self, reader: Any, budget: Budget) -> bool:
        fieldname = self.fieldname
        if self.terms is None:
            self.terms = list(budget.walk(reader.lexicon(fieldname), every=1024))
            return False
        column = reader.column_reader(fieldname) if reader.has_column(fieldname) else None
        done = 0
        while self.next < len(self.terms) and done < FACET_STEP_POSTINGS:
            btext = self.terms[self.next]
            ids, _ = _read_postings(reader, fieldname, btext, budget=budget)
            if len(ids):
                shown = column[int(ids[0])] if column is not None else None
                self.ords[ids] = len(self.values)
                self.values.append(shown if isinstance(shown, str) and shown else btext.decode("utf-8"))
            self.next += 1
            done += len(ids)
        if self.next < len(self.terms):
            return False
        stored = _store(reader)
        if stored is not None:
            encoded = [v.encode("utf-8") for v in self.values]
            sizes = np.array([len(e) for e in encoded], dtype=np.int32)
            joined = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            stored[0].put(stored[1], "o", fieldname, b"", [self.ords, sizes, joined])
        return True

    def result(self) -> tuple[tuple[np.ndarray, list[str]], int]:
        return (self.ords, self.values), sizeof((self.ords, self.values))


def _column(reader: Any, fieldname: str) -> Any:
    """The segment's raw column reader of ``fieldname``, shared by every reader of the
    segment and bounded with Whoosh's own (``index._whoosh.shared_column``)."""
    return _whoosh.shared_column(
        ("raw", _segment_key(reader), fieldname), lambda: _whoosh.column_reader(reader, fieldname)
    )


def column_lookup(searcher: Any, fieldname: str) -> Callable[[int], bytes]:
    """A function from a global document number to its raw column value of
    ``fieldname`` (b"": none): what collapsing compares, without reading and decoding
    the stored record of every repeat of a much-shared image."""
    segments = _segments(searcher)
    offsets = [seg.offset for seg in segments]
    # Asked for every query; each answer is a look at the segment's file list.
    if not _whoosh.per_searcher(
        searcher, f"has_column:{fieldname}", lambda: all(seg.reader.has_column(fieldname) for seg in segments)
    ):
        raise Unsupported(f"no column {fieldname}")

    def value(docnum: int) -> bytes:
        i = bisect.bisect_right(offsets, docnum) - 1
        return _column(segments[i].reader, fieldname)[docnum - offsets[i]]

    return value


# Below this many hits in a segment, values are read one by one from the column rather
# than building (and caching) the whole segment's ordinals.
DISTINCT_LOOKUP_LIMIT = 256


def _value_ordinals(reader: Any, fieldname: str, budget: Budget = UNBOUNDED) -> tuple[np.ndarray, np.ndarray]:
    """Per document of a segment, the index of its stored column value (-1: none), and
    per index the value's hash, from the raw column: one pass, no posting lists, in
    steps of :data:`VALUE_STEP` documents within ``budget`` (a million documents' values
    take seconds; a search stopped meanwhile leaves the next one to resume)."""
    known = _known_value_ordinals(reader, fieldname)
    if known is not None:
        return known
    key = ("v", _segment_key(reader), fieldname)
    return resumable(_CACHE, key, lambda: _ValueOrdinals(fieldname, reader.doc_count_all()), reader, budget)


# Documents whose column values one step of ``_value_ordinals`` reads and hashes (about
# 50 ms of CPU).
VALUE_STEP = 65_536


class _ValueOrdinals:
    """``_value_ordinals`` in steps of :data:`VALUE_STEP` documents."""

    def __init__(self, fieldname: str, count: int) -> None:
        self.fieldname = fieldname
        self.count = count
        self.ords = np.full(count, -1, dtype=np.int32)
        self.seen: dict[bytes, int] = {}
        self.hashes: list[int] = []
        self.done = 0
        self.value: tuple[np.ndarray, np.ndarray] | None = None  # once complete

    def nbytes(self) -> int:
        # A value's bytes object, its dict slot and its hash: about 200 bytes for an URL.
        return self.ords.nbytes + 200 * len(self.seen)

    def step(self, reader: Any, budget: Budget) -> bool:
        column = _column(reader, self.fieldname)
        start, stop = self.done, min(self.done + VALUE_STEP, self.count)
        values = _whoosh.raw_column_values(column, self.count, start, stop)
        if values is None:
            values = [column[d] for d in range(start, stop)]
        seen, hashes = self.seen, self.hashes

        def ordinal(value: bytes) -> int:
            found = seen.get(value)
            if found is None:
                found = seen[value] = len(hashes)
                hashes.append(_value_hash(value))
            return found

        self.ords[start:stop] = np.fromiter(
            (ordinal(v) if v else -1 for v in values), dtype=np.int32, count=stop - start
        )
        self.done = stop
        if stop < self.count:
            return False
        self.value = (self.ords, np.array(hashes, dtype=np.int64))
        stored = _store(reader)
        if stored is not None:
            stored[0].put(stored[1], "v", self.fieldname, b"", list(self.value))
        return True

    def result(self) -> tuple[tuple[np.ndarray, np.ndarray], int]:
        return self.value, sizeof(self.value)


def _known_value_ordinals(reader: Any, fieldname: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``_value_ordinals`` if this process has them or the disk store kept them."""
    cached, found = _kept(reader, "v", fieldname)
    if cached is not None or found is None:
        return cached
    ords, hashes = found
    return _CACHE.put(("v", _segment_key(reader), fieldname), (ords, hashes))


def _kept(reader: Any, kind: str, fieldname: str) -> tuple[Any, list[np.ndarray] | None]:
    """A segment's per-field arrays of ``kind`` as this process keeps them (first), else
    as the disk store kept them (second); (None, None) when neither has them."""
    cached = _CACHE.get((kind, _segment_key(reader), fieldname))
    if cached is not None:
        return cached, None
    stored = _store(reader)
    return None, None if stored is None else stored[0].get(stored[1], kind, fieldname)


def _value_hash(value: bytes) -> int:
    """Values are compared across segments by a 64-bit hash, one that stays the same
    across processes (Python's ``hash`` does not), as the disk store keeps them: a
    collision would need billions of distinct values."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "little", signed=True)


def _lookup_instead(reader: Any, fieldname: str, hits: int) -> bool:
    """Whether to read ``hits`` values of a segment one by one rather than its whole
    column: fewer documents than the segment holds, in a process that has not yet looked
    up as many values as building the segment's ordinals once would read (a cold
    `python -m index search` must not read a million values for a thousand hits)."""
    if _known_value_ordinals(reader, fieldname) is not None:
        return False
    stored = _store(reader)
    if stored is not None and not stored[0].disabled and hits > DISTINCT_LOOKUP_LIMIT:
        return False  # built once, then kept on disk for every later process
    size = reader.doc_count_all()
    spent = _LOOKED_UP.get((_segment_key(reader), fieldname), 0)
    return hits <= DISTINCT_LOOKUP_LIMIT or (hits * 4 < size and spent + hits < size)


def _segments_key(segments: list[_Segment]) -> tuple[str, ...]:
    """The searcher's segments, whatever their deletions: what per-document value
    ordinals depend on."""
    return tuple(_segment_key(seg.reader) for seg in segments)


def _global_ordinals(segments: list[_Segment], fieldname: str, budget: Budget = UNBOUNDED) -> tuple[np.ndarray, int]:
    """Per global document number, the index of its value among all the searcher's
    distinct values, and how many there are (that number itself marks a document without
    a value): counting the distinct values of a result set is then one gather and a
    scatter into one boolean array, not a sort of its hashes."""
    key = ("g", _segments_key(segments), fieldname)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    per = [_value_ordinals(seg.reader, fieldname, budget) for seg in segments]
    budget.check()
    hashes = np.concatenate([_EMPTY_IDS, *(h for _, h in per)])
    distinct, inverse = np.unique(hashes, return_inverse=True)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int32)]
    start = 0
    for ords, seg_hashes in budget.walk(per, every=1):
        to_global = np.append(inverse[start : start + len(seg_hashes)], len(distinct)).astype(np.int32)
        start += len(seg_hashes)
        out.append(to_global[ords])  # ords == -1 picks the appended "none"
    # Segments are in offset order and their numbers contiguous: one array for all.
    ordinals = np.concatenate(out)
    return _CACHE.put(key, (ordinals, len(distinct)))


def distinct_count(searcher: Any, docnums: np.ndarray, fieldname: str, budget: Budget = UNBOUNDED) -> int:
    """How many distinct values of the sortable ``fieldname`` the documents ``docnums``
    (sorted, global) hold; a document without a value counts on its own, as collapsing
    keeps it. Values read one by one for the query are read within ``budget``."""
    segments = _segments(searcher)
    global_key = ("g", _segments_key(segments), fieldname)
    if _CACHE.get(global_key) is None:
        spans: list[tuple[int, np.ndarray]] = []
        for i, seg in enumerate(segments):
            lo, hi = np.searchsorted(docnums, [seg.offset, seg.offset + seg.reader.doc_count_all()])
            if hi > lo:
                if not seg.reader.has_column(fieldname):
                    raise Unsupported(f"no column {fieldname}")
                spans.append((i, docnums[lo:hi] - seg.offset))
        if any(_lookup_instead(segments[i].reader, fieldname, len(local)) for i, local in spans):
            return _distinct_by_lookup(segments, spans, fieldname, budget)
        # Global ordinals sort every distinct value of the index once (a tenth of a
        # second at a million documents): worth it from a process's second count on,
        # not for a one-query `python -m index search`, which hashes only its hits' values.
        if not _COUNTED.get(global_key):
            _COUNTED.put(global_key, True)
            return _distinct_by_lookup(segments, spans, fieldname, budget)
        if not all(seg.reader.has_column(fieldname) for seg in segments):
            raise Unsupported(f"no column {fieldname}")
    ordinals, size = _global_ordinals(segments, fieldname, budget)
    picked = ordinals[docnums]
    present = np.zeros(size + 1, dtype=bool)
    present[picked] = True
    return int(np.count_nonzero(present[:size])) + int(np.count_nonzero(picked == size))


def _distinct_by_lookup(
    segments: list[_Segment], spans: list[tuple[int, np.ndarray]], fieldname: str, budget: Budget
) -> int:
    """``distinct_count`` when some segment's values are read one by one (see
    ``_lookup_instead``): a read and a hash per matching document, so within ``budget``
    (a common word's first count at 10M documents read a million values, 2.9 s)."""
    parts: list[np.ndarray] = [_EMPTY_IDS]
    alone = 0
    for i, local in spans:
        reader = segments[i].reader
        if _lookup_instead(reader, fieldname, len(local)):
            key = (_segment_key(reader), fieldname)
            _LOOKED_UP.put(key, _LOOKED_UP.get(key, 0) + len(local))
            column = _column(reader, fieldname)
            found = [column[d] for d in budget.walk(local.tolist(), every=4096)]
            hashed = [_value_hash(v) for v in budget.walk(found, every=4096) if v]
            parts.append(np.array(hashed, dtype=np.int64))
            alone += len(found) - len(hashed)
        else:
            ords, hashes = _value_ordinals(reader, fieldname, budget)
            picked = ords[local]
            parts.append(hashes[picked[picked >= 0]])
            alone += int(np.count_nonzero(picked < 0))
    return _count_distinct(np.concatenate(parts)) + alone


def _count_distinct(values: np.ndarray) -> int:
    # A sort and a count of changes: np.unique's hash table is slower on large arrays.
    if not len(values):
        return 0
    ordered = np.sort(values)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _facet_ordinals(
    segments: list[_Segment], fieldname: str, budget: Budget = UNBOUNDED
) -> tuple[np.ndarray, list[str]]:
    """Per global document number, the index of its value of ``fieldname`` among all
    the searcher's shown values (-1: none): counting a result set's facet is then one
    gather and one ``bincount``, not a pass over the result set per segment."""
    key = ("f", _segments_key(segments), fieldname)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    index: dict[str, int] = {}
    parts = [np.zeros(0, dtype=np.int32)]
    for seg in segments:
        ords, shown = _ordinals(seg.reader, fieldname, budget)
        # Values are merged by what is shown, as counting them segment by segment did.
        to_global = np.array([index.setdefault(v, len(index)) for v in shown] + [-1], dtype=np.int32)
        parts.append(to_global[ords])  # ords == -1 picks the appended -1
    values = list(index)
    ordinals = np.concatenate(parts)
    return _CACHE.put(key, (ordinals, values))


def facet_counts(searcher: Any, evaluation: Evaluation, fieldname: str, budget: Budget = UNBOUNDED) -> dict[str, int]:
    """How many documents of the result set have each value of ``fieldname`` (the
    per-index ordinals built, or resumed, within ``budget``)."""
    docnums = evaluation.docnums
    if not len(docnums):
        return {}
    ordinals, values = _facet_ordinals(_segments(searcher), fieldname, budget)
    picked = ordinals[docnums]
    tally = np.bincount(picked[picked >= 0], minlength=len(values))
    return {values[i]: int(tally[i]) for i in np.flatnonzero(tally).tolist()}


def warm(searcher: Any, facets: tuple[str, ...], budget: Budget) -> None:
    """Build, within ``budget``, the per-index arrays the first searches of a process
    would otherwise build (or resume) themselves: each segment's image URL ordinals and
    the global ones (collapsed totals), the facets' ordinals, the text fields' lengths."""
    segments = _segments(searcher)
    for seg in segments:
        for fieldname, field in searcher.schema.items():
            if field.scorable:
                budget.between()
                _lengths(seg.reader, fieldname)
    if all(seg.reader.has_column("image_url") for seg in segments):
        _global_ordinals(segments, "image_url", budget)
    for fieldname in facets:
        if fieldname in searcher.schema:
            _facet_ordinals(segments, fieldname, budget)
