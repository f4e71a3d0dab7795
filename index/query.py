"""What one query may cost, and the lexicon work that keeps it bounded.

A search page is shared: one query must not hold everyone up. So a query has a budget
(its length, its number of words, a time limit checked while Whoosh collects, and a
cancel flag for a caller that has gone), and every word that stands for many index words
(``stretc*``, ``exer?ise``, ``exercise~2``, a word read with typo tolerance) is expanded
here, with Whoosh's own lexicon tools, to at most :data:`MAX_EXPANSIONS` index words, the
most frequent first. The expanded query is plain terms, which the NumPy fast path
evaluates (index.fastsearch) with the same scores as Whoosh.

Over 400 lines, as one concern: the budget and the expansion share the lexicon caches
(merged word lists, variants) and the limits that bound them.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import heapq
import itertools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from whoosh import collectors
from whoosh import query as Q
from whoosh.automata import fsa, lev
from whoosh.codec.base import Automata

from index import _whoosh, arraystore
from index.querylang import QueryError

__all__ = [
    "MAX_EXPANSIONS",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "Budget",
    "BudgetExceeded",
    "Cancelled",
    "bounded_collector",
    "check_size",
    "expand_multiterms",
    "prefix_terms",
    "terms_within",
    "transpositions",
]

MAX_QUERY_CHARS = 1_000
MAX_QUERY_TERMS = 32
MAX_FUZZY_DISTANCE = 2
# Index words one query word may stand for (the most frequent), and how many candidate
# words a wildcard may look at to find them.
MAX_EXPANSIONS = 50
MAX_SCANNED = 20_000
# Whoosh's collectors check the budget every this many matches.
CHECK_EVERY = 64


class BudgetExceeded(Exception):
    """The query used up its time; ``str()`` is the message for the user."""


class Cancelled(Exception):
    """The caller went away (a closed browser tab); nobody wants the answer."""


@dataclass
class Budget:
    """A deadline (``seconds`` from creation; ``None``: no limit) and a cancel flag."""

    seconds: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    # Shared by the searches of one server: how many may walk matches one by one in
    # Whoosh's searcher (phrases, sorted searches) at once. The others wait for a turn,
    # and the searches the NumPy path answers never do, so slow queries cannot take
    # every thread (and the interpreter lock) from the fast ones.
    slow_lane: threading.Semaphore | None = None

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the client went away")
        if self.seconds is not None and time.monotonic() - self.started > self.seconds:
            raise BudgetExceeded(f"query stopped after {self.seconds:g} s: make it more specific")

    @contextlib.contextmanager
    def slow(self) -> Iterator[None]:
        """Hold a turn in the slow lane (if any) for the block, checking the budget
        while waiting for one."""
        lane = self.slow_lane
        if lane is None:
            yield
            return
        while not lane.acquire(timeout=0.05):
            self.check()
        try:
            yield
        finally:
            lane.release()


class _Bounded(collectors.WrappingCollector):
    """Whoosh's collector, checking the budget as the matches are walked (a phrase or a
    collapse over much-shared images can walk many documents). It sits under the
    filter collector, so filtered-out matches count too."""

    def __init__(self, child: Any, budget: Budget) -> None:
        super().__init__(child)
        self.budget = budget

    def matches(self) -> Any:
        check = self.budget.check
        for n, sub_docnum in enumerate(self.child.matches()):
            if not n % CHECK_EVERY:
                check()
            yield sub_docnum

    def collect_matches(self) -> None:
        collect = self.child.collect
        for sub_docnum in self.matches():
            collect(sub_docnum)


def bounded_collector(searcher: Any, budget: Budget, **kwargs: Any) -> Any:
    allow, restrict = kwargs.pop("filter", None), kwargs.pop("mask", None)
    collector: Any = _Bounded(searcher.collector(**kwargs), budget)
    if allow is not None or restrict is not None:
        collector = collectors.FilterCollector(collector, allow, restrict)
    return collector


_WORDISH = re.compile(r"\w+")


def check_size(text: str) -> None:
    """Refuse what no person types and what would cost every other user: a pasted page
    of text, thousands of words, keeps a search thread busy long after anyone waits."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query too long: {len(text)} characters (at most {MAX_QUERY_CHARS})")
    words = len(_WORDISH.findall(text))
    if words > MAX_QUERY_TERMS:
        raise QueryError(f"query has {words} words (at most {MAX_QUERY_TERMS})")


