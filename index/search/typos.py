"""Typo tolerance and word starts: each plain word of a query stands for the index
words within its allowed edits, and the last one typed for its completions too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from whoosh import query as Q

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.cache import Cache
from index.search.expand import MAX_EXPANSIONS, frequency_of, lexicon_key, prefix_terms, terms_within

__all__ = ["Tolerance", "allowed_edits", "osa_distance", "tolerate", "transpositions", "typed_words", "variants"]

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
_VARIANTS: Cache[dict[str, int]] = Cache("variants", 32 * 2**20)


def variants(reader: Any, fieldname: str, word: str, typed_length: int, *, typos: bool, prefix: bool) -> dict[str, int]:
    """Index words ``word`` stands for, with their cost: 0 the word itself, 1 a
    completion (``prefix``), else the edits needed (``typos``). At most
    :data:`MAX_EXPANSIONS`, cheapest then most frequent first."""
    lexicon = lexicon_key(reader)
    key = (lexicon, fieldname, word, allowed_edits(typed_length) if typos else 0, prefix)
    if lexicon is not None:
        cached = _VARIANTS.get(key)
        if cached is not None:
            return cached
    found = _variants(reader, fieldname, word, typed_length, typos=typos, prefix=prefix)
    if lexicon is not None:
        _VARIANTS.put(key, found)
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
        frequency = frequency_of(reader, fieldname)
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
