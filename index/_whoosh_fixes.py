"""One performance fix for Whoosh 2.7 (whoosh-reloaded 2.7.5), applied on import.

While flushing a segment, Whoosh asks for the field length of *every posting*. For fields
that keep no lengths (ID, KEYWORD without scoring: `id`, `kind`, `domain`, `site`, ...)
``W3PerDocReader._cached_reader`` caches nothing and checks the file system again for each
posting: one ``stat`` per posting, about 20% of the writer's time on our schema (profile in
bench/RESULTS.md). A segment's files never change once written, so remembering "this
column does not exist" is safe; results are identical.
"""

from __future__ import annotations

from typing import Any

from whoosh.codec import whoosh3

_MISSING = object()


def _cached_reader(self: Any, fieldname: str, column: Any) -> Any:
    reader = self._readers.get(fieldname, _MISSING)
    if reader is _MISSING:
        reader = self.column_reader(fieldname, column) if self.has_column(fieldname) else None
        self._readers[fieldname] = reader
    return reader


def apply() -> None:
    cls = whoosh3.W3PerDocReader
    if getattr(cls, "_pages_crawler_fixed", False):
        return
    cls._cached_reader = _cached_reader
    cls._pages_crawler_fixed = True


apply()