# -- lexicon ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2048)
def _dfa(word: str, maxdist: int, prefix: int) -> Any:
    return lev.levenshtein_automaton(word, maxdist, prefix).to_dfa()


def _leaves(reader: Any) -> list[Any]:
    return [r for r, _ in reader.leaf_readers()] if hasattr(reader, "leaf_readers") else [reader]


# A reader of more segments than this has its field's words merged into one sorted list
# (once per index state): Whoosh's automaton then walks one list instead of every
# segment's term file, and word starts are one binary search.
MERGE_LEXICON_SEGMENTS = 2
# ...unless the field has more words than this (memory: roughly 100 bytes a word).
MERGED_LEXICON_WORDS = 2_000_000
_LEXICONS: OrderedDict[tuple[Any, ...], _Lexicon | None] = OrderedDict()
_LEXICONS_LOCK = threading.Lock()


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


def _merged_lexicon(reader: Any, fieldname: str) -> _Lexicon | None:
    leaves = _leaves(reader)
    key = _lexicon_key(reader)
    if key is None or len(leaves) <= MERGE_LEXICON_SEGMENTS or fieldname not in reader.schema:
        return None
    key = (key, fieldname)
    with _LEXICONS_LOCK:
        if key in _LEXICONS:
            _LEXICONS.move_to_end(key)
            return _LEXICONS[key]
        row = _lexicon_row(leaves, fieldname)
        lexicon = None if row is None else _stored_lexicon(row, fieldname)
        if lexicon is None:
            lexicon = _merge_lexicons(leaves, fieldname)
            if lexicon is not None and row is not None:
                _store_lexicon(row, fieldname, lexicon)
        _LEXICONS[key] = lexicon
        while len(_LEXICONS) > 4:
            _LEXICONS.popitem(last=False)
    return lexicon


def _merge_lexicons(leaves: list[Any], fieldname: str) -> _Lexicon | None:
    frequency: dict[str, int] = {}
    for leaf in leaves:
        for btext, info in leaf.iter_field(fieldname):
            word = _text(btext)
            frequency[word] = frequency.get(word, 0) + info.doc_frequency()
        if len(frequency) > MERGED_LEXICON_WORDS:
            return None
    return _Lexicon(sorted(frequency), frequency)


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


def terms_within(reader: Any, fieldname: str, word: str, maxdist: int, prefix: int = 0) -> set[str]:
    """Index words within ``maxdist`` edits of ``word`` (Levenshtein), found by walking
    Whoosh's Levenshtein automaton over the sorted words of the field (merged, or each
    segment's term list) -- what a segment reader's ``terms_within`` does, without the
    multi-segment reader's fallback, which scans the whole lexicon in Python."""
    if maxdist <= 0:
        return {word} if (fieldname, word) in reader else set()
    dfa = _dfa(word, maxdist, min(prefix, len(word)))
    merged = _merged_lexicon(reader, fieldname)
    if merged is not None:
        return set(fsa.find_all_matches(dfa, merged.lookup))
    found: set[str] = set()
    for leaf in _leaves(reader):
        if fieldname not in leaf.schema or not hasattr(leaf, "cursor"):
            found.update(leaf.terms_within(fieldname, word, maxdist, prefix))
            continue
        found.update(Automata.find_matches(dfa, leaf.cursor(fieldname)))
    return found


def _frequency(reader: Any, fieldname: str) -> Any:
    """A function from a word to its document frequency in ``fieldname``: the merged
    word list's when there is one, else the reader's (looked up once per call site, not
    once per word)."""
    merged = _merged_lexicon(reader, fieldname)
    if merged is not None:
        return lambda word: merged.frequency.get(word, 0)
    return lambda word: reader.doc_frequency(fieldname, word)


def _most_frequent(reader: Any, fieldname: str, words: Any, limit: int) -> list[str]:
    frequency = _frequency(reader, fieldname)
    return heapq.nlargest(limit, words, key=lambda w: (frequency(w), w))


def prefix_terms(reader: Any, fieldname: str, prefix: str, limit: int = MAX_EXPANSIONS) -> list[str]:
    """The ``limit`` most frequent index words starting with ``prefix`` (Whoosh's
    ``iter_prefix``: one pass over that range of the sorted term list, bounded)."""
    merged = _merged_lexicon(reader, fieldname)
    if merged is not None:
        scanned = itertools.islice(merged.starting_with(prefix), MAX_SCANNED)
        return heapq.nlargest(limit, scanned, key=lambda w: (merged.frequency[w], w))
    seen = itertools.islice(reader.iter_prefix(fieldname, prefix), MAX_SCANNED)
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


