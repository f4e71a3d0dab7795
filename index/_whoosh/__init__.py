"""Everything that depends on Whoosh's private API, in one place.

Written against whoosh-reloaded 2.7.5 (pyproject.toml pins it below 2.8): an upgrade is
checked here and nowhere else.

- :mod:`index._whoosh.fixes`: two performance fixes patched into Whoosh's classes,
  applied once by :func:`apply`, which importing this module calls (every module of the
  package that imports Whoosh imports this one, so searchers and writers read segments
  the same way);
- :mod:`index._whoosh.mpwriter`: the multiprocess writer made safe to fail;
- below: what the project keeps *about* Whoosh objects (in weak maps, so it goes when
  they go, instead of attributes set on them) and read-only accessors for the private
  parts the NumPy search path (:mod:`index.fast.arrays`) and the query budget
  (:mod:`index.search.budget`) read.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = [
    "apply",
    "bm25_params",
    "bound_searcher_caches",
    "column_bytes",
    "column_reader",
    "is_segment_reader",
    "length_codes",
    "per_searcher",
    "posting_blocks",
    "raw_column_values",
    "searcher_serial",
    "segment_key",
    "shared_column",
    "wildcard_pattern",
]

T = TypeVar("T")

_applied = False


def apply() -> None:
    """Apply :mod:`index._whoosh.fixes` (once; later calls do nothing)."""
    global _applied
    if _applied:
        return
    from index._whoosh import fixes

    fixes.apply()
    _applied = True


# -- per-object data, in weak maps ---------------------------------------------------------

_SERIAL = itertools.count()
_SERIALS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_PER_SEARCHER: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def searcher_serial(searcher: Any) -> int:
    """A number no other searcher of this process has had: a cache key that changes when
    a refresh hands out a new searcher (``id()`` may be reused once one is freed)."""
    serial = _SERIALS.get(searcher)
    if serial is None:
        serial = _SERIALS[searcher] = next(_SERIAL)
    return serial


def per_searcher(searcher: Any, name: str, build: Callable[[], T]) -> T:
    """``build()``'s result, computed once per searcher and dropped with it.

    The value must not hold ``searcher`` itself strongly, or the searcher is never freed
    (a weak map's value keeps its key alive). Whoosh's sub-searchers refer to their
    parent weakly, but a one-segment searcher is its own only leaf
    (``leaf_searchers() == [(searcher, 0)]``): keep a ``weakref.proxy`` of it then."""
    data = _PER_SEARCHER.get(searcher)
    if data is None:
        data = _PER_SEARCHER[searcher] = {}
    if name not in data:
        data[name] = build()
    return data[name]


# Whoosh's searchers remember every term's idf in a dict of their own (shared with their
# sub-searchers) for their whole life: a server's searcher lives until the next commit, and
# word-start and typo queries score thousands of words each, so the dict grew with every
# new word asked. Kept in one bounded cache instead, keyed by the searcher's serial.
IDF_CACHE_BYTES = 16 * 2**20
_IDF_SEEN = threading.local()
# The caches below, made on first use (the crawl imports this module too, without
# NumPy), once, by name.
_MADE: dict[str, Any] = {}
_MAKING = threading.Lock()


def _shared_cache(name: str, max_bytes: Callable[[], int] | int, **options: Any) -> Any:
    """The index.cache.Cache called ``name``, made with ``max_bytes`` (or what calling it
    gives) and ``options`` the first time it is asked for."""
    found = _MADE.get(name)
    if found is None:
        from index.cache import Cache

        with _MAKING:
            found = _MADE.get(name)
            if found is None:
                bound = max_bytes() if callable(max_bytes) else max_bytes
                found = _MADE[name] = Cache(name, bound, **options)
    return found


def _idf_cache() -> Any:
    # An entry: the key tuples, the term's text, a float, the LRU's node (measured).
    return _shared_cache("idf", IDF_CACHE_BYTES, entry_bytes=200)


class _Idf:
    """The dict protocol Whoosh's ``Searcher.idf`` uses (``in``, ``[]``, ``[]=``) over the
    shared cache; what ``in`` found is kept for the ``[]`` that follows, so an eviction by
    another thread in between cannot fail it."""

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.cache = _idf_cache()

    def __contains__(self, term: Any) -> bool:
        value = self.cache.get((self.serial, term))
        _IDF_SEEN.last = (self.serial, term, value)
        return value is not None

    def __getitem__(self, term: Any) -> Any:
        last = getattr(_IDF_SEEN, "last", None)
        if last is not None and last[0] == self.serial and last[1] == term and last[2] is not None:
            return last[2]
        value = self.cache.get((self.serial, term))
        if value is None:
            raise KeyError(term)
        return value

    def __setitem__(self, term: Any, value: Any) -> None:
        self.cache.put((self.serial, term), value, 0)


def bound_searcher_caches(searcher: Any) -> None:
    """Keep what ``searcher`` would remember for its whole life in the shared bounded
    caches instead: its (and its sub-searchers') idf values, and its schema's analyzers'
    memories of words (idempotent)."""
    if isinstance(searcher._idf_cache, _Idf):
        return
    idf = _Idf(searcher_serial(searcher))
    searcher._idf_cache = idf
    for sub, _ in getattr(searcher, "subsearchers", None) or ():
        sub._idf_cache = idf
    _bound_analyzers(searcher.schema)


# Each searcher unpickles its own schema, and with it its own analyzers, each of which
# remembers up to 50,000 words (index.model.schema.CachedAnalyzer's tokens, Whoosh's
# StemFilter's stems): a copy per server thread, bounded in words, not bytes. A
# searcher's analyzers use these two shared caches instead (the writer keeps its own).
WORDS_CACHE_BYTES = 16 * 2**20


class _SharedWords:
    """The part of a dict CachedAnalyzer uses, over a shared cache: never full (the
    shared cache evicts by bytes), never cleared by one analyzer."""

    def __init__(self, cache: Any, prefix: str) -> None:
        self.cache, self.prefix = cache, prefix

    def get(self, key: Any, default: Any = None) -> Any:
        return self.cache.get((self.prefix, key), default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.cache.put((self.prefix, key), value)

    def __len__(self) -> int:
        return 0

    def clear(self) -> None:
        pass


def _word_cache(name: str) -> Any:
    # An entry beyond its key's and value's objects: the LRU's node and tuple (measured).
    return _shared_cache(name, WORDS_CACHE_BYTES, entry_bytes=100)


def _bound_analyzers(schema: Any) -> None:
    from whoosh.analysis import StemFilter

    from index.model import schema as schema_module

    for name in schema.names():
        analyzer = getattr(schema[name], "analyzer", None)
        if isinstance(analyzer, schema_module.CachedAnalyzer):
            if not isinstance(schema_module._CACHES.get(analyzer), _SharedWords):
                schema_module._CACHES[analyzer] = _SharedWords(_word_cache("analyzed words"), repr(analyzer.inner))
            analyzer = analyzer.inner
        for part in getattr(analyzer, "items", ()):
            if isinstance(part, StemFilter) and not getattr(part._stem, "shared", False):
                part._stem = _shared_stem(part)


def _shared_stem(part: Any) -> Callable[[str], str]:
    stems = _word_cache("stems")
    stem = part.stemfn
    if part.lang:
        from whoosh.lang import stemmer_for_language

        stem = stemmer_for_language(part.lang)
    prefix = f"{part.lang}:{getattr(stem, '__qualname__', stem)!r}"

    def shared(word: str) -> str:
        found = stems.get((prefix, word))
        if found is None:
            found = stems.put((prefix, word), stem(word))
        return found

    shared.shared = True  # type: ignore[attr-defined]
    return shared


# -- private parts read by the NumPy search path ---------------------------------------------


def is_segment_reader(reader: Any) -> bool:
    """A reader of one W3 segment, the only kind the accessors below understand."""
    return hasattr(reader, "_terms") and hasattr(reader, "_perdoc")


def posting_blocks(reader: Any, fieldname: str, btext: bytes) -> Iterator[tuple[Any, Any]]:
    """A term's postings in one segment, one (document numbers, weights) block at a time
    as NumPy arrays (Whoosh's blocks, deletions included), without a Matcher call per
    posting. The term must be in the segment.

    A block's document numbers are stored as differences; Whoosh adds them up in a
    Python generator (most of a cold search's time on a common word), here one
    ``cumsum`` does."""
    import numpy as np

    matcher = reader._terms.matcher(fieldname, btext, reader.schema[fieldname].format, scorer=None)
    if not hasattr(matcher, "_read_data"):  # postings inlined in the term info
        pairs = []
        while matcher.is_active():
            pairs.append((matcher.id(), matcher.weight()))
            matcher.next()
        yield np.array([i for i, _ in pairs], dtype=np.int64), np.array([w for _, w in pairs], dtype=np.float64)
        return
    while matcher.is_active():
        if matcher._data is None:
            matcher._read_data()
        raw_ids, raw_weights = matcher._data[0], matcher._data[1]
        ids = np.array(raw_ids, dtype=np.int64)
        if not matcher._byteids:
            np.cumsum(ids, out=ids)
        count = matcher._blocklength
        if raw_weights is None:
            weights = np.ones(count)
        elif isinstance(raw_weights, float):
            weights = np.full(count, raw_weights)
        else:
            weights = np.array(raw_weights, dtype=np.float64)
        yield ids, weights
        matcher._next_block()


def length_codes(reader: Any, fieldname: str, count: int) -> bytes | None:
    """The one-byte length codes of ``fieldname`` for the segment's first documents (at
    most ``count``; fewer when the column is shorter), straight from the memory-mapped
    column; None when the field keeps no such column (decode with
    ``whoosh.util.numeric.byte_to_length``)."""
    from whoosh.codec.whoosh3 import LENGTHS_COLUMN, _lenfield

    column = reader._perdoc._cached_reader(_lenfield(fieldname), LENGTHS_COLUMN)
    if column is None or not hasattr(column, "_basepos"):
        return None
    return column._dbfile.get(column._basepos, min(column._count, count))


def bm25_params(weighting: Any, fieldname: str) -> tuple[float, float]:
    """(B, K1) of a ``BM25F`` weighting for one field (its per-field B, else the default)."""
    return weighting._field_B.get(fieldname, weighting.B), weighting.K1


def wildcard_pattern(q: Any) -> str:
    """The regular expression a ``Wildcard`` (or ``Prefix``/``Regex``-like) query matches
    index words against: Whoosh's own translation of ``*`` and ``?``."""
    return q._get_pattern()


# -- raw columns ---------------------------------------------------------------------------


@functools.cache
def _fast_varbytes_column() -> type:
    """Whoosh's variable-bytes column, opened without its Python loop: a segment under
    32,768 documents stores no offsets, and Whoosh adds its lengths up one by one on
    every open (most of a cold search's time, with one column per segment). Built on
    first use (NumPy is the search's, not the crawl's), once."""
    import array
    import struct

    import numpy as np
    from whoosh import columns

    class Reader(columns.VarBytesColumn.Reader):
        def _read_offsets_and_lengths(self) -> None:
            dbfile, doccount = self._dbfile, self._doccount
            lastbyte = self._basepos + self._length - 1
            lens_code = chr(dbfile.get_byte(lastbyte))
            if lens_code == "X":  # offsets stored: Whoosh reads them as one array
                super()._read_offsets_and_lengths()
                return
            lenstart = lastbyte - struct.calcsize(lens_code) * doccount
            self._lengths = dbfile.get_array(lenstart, lens_code, doccount)
            sizes = np.frombuffer(self._lengths.tobytes(), dtype=np.dtype(lens_code).newbyteorder("="))
            starts = np.zeros(doccount, dtype=np.int64)
            np.cumsum(sizes[:-1], out=starts[1:])
            self._offsets = array.array("q", starts.tobytes())

    class Column(columns.VarBytesColumn):
        pass

    Column.Reader = Reader
    return Column


def column_reader(reader: Any, fieldname: str) -> Any:
    """A segment's raw (untranslated) column reader of ``fieldname``; a variable-bytes
    column opened without Whoosh's per-document Python loop."""
    from whoosh import columns

    own = type(reader.schema[fieldname].column_type) is columns.VarBytesColumn
    return reader.column_reader(fieldname, column=_fast_varbytes_column()() if own else None, translate=False)


# Variable-bytes column readers (stored fields, the raw columns collapsing reads), one per
# segment and column for every reader of it: opening one copies the column's per-document
# offsets and lengths out of the map (4-12 bytes a document), and each server thread has
# its own searcher, so kept per reader they were a copy per thread (96 MB for two searchers
# at 10M documents) and, with Whoosh's own, held for the reader's life. Bounded by
# $PAGES_COLUMN_CACHE_MB (256 MiB: every column a search reads at 10M documents); an
# evicted reader is opened again when next asked for. A reader reads its segment's map
# (kept open while any reader of it exists), without a file position: safe to share.
COLUMN_CACHE_MB = 256


def _column_bound() -> int:
    from index.options import megabytes_from_env

    return megabytes_from_env("PAGES_COLUMN_CACHE_MB", COLUMN_CACHE_MB, minimum=1)


def shared_column(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """The column reader kept under ``key`` (a segment's identity and the column's), else
    ``build()``'s, kept."""
    cache = _shared_cache("columns", _column_bound, sizer=column_bytes)
    found = cache.get(key)
    if found is None:
        found = cache.put(key, build())
    return found


def column_bytes(column: Any) -> int:
    """What a column reader keeps in memory: its per-document offsets and lengths (the
    values themselves stay in the segment's map), and the reader objects."""
    total = 400
    for name in ("_offsets", "_lengths"):
        part = getattr(column, name, None)
        if part is not None and hasattr(part, "itemsize"):
            total += len(part) * part.itemsize + 64
    inner = getattr(column, "_child", None)  # wrapping readers: a pickle or translating column
    if inner is None:
        inner = getattr(column, "_reader", None)
    return total + (column_bytes(inner) if inner is not None else 0)


def raw_column_values(column: Any, count: int, start: int = 0, stop: int | None = None) -> list[bytes] | None:
    """Values ``start`` to ``stop`` (default: all ``count``) of a variable-bytes column
    reader (``column_reader``) from one read of their data, sliced here, instead of a
    file read per document; None when the column is of another kind (read it value by
    value)."""
    import numpy as np

    lengths = getattr(column, "_lengths", None)
    offsets = getattr(column, "_offsets", None)
    if lengths is None or offsets is None or not hasattr(column, "_basepos") or len(lengths) != count:
        return None
    stop = count if stop is None else min(stop, count)
    if start >= stop:
        return []
    sizes = np.asarray(lengths[start:stop], dtype=np.int64)
    begins = np.asarray(offsets[start:stop], dtype=np.int64)
    first = int(begins[0])
    data = column._dbfile.get(column._basepos + first, int(begins[-1] + sizes[-1]) - first)
    begins -= first
    return [data[o : o + n] if n else b"" for o, n in zip(begins.tolist(), sizes.tolist(), strict=True)]


_SEGMENT_KEYS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def segment_key(reader: Any) -> str:
    """A segment reader's identity across searchers: its index folder and segment id (a
    segment's files never change once written; deletions are applied per reader).

    Not the storage object's repr: a compound segment reads through an overlay storage
    made anew by each searcher, whose repr is its address, so every searcher (one per
    server thread, and a thread pool replaces idle threads) had keys of its own and
    decoded and cached every array again, a server's memory growing storm after storm."""
    key = _SEGMENT_KEYS.get(reader)
    if key is None:
        location = segment_location(reader)
        if location is not None:
            key = f"{os.path.abspath(location[0])}:{location[1]}"
        else:  # in memory (tests): the index's own storage object, shared by its searchers
            storage = reader.storage()
            key = f"{getattr(storage, 'b', storage)!r}:{reader.segment().segment_id()}"
        _SEGMENT_KEYS[reader] = key
    return key


def segment_location(reader: Any) -> tuple[str, str] | None:
    """A segment reader's index folder and segment id (``MAIN_<id>``, its files' stem),
    or None when its storage is not a folder (tests' RAM storage)."""
    storage = reader.storage()
    storage = getattr(storage, "b", storage)  # a compound segment reads through an overlay
    folder = getattr(storage, "folder", None)
    if not isinstance(folder, str):
        return None
    return folder, reader.segment().segment_id()


def term_doc_frequency(reader: Any, fieldname: str, btext: bytes) -> int:
    """How many documents of the segment hold the term (0: none), from its term info
    alone."""
    from whoosh.reading import TermNotFound

    try:
        return reader._terms.doc_frequency(fieldname, btext)
    except (KeyError, TermNotFound):
        return 0


# Last, once the accessors above exist: whoever imports Whoosh through the project gets the fixes.
apply()
