"""The Whoosh schema: one document per image occurrence, one per page (``kind``).

Only what a query matches, filters, sorts or facets on is indexed; everything a hit
prints lives in one stored JSON field (``record``), which keeps the writer lean: the
writer is the slowest stage of the whole crawl.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from typing import Any

from whoosh import fields, formats
from whoosh.analysis import (
    CharsetFilter,
    CommaSeparatedTokenizer,
    Filter,
    IDTokenizer,
    LowercaseFilter,
    StemFilter,
    StopFilter,
    Token,
    Tokenizer,
)
from whoosh.analysis.analyzers import Analyzer
from whoosh.support.charset import accent_map
from whoosh.system import emptybytes, pack_uint

from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)
from index.model.documents import TEXT_SECTIONS

__all__ = [
    "EXACT_FIELDS",
    "SCHEMA_VERSION",
    "SURFACE_FIELD",
    "TEXT_SECTIONS",
    "BoostedText",
    "CachedAnalyzer",
    "SurfaceWords",
    "WordTokenizer",
    "index_word",
    "make_schema",
    "nfc",
    "schema_version",
]

EXACT_FIELDS = ("domain", "site", "image_host", "author", "board")

# What the index's fields and analyzers are: an index written by another version is not
# written to (index.writing.pagewriter.open_or_create refuses it with advice), since its
# documents would be analysed two ways. 2: words as written (`words`), dotted names whole
# and in parts, text in NFC.
SCHEMA_VERSION = 2
# The field of words as written, beside the stemmed `text` (see SurfaceWords).
SURFACE_FIELD = "words"


def schema_version(schema: Any) -> int:
    """The version an index's schema was made by (1: before versions were kept)."""
    return int(getattr(schema, "pages_version", 1))


def nfc(text: str) -> str:
    """``text`` in Unicode's composed form (NFC): `e` + U+0301 and `é` are one letter.

    NFC rather than NFKC: NFKC also rewrites symbols people do not type as letters
    (`theraband™` would become the one word `therabandtm`, `½` `1⁄2`), and the
    accent folding after it already meets the rest (`é` and `e`).

    >>> nfc("cafe\u0301") == "caf\u00e9"
    True
    """
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


# Letters and digits of any script with the combining marks that belong to them (left
# after NFC where no composed letter exists); pieces joined by a dot or an underscore
# make one name (`helpguide.org`, `live24x7.news`, `snake_case`). Other marks (`-`,
# `'`, `&`, emoji) separate words: `chair-exercises` is two words.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_PIECE = rf"(?:[^\W_][{_MARKS}]*)+"
_NAME = re.compile(rf"{_PIECE}(?:[._]{_PIECE})*")
_JOINER = re.compile(r"[._]")