def expand_multiterms(q: Q.Query, reader: Any) -> Q.Query:
    """``q`` with every prefix, wildcard and fuzzy word replaced by an OR of at most
    :data:`MAX_EXPANSIONS` index words (fuzzy distance at most 2)."""
    kind = type(q)
    if kind is Q.Prefix:
        return _or(q.fieldname, prefix_terms(reader, q.fieldname, q.text), q, q.text)
    if kind is Q.FuzzyTerm:
        maxdist = max(0, min(int(q.maxdist), MAX_FUZZY_DISTANCE))
        words = terms_within(reader, q.fieldname, q.text, maxdist, q.prefixlength)
        return _or(q.fieldname, _most_frequent(reader, q.fieldname, words, MAX_EXPANSIONS), q, q.text)
    if kind is Q.Wildcard:
        pattern = re.compile(_whoosh.wildcard_pattern(q))
        literal = re.split(r"[*?]", q.text, maxsplit=1)[0]
        scanned = itertools.islice(reader.expand_prefix(q.fieldname, literal), MAX_SCANNED)
        words = [w for w in map(_text, scanned) if pattern.match(w)]
        return _or(q.fieldname, _most_frequent(reader, q.fieldname, words, MAX_EXPANSIONS), q, q.text)
    if isinstance(q, Q.MultiTerm) and not isinstance(q, (Q.Every,)):
        return q  # ranges and the like: bounded by the collector's budget
    if q.is_leaf():
        return q
    return q.apply(lambda sub: expand_multiterms(sub, reader))


# -- typo tolerance and word starts ---------------------------------------------------------------

# Edits a word may need, by its length as typed: none below TYPO_ONE letters (short words
# have too many neighbours: `bak` is `back`, `bake` and `oak`), one from TYPO_ONE, two from
# TYPO_TWO (measured on the judged query set, tests/test_search_judged.py).
TYPO_ONE, TYPO_TWO = 5, 9
# The word being typed stands for its completions too: the most frequent this many.
PREFIX_EXPANSIONS = 30
# A corrected or completed word's weight per edit, relative to the word as typed: only
# decides the order when the evaluation cannot rank in tiers (Whoosh's path).
VARIANT_WEIGHT = 0.5


def allowed_edits(length: int) -> int:
    return 0 if length < TYPO_ONE else 1 if length < TYPO_TWO else 2


