"""Three performance fixes and one correctness fix for Whoosh 2.7 (whoosh-reloaded 2.7.5), applied once by
:func:`index._whoosh.apply` (which importing :mod:`index._whoosh` calls).

1. While flushing a segment, Whoosh asks for the field length of *every posting*. For
   fields that keep no lengths (ID, KEYWORD without scoring: `id`, `kind`, `domain`,
   `site`, ...) ``W3PerDocReader._cached_reader`` caches nothing and checks the file system
   again for each posting: one ``stat`` per posting, about 20% of the writer's time on our
   schema (profile in bench/RESULTS.md). A segment's files never change once written, so
   remembering "this column does not exist" is safe; results are identical.

2. A segment is one compound file, memory-mapped; but Whoosh opens each file inside it as
   ``BufferFile``, whose ``BytesIO(buf)`` *copies* that part of the map into private
   memory. Every reader -- each search process, each merge in the writer -- so held a copy
   of the postings and columns it touched: 1.1 GB just to open a 1M-document index. Here
   the file reads the map in place (a read-only cursor over the memoryview); the bytes
   read are the same.

3. A refreshed searcher (``Searcher.refresh``, what the search page and the resident
   server do on every request) reuses the readers of the segments it already had, matched
   by segment id only: deletions a refresh crawl made in such a segment were never seen
   (deleted pages kept showing until a restart), and whoosh-reloaded also put back the
   segments a merge had replaced (every merged document twice). Here a reader is reused
   only for a segment of the new table of contents whose deletions are the same.

4. Each segment reader kept its own column readers (stored fields, lengths) for its life,
   each holding a copy of the column's per-document offsets and lengths (4-12 bytes a
   document); every server thread has its own searcher, so each thread held a copy. Here
   the readers of one segment share one column reader, kept in a bounded cache
   (``index._whoosh.shared_column``).
"""

from __future__ import annotations

import os
from typing import Any

from whoosh import index as whoosh_index
from whoosh.codec import whoosh3
from whoosh.filedb import structfile

_MISSING = object()


class _Shared(tuple):
    """In a per-document reader's own map: this column is read through
    ``index._whoosh.shared_column``, under this key."""


def _cached_reader(self: Any, fieldname: str, column: Any) -> Any:
    reader = self._readers.get(fieldname, _MISSING)
    if type(reader) is _Shared:
        return _shared(reader, self, fieldname, column)
    if reader is _MISSING:
        reader = self.column_reader(fieldname, column) if self.has_column(fieldname) else None
        key = None if reader is None else _shared_key(self, fieldname)
        if key is not None:
            # Fix 4: one reader of a column per segment for all its readers, bounded.
            self._readers[fieldname] = key
            return _shared(key, self, fieldname, column, reader)
        self._readers[fieldname] = reader
    return reader


def _shared_key(perdoc: Any, fieldname: str) -> _Shared | None:
    """The segment's column across readers (its folder, segment id and column), when its
    column file reads the segment's map (a reader then outlives its own reader's close)."""
    storage = getattr(perdoc._storage, "b", perdoc._storage)
    folder = getattr(storage, "folder", None)
    colfile = perdoc._colfiles.get(fieldname, (None,))[0]
    if not isinstance(folder, str) or not hasattr(colfile, "_buf"):
        return None
    return _Shared(("whoosh", os.path.abspath(folder), perdoc._segment.segment_id(), fieldname))


def _shared(key: _Shared, perdoc: Any, fieldname: str, column: Any, built: Any = None) -> Any:
    from index import _whoosh

    return _whoosh.shared_column(key, lambda: built if built is not None else perdoc.column_reader(fieldname, column))


class MemoryCursor:
    """The part of ``io.BytesIO`` that ``StructFile`` uses, over a buffer, without a copy."""

    def __init__(self, buf: Any) -> None:
        self._buf = memoryview(buf)
        self._pos = 0
        self.closed = False

    def read(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = len(self._buf) if size is None or size < 0 else min(len(self._buf), start + size)
        self._pos = max(start, end)
        return bytes(self._buf[start:end])

    def peek(self, size: int = 0) -> bytes:
        # With peek, pickle.load reads ahead in one call instead of one read per opcode
        # (a posting block header is a small pickle: most of a cold search's reads).
        start = self._pos
        return bytes(self._buf[start : start + min(max(size, 1), 4096)])

    def readline(self, size: int | None = -1) -> bytes:
        buf = self._buf
        end = len(buf) if size is None or size < 0 else min(len(buf), self._pos + size)
        start = self._pos
        pos = start
        while pos < end:
            pos += 1
            if buf[pos - 1] == 10:
                break
        self._pos = pos
        return bytes(buf[start:pos])

    def __iter__(self) -> Any:
        while line := self.readline():
            yield line

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._buf))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._buf.release()


def _buffer_file_init(self: Any, buf: Any, name: Any = None, onclose: Any = None) -> None:
    self._buf = buf
    self._name = name
    self.file = MemoryCursor(buf)
    self.onclose = onclose
    self.is_real = False
    self.is_closed = False


def _reader(cls: Any, storage: Any, schema: Any, segments: list[Any], generation: int, reuse: Any = None) -> Any:
    """``FileIndex._reader``: the segments of the table of contents, each read by the
    reader ``reuse`` had for it when its deletions are unchanged, else by a new one."""
    from whoosh.reading import EmptyReader, MultiReader, SegmentReader

    if not segments:
        return EmptyReader(schema)
    reusable: dict[str, Any] = {}
    if reuse is not None:
        for r, _ in reuse.leaf_readers():
            segment = r.segment()
            if segment is not None:
                reusable[segment.segment_id()] = r

    def segreader(segment: Any) -> Any:
        r = reusable.get(segment.segment_id())
        if r is not None and r.segment().deleted_count() == segment.deleted_count():
            del reusable[segment.segment_id()]
            return r
        return SegmentReader(storage, schema, segment, generation=generation)

    try:
        if len(segments) == 1:
            return segreader(segments[0])
        return MultiReader([segreader(segment) for segment in segments], generation=generation)
    finally:
        for r in reusable.values():  # the old searcher's readers nobody took over
            r.close()


def apply() -> None:
    """Patch Whoosh's classes (idempotent)."""
    whoosh3.W3PerDocReader._cached_reader = _cached_reader
    structfile.BufferFile.__init__ = _buffer_file_init
    whoosh_index.FileIndex._reader = classmethod(_reader)
