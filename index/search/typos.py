"""Typo tolerance and word starts: each plain word of a query stands for the index
words within its allowed edits, and the last one typed for its completions too.

Both are worked out on the words as written (the ``words`` field,
index.model.schema.SurfaceWords), because people misspell the words they read, not
their stems: `seaetd` is one edit from `seated`, two from the stem `seat`. Each word
found stands for its stem in ``text``, so a typo of one form finds every form. An index
without that field (an older schema) is searched on its stems, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from whoosh import query as Q

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.cache import Cache
from index.model.schema import SURFACE_FIELD, index_word, nfc
from index.search.budget import Budget
from index.search.expand import MAX_EXPANSIONS, frequency_of, lexicon_key, prefix_terms, terms_within

__all__ = [
    "PLAIN_WORD",
    "Tolerance",
    "allowed_edits",
    "osa_distance",
    "tolerate",
    "transpositions",
    "typed_words",
    "variants",
    "variants_and_spellings",
    "written_rank",
    "written_within",
]

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
_VARIANTS: Cache[tuple[dict[str, int], dict[str, str]]] = Cache("variants", 32 * 2**20)


def variants(
    reader: Any, fieldname: str, word: str, typed_length: int, *, typos: bool, prefix: bool, **more: Any
) -> dict[str, int]:
    """Index words ``word`` stands for, with their cost: 0 the word itself, 1 a
    completion (``prefix``), else the edits needed (``typos``). At most
    :data:`MAX_EXPANSIONS`, cheapest then most frequent first. ``more``: see
    :func:`variants_and_spellings`."""
    return variants_and_spellings(reader, fieldname, word, typed_length, typos=typos, prefix=prefix, **more)[0]


def variants_and_spellings(
    reader: Any,
    fieldname: str,
    word: str,
    typed_length: int,
    *,
    typos: bool,
    prefix: bool,
    surface: str | None = None,
    analyzer: Any = None,
    budget: Budget | None = None,
) -> tuple[dict[str, int], dict[str, str]]:
    """:func:`variants`, and for each variant found as a correction the word as
    written it was found as (what the user is told).

    With ``surface`` (the word as typed, lowercased) and the ``analyzer`` of
    ``fieldname``, and an index that keeps words as written, corrections and
    completions are looked up among those and stand for their stems. The lexicon walks
    look at ``budget`` as they go."""
    lexicon = lexicon_key(reader)
    by_surface = surface is not None and analyzer is not None and SURFACE_FIELD in reader.schema
    edits = allowed_edits(typed_length) if typos else 0
    key = (lexicon, fieldname, word, surface if by_surface else None, edits, prefix)
    if lexicon is not None:
        cached = _VARIANTS.get(key)
        if cached is not None:
            return cached
    if by_surface and surface is not None:
        found = _surface_variants(reader, fieldname, word, surface, edits, prefix, analyzer, budget)
    else:
        found = (_variants(reader, fieldname, word, edits, prefix=prefix, budget=budget), {})
    if lexicon is not None:
        _VARIANTS.put(key, found)
    return found


# Index words near a typed word, per index state: the suggestion for a search that found
# nothing looks up what its typo tolerance has just looked up.
_NEAR: Cache[frozenset[str]] = Cache("near words", 16 * 2**20)


def _within(reader: Any, fieldname: str, word: str, edits: int, budget: Budget | None, first: int) -> frozenset[str]:
    """Index words within ``edits`` of ``word`` (a swap of neighbours is one edit):
    Whoosh's Levenshtein automaton finds insertions, deletions and substitutions, and
    a swap is two edits there, so each swapped spelling is looked up as well. The first
    ``first`` letters are kept (it makes the walk far shorter)."""
    lexicon = lexicon_key(reader)
    key = (lexicon, fieldname, word, edits, first)
    found = _NEAR.get(key) if lexicon is not None else None
    if found is not None:
        return found
    candidates = terms_within(reader, fieldname, word, edits, prefix=first, budget=budget)
    for swapped in transpositions(word):
        if budget is not None:
            budget.check()
        candidates |= terms_within(reader, fieldname, swapped, edits - 1, prefix=min(first, 1), budget=budget)
    found = frozenset(candidates)
    if lexicon is not None:
        _NEAR.put(key, found)
    return found


def _variants(
    reader: Any, fieldname: str, word: str, edits: int, *, prefix: bool, budget: Budget | None
) -> dict[str, int]:
    found: dict[str, int] = {}
    if (fieldname, word) in reader:
        found[word] = 0
    if edits:
        for candidate in _within(reader, fieldname, word, edits, budget, first=1):
            cost = osa_distance(word, candidate)
            if 0 < cost <= edits and cost < found.get(candidate, 99):
                found[candidate] = cost
    if prefix and word:
        for completion in prefix_terms(reader, fieldname, word, PREFIX_EXPANSIONS, budget):
            found.setdefault(completion, 1)
        # Typed past the stem: `resistan` is on its way to `resistance`, indexed `resist`.
        for cut in range(len(word) - 1, max(3, len(word) - 3), -1):
            if (fieldname, word[:cut]) in reader:
                found.setdefault(word[:cut], 1)
    return _cheapest(reader, fieldname, found)


def _cheapest(reader: Any, fieldname: str, found: dict[str, int]) -> dict[str, int]:
    if len(found) > MAX_EXPANSIONS:
        frequency = frequency_of(reader, fieldname)
        keep = sorted(found, key=lambda w: (found[w], -frequency(w), w))[:MAX_EXPANSIONS]
        found = {w: found[w] for w in keep}
    return found


def written_within(reader: Any, word: str, edits: int, budget: Budget | None = None) -> set[str]:
    """Words as written within ``edits`` of ``word`` (a swap is one edit). The first
    letter may be the typo too (`xhair`), within one edit; a second edit keeps it, which
    keeps that walk short."""
    found = set(_within(reader, SURFACE_FIELD, word, 1, budget, first=0)) if edits else set()
    if edits > 1:
        found |= _within(reader, SURFACE_FIELD, word, edits, budget, first=1)
    return found


def written_rank(reader: Any, word: str) -> Any:
    """A sort key ranking words as written close to ``word`` best first: fewest edits,
    then the most frequent."""
    frequency = frequency_of(reader, SURFACE_FIELD)
    return lambda candidate: (osa_distance(word, candidate), -frequency(candidate), candidate)


def _surface_variants(
    reader: Any,
    fieldname: str,
    stem: str,
    surface: str,
    edits: int,
    prefix: bool,
    analyzer: Any,
    budget: Budget | None,
) -> tuple[dict[str, int], dict[str, str]]:
    found: dict[str, int] = {}
    spelled: dict[str, Any] = {}  # stem → the rank of its closest word as written
    if (fieldname, stem) in reader:
        found[stem] = 0
    if edits:
        rank = written_rank(reader, surface)
        for candidate in written_within(reader, surface, edits, budget):
            cost = osa_distance(surface, candidate)
            target = index_word(analyzer, candidate) if 0 < cost <= edits else None
            if target is None or target == stem or (fieldname, target) not in reader:
                continue
            if cost < found.get(target, 99):
                found[target] = cost
            if target not in spelled or rank(candidate) < spelled[target]:
                spelled[target] = rank(candidate)
    if prefix and surface:
        for completion in prefix_terms(reader, SURFACE_FIELD, surface, PREFIX_EXPANSIONS, budget):
            target = index_word(analyzer, completion)
            if target is not None and (fieldname, target) in reader:
                found.setdefault(target, 1)
    found = _cheapest(reader, fieldname, found)
    return found, {target: r[-1] for target, r in spelled.items() if target in found}


@dataclass
class Tolerance:
    """What typo tolerance did to a query: per plain word, its variants and their costs
    (for ranking in tiers), and the corrections worth telling the user about."""

    groups: list[list[tuple[str, str, int]]] = field(default_factory=list)
    corrections: dict[str, str] = field(default_factory=dict)


# A typed word outside quotes and ``field:value`` filters is group 2.
PLAIN_WORD = re.compile(r'"[^"]*"|(\S+:\S*)|([^\s"():]+)')


def typed_words(text: str) -> list[str]:
    """The words typed outside quotes and outside ``field:value`` filters, in order."""
    return [m.group(2) for m in PLAIN_WORD.finditer(nfc(text)) if m.group(2)]


def tolerate(
    q: Q.Query, reader: Any, analyzer: Any, text: str, fieldname: str = "text", budget: Budget | None = None
) -> tuple[Q.Query, Tolerance]:
    """``q`` with each plain word of ``fieldname`` (not quoted, not a field filter, not
    negated) standing for its corrections, and the last one for its completions."""
    surface_field = reader.schema[SURFACE_FIELD] if SURFACE_FIELD in reader.schema else None  # noqa: SIM401
    # Per index word: the word as typed (for the user), as written (lowercased: what is
    # looked up) and its length (the edits it may need).
    typed: dict[str, tuple[str, str | None, int]] = {}
    last_stem = None
    for raw in typed_words(text):
        pieces = list(surface_field.process_text(raw, mode="query")) if surface_field is not None else [raw]
        for piece in pieces:
            for token in analyzer(piece):
                typed.setdefault(token.text, (raw, piece if surface_field is not None else None, len(piece)))
                last_stem = token.text
    if text.rstrip().endswith(('"', ")")):
        last_stem = None
    tolerance = Tolerance()

    def walk(node: Q.Query) -> Q.Query:
        if type(node) is Q.Term and node.fieldname == fieldname and node.text in typed:
            raw, surface, length = typed[node.text]
            found, spelled = variants_and_spellings(
                reader,
                fieldname,
                node.text,
                length,
                typos=True,
                prefix=node.text == last_stem,
                surface=surface,
                analyzer=analyzer,
                budget=budget,
            )
            if not found or set(found) == {node.text}:
                return node
            tolerance.groups.append([(fieldname, word, cost) for word, cost in found.items()])
            if node.text not in found:
                typo = (
                    list(spelled)
                    if surface is not None
                    else [w for w, c in found.items() if c and (node.text != last_stem or not w.startswith(node.text))]
                )
                if typo:
                    best = min(typo, key=lambda w: (found[w], -reader.doc_frequency(fieldname, w), w))
                    tolerance.corrections[raw] = spelled.get(best, best)
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