def osa_distance(a: str, b: str) -> int:
    """Edit distance where two swapped neighbour letters count as one edit, as people
    type them (optimal string alignment)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def transpositions(word: str) -> set[str]:
    return {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1) if word[i] != word[i + 1]}


# Variants per index state: the lexicon of a set of segments never changes, and typing
# repeats the words before the one being typed at every keystroke.
VARIANTS_CACHE_SIZE = 4096
_VARIANTS: OrderedDict[tuple[Any, ...], dict[str, int]] = OrderedDict()
_VARIANTS_LOCK = threading.Lock()


def _lexicon_key(reader: Any) -> tuple[Any, ...] | None:
    try:
        return tuple(_whoosh.segment_key(leaf) for leaf in _leaves(reader))
    except AttributeError:  # not segment readers: no stable identity, no cache
        return None


def variants(reader: Any, fieldname: str, word: str, typed_length: int, *, typos: bool, prefix: bool) -> dict[str, int]:
    """Index words ``word`` stands for, with their cost: 0 the word itself, 1 a
    completion (``prefix``), else the edits needed (``typos``). At most
    :data:`MAX_EXPANSIONS`, cheapest then most frequent first."""
    lexicon = _lexicon_key(reader)
    key = (lexicon, fieldname, word, allowed_edits(typed_length) if typos else 0, prefix)
    if lexicon is not None:
        with _VARIANTS_LOCK:
            cached = _VARIANTS.get(key)
            if cached is not None:
                _VARIANTS.move_to_end(key)
                return cached
    found = _variants(reader, fieldname, word, typed_length, typos=typos, prefix=prefix)
    if lexicon is not None:
        with _VARIANTS_LOCK:
            _VARIANTS[key] = found
            if len(_VARIANTS) > VARIANTS_CACHE_SIZE:
                _VARIANTS.popitem(last=False)
    return found


def _variants(
    reader: Any, fieldname: str, word: str, typed_length: int, *, typos: bool, prefix: bool
) -> dict[str, int]:
    found: dict[str, int] = {}
    if (fieldname, word) in reader:
        found[word] = 0
    edits = allowed_edits(typed_length) if typos else 0
    if edits:
        # Whoosh's Levenshtein automaton finds insertions, deletions and substitutions;
        # a swap is two edits there, so each swapped spelling is looked up as well. The
        # first letter is kept, as most typos do (and it makes the walk far shorter).
        candidates = terms_within(reader, fieldname, word, edits, prefix=1)
        for swapped in transpositions(word):
            candidates |= terms_within(reader, fieldname, swapped, edits - 1, prefix=1)
        for candidate in candidates:
            cost = osa_distance(word, candidate)
            if 0 < cost <= edits and cost < found.get(candidate, 99):
                found[candidate] = cost
    if prefix and word:
        for completion in prefix_terms(reader, fieldname, word, PREFIX_EXPANSIONS):
            found.setdefault(completion, 1)
        # Typed past the stem: `resistan` is on its way to `resistance`, indexed `resist`.
        for cut in range(len(word) - 1, max(3, len(word) - 3), -1):
            if (fieldname, word[:cut]) in reader:
                found.setdefault(word[:cut], 1)
    if len(found) > MAX_EXPANSIONS:
        frequency = _frequency(reader, fieldname)
        keep = sorted(found, key=lambda w: (found[w], -frequency(w), w))[:MAX_EXPANSIONS]
        found = {w: found[w] for w in keep}
    return found


@dataclass
class Tolerance:
    """What typo tolerance did to a query: per plain word, its variants and their costs
    (for ranking in tiers), and the corrections worth telling the user about."""

    groups: list[list[tuple[str, str, int]]] = field(default_factory=list)
    corrections: dict[str, str] = field(default_factory=dict)


_PLAIN_WORD = re.compile(r'"[^"]*"|(\S+:\S*)|([^\s"():]+)')


def typed_words(text: str) -> list[str]:
    """The words typed outside quotes and outside ``field:value`` filters, in order."""
    return [m.group(2) for m in _PLAIN_WORD.finditer(text) if m.group(2)]


def tolerate(q: Q.Query, reader: Any, analyzer: Any, text: str, fieldname: str = "text") -> tuple[Q.Query, Tolerance]:
    """``q`` with each plain word of ``fieldname`` (not quoted, not a field filter, not
    negated) standing for its corrections, and the last one for its completions."""
    typed: dict[str, str] = {}
    last_stem = None
    words = typed_words(text)
    for raw in words:
        for token in analyzer(raw):
            typed.setdefault(token.text, raw)
    if words and not text.rstrip().endswith(('"', ")")):
        stems = [t.text for t in analyzer(words[-1])]
        last_stem = stems[-1] if stems else None
    tolerance = Tolerance()

    def walk(node: Q.Query) -> Q.Query:
        if type(node) is Q.Term and node.fieldname == fieldname and node.text in typed:
            raw = typed[node.text]
            found = variants(reader, fieldname, node.text, len(raw), typos=True, prefix=node.text == last_stem)
            if not found or set(found) == {node.text}:
                return node
            tolerance.groups.append([(fieldname, word, cost) for word, cost in found.items()])
            if node.text not in found:
                typo = [w for w, c in found.items() if c and (node.text != last_stem or not w.startswith(node.text))]
                if typo:
                    best = min(typo, key=lambda w: (found[w], -reader.doc_frequency(fieldname, w), w))
                    tolerance.corrections[raw] = best
            subs = [
                Q.Term(fieldname, word, boost=VARIANT_WEIGHT**cost)
                for word, cost in sorted(found.items(), key=lambda wc: (wc[1], wc[0]))
            ]
            return (
                Q.Or(subs, boost=node.boost)
                if len(subs) > 1
                else Q.Term(fieldname, subs[0].text, boost=node.boost * subs[0].boost)
            )
        if isinstance(node, (Q.Not,)):
            return node
        if isinstance(node, Q.AndNot):
            return Q.AndNot(walk(node.a), node.b, boost=node.boost)
        if node.is_leaf():
            return node
        return node.apply(walk)

    return walk(q), tolerance
