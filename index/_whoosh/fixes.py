"""Two performance fixes and one correctness fix for Whoosh 2.7 (whoosh-reloaded 2.7.5), applied once by
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
"""

from __future__ import annotations

from typing import Any

from whoosh import index as whoosh_index
from whoosh.codec import whoosh3
from whoosh.filedb import structfile

_MISSING = object()


def _cached_reader(self: Any, fieldname: str, column: Any) -> Any:
    reader = self._readers.get(fieldname, _MISSING)
    if reader is _MISSING:
        reader = self.column_reader(fieldname, column) if self.has_column(fieldname) else None
        self._readers[fieldname] = reader
    return reader


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