class WordTokenizer(Tokenizer):
    """Words as :data:`_NAME` finds them, in NFC. A joined name is indexed whole and in
    its parts (`helpguide.org`, `helpguide`, `org`, the whole at its first part's
    position); a query gets its parts only: every document holding the whole holds
    them, and a phrase with the name still lines up. CamelCase stays one word
    (`HelpGuide` is `helpguide`): brands are written joined on purpose, and `YouTube`
    split would be found by `tube`.

    >>> [t.text for t in WordTokenizer()("HelpGuide.org - Live24x7", mode="index")]
    ['HelpGuide.org', 'HelpGuide', 'org', 'Live24x7']
    >>> [t.text for t in WordTokenizer()("HelpGuide.org chair-exercises")]
    ['HelpGuide', 'org', 'chair', 'exercises']
    """

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    __hash__ = object.__hash__

    def __call__(  # type: ignore[override]
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
        value = nfc(value)
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        if not tokenize:
            t.original = t.text = value
            t.boost = 1.0
            if positions:
                t.pos = start_pos
            if chars:
                t.startchar, t.endchar = start_char, start_char + len(value)
            yield t
            return
        whole = mode == "index"
        pos = start_pos
        for match in _NAME.finditer(value):
            name, at = match.group(0), match.start()
            pieces = _JOINER.split(name)
            spans = [(name, at, pos)] if whole and len(pieces) > 1 else []
            for piece in pieces:
                spans.append((piece, at, pos))
                at, pos = at + len(piece) + 1, pos + 1
            for text, startchar, position in spans:
                t.text = text
                t.boost = 1.0
                t.stopped = False
                if keeporiginal:
                    t.original = text
                if positions:
                    t.pos = position
                if chars:
                    t.startchar = start_char + startchar
                    t.endchar = t.startchar + len(text)
                yield t


class NfcFilter(Filter):
    """Tokens in NFC (for tokenizers that take the value as it is)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    __hash__ = object.__hash__

    def __call__(self, tokens):  # type: ignore[no-untyped-def]
        for t in tokens:
            t.text = nfc(t.text)
            yield t


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


class Renumber(Filter):
    """Positions counted over the words left after the stopword list (which keeps them
    as they were: ``StopFilter(renumber=False)``), so that a phrase matches across a
    stopword (`exercises for seniors`) as Whoosh's own renumbering does, and words that
    shared a position (a joined name's whole and first part) still share one."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    __hash__ = object.__hash__

    def __call__(self, tokens):  # type: ignore[no-untyped-def]
        original = pos = None
        for t in tokens:
            if t.positions and not t.stopped:
                if pos is None:
                    pos = t.pos
                elif t.pos != original:
                    pos += 1
                original, t.pos = t.pos, pos
            yield t


def text_analyzer():
    # Accent folding before stemming, so `Épinglé` and `epingle` meet on one term.
    return CachedAnalyzer(
        WordTokenizer()
        | LowercaseFilter()
        | CharsetFilter(accent_map)
        | StopFilter(renumber=False)
        | Renumber()
        | StemFilter(cachesize=50000)
    )


def surface_analyzer():
    # The text analyzer before its stopword list and stemmer: words as written.
    return CachedAnalyzer(WordTokenizer() | LowercaseFilter() | CharsetFilter(accent_map))


def exact_analyzer():
    # Exact values, but `site:youtube` should find `YouTube`.
    return IDTokenizer() | NfcFilter() | LowercaseFilter()


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


def index_word(analyzer: Any, word: str) -> str | None:
    """What one word as written is in the ``text`` field (``analyzer`` is its): its
    stem, a joined name's whole; None for a stopword.

    >>> [index_word(text_analyzer(), w) for w in ("Seated", "chair", "for", "helpguide.org")]
    ['seat', 'chair', None, 'helpguide.org']
    """
    for token in analyzer(word, mode="index"):
        return token.text
    return None


class SurfaceWords(fields.FieldType):
    """The words of the combined text as written (lowercased, accents folded, not
    stemmed, stopwords kept), each once per document, unscored.

    Typo tolerance and word starts look words up here, because people misspell the
    words they read, not their stems (`seaetd` is one edit from `seated`, two from the
    stem `seat`); each word found then stands for its stem in ``text``
    (:func:`index_word`), so a typo of one form finds every form. A query of only
    stopwords (`the`, `for`) is searched here, the one place that keeps them.

    It costs the writer about a fifth more time (bench corpus, 24k documents). Keeping
    here only the words ``text`` does not hold as they are would halve that, but a
    ``text`` word that is its own stem may be a word (`chair`) or a stem no one writes
    (`relat`), and corrections are shown as people write."""

    def __init__(self, analyzer: Any) -> None:
        self.analyzer = analyzer
        self.format = formats.Existence()
        self.scorable = False
        self.stored = False
        self.unique = False
        self.column_type = None
        self.vector = None
        self.indexed = True
        self.spelling = False

    def index(self, value, **kwargs):  # type: ignore[no-untyped-def]
        # The same value as `text`: a string or [(section, weight), ...].
        sections = [(value, 1.0)] if isinstance(value, str) else value
        words = {token.text for text, _ in sections for token in self.analyzer(text, mode="index")}
        for word in words:
            yield word.encode("utf-8"), 1, 1.0, emptybytes


def make_schema() -> fields.Schema:
    text = text_analyzer()
    exact = exact_analyzer()
    tags = fields.KEYWORD(commas=True, lowercase=True, scorable=True)
    tags.analyzer = CommaSeparatedTokenizer() | NfcFilter() | LowercaseFilter()
    schema = fields.Schema(
        id=fields.ID(unique=True, stored=True),
        kind=fields.ID(stored=True),
        page_url=fields.ID(stored=True),
        image_url=fields.ID(sortable=True),
        headline=fields.TEXT(analyzer=text, field_boost=TEXT_SECTIONS["headline"]),
        title=fields.TEXT(analyzer=text, field_boost=TEXT_SECTIONS["title"]),
        caption=fields.TEXT(analyzer=text),
        alt=fields.TEXT(analyzer=text),
        tags=tags,
        domain=fields.ID(analyzer=exact, sortable=True),
        site=fields.ID(analyzer=exact, sortable=True),
        image_host=fields.ID(analyzer=exact, sortable=True),
        author=fields.ID(analyzer=exact, sortable=True),
        board=fields.ID(analyzer=exact, sortable=True),
        date=fields.DATETIME(sortable=True),
        # Positions are not kept: phrases are matched in the separate fields above.
        text=BoostedText(analyzer=text, phrase=False),
        words=SurfaceWords(surface_analyzer()),
        record=fields.STORED(),
    )
    schema.pages_version = SCHEMA_VERSION  # pickled with the schema into the index
    return schema
