"""The search side's caches: one LRU type with a name and a byte bound, and one
:func:`clear_caches` that empties them all.

A search process lives long (the search page, the resident server), so everything it
remembers between queries is bounded in bytes, not in entries: an entry count says nothing
about a posting list of a million documents or a merged word list. Each cache registers
itself when it is made; :func:`clear_caches` (tests, benchmarks' cold runs) and
:func:`cache_stats` see every one without knowing their modules.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["Cache", "cache_stats", "clear_caches", "on_clear", "sizeof"]

V = TypeVar("V")

_CACHES: list[Cache[Any]] = []
_RESETS: list[Callable[[], None]] = []


class Cache(Generic[V]):
    """Least recently used entries dropped first once their bytes pass ``max_bytes``.

    Thread-safe: the search page's worker threads share one process's caches. A value
    larger than the whole bound is returned but not kept. Each entry is charged
    ``entry_bytes`` on top of its value's size: what keeping it costs beyond its data
    (key, tuples, array headers, the LRU's node), which for small values is most of it."""

    def __init__(
        self, name: str, max_bytes: int, sizer: Callable[[Any], int] | None = None, entry_bytes: int = 0
    ) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self.entry_bytes = entry_bytes
        self.bytes = 0
        self._sizer = sizer or sizeof
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        _CACHES.append(self)

    def get(self, key: Hashable, default: Any = None) -> V | Any:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return default
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: V, nbytes: int | None = None) -> V:
        size = (self._sizer(value) if nbytes is None else nbytes) + self.entry_bytes
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return value
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
        return value

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` if it is there."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<Cache {self.name}: {len(self)} entries, {self.bytes:,} of {self.max_bytes:,} bytes>"


def on_clear(reset: Callable[[], None]) -> Callable[[], None]:
    """Register state that is not a :class:`Cache` (open searchers, array stores) with
    :func:`clear_caches`; usable as a decorator."""
    _RESETS.append(reset)
    return reset


def clear_caches() -> None:
    """Forget everything the search side remembers between queries, as a new process."""
    for cache in _CACHES:
        cache.clear()
    for reset in _RESETS:
        reset()


def cache_stats() -> dict[str, dict[str, int]]:
    return {c.name: {"entries": len(c), "bytes": c.bytes, "max_bytes": c.max_bytes} for c in _CACHES}


_MAX_DEPTH = 4
# Big containers are measured on a sample of their items and scaled: measuring a merged
# word list of two million words item by item would cost more than the query it serves.
_SAMPLE = 256


def sizeof(value: Any, _depth: int = 0) -> int:
    """An estimate of what ``value`` keeps alive, in bytes: exact for NumPy arrays, close
    for strings, bytes and the containers of them that the caches hold."""
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, (str, bytes, int, float, bool)) or value is None or _depth > _MAX_DEPTH:
        return sys.getsizeof(value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + _items_size(list(value.items()), _depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + _items_size(list(value), _depth)
    fields = getattr(value, "__dict__", None)
    if fields is not None:
        return sys.getsizeof(value) + sizeof(fields, _depth + 1)
    return sys.getsizeof(value)


def _items_size(items: list[Any], depth: int) -> int:
    if not items:
        return 0
    sample = items if len(items) <= _SAMPLE else items[:: len(items) // _SAMPLE][:_SAMPLE]
    measured = sum(sizeof(item, depth + 1) for item in sample)
    return round(measured * len(items) / len(sample))
