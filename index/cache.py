"""The search side's caches: one LRU type with a name and a byte bound, and one
:func:`clear_caches` that empties them all.

A search process lives long (the search page, the resident server), so everything it
remembers between queries is bounded in bytes, not in entries: an entry count says nothing
about a posting list of a million documents or a merged word list. Each cache registers
itself when it is made; :func:`clear_caches` (tests, benchmarks' cold runs) and
:func:`cache_stats` see every one without knowing their modules.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = [
    "KEEP_FREE_BYTES",
    "Cache",
    "cache_stats",
    "clear_caches",
    "free_unused",
    "held_bytes",
    "malloc_free_bytes",
    "on_clear",
    "sizeof",
]

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


_MAX_DEPTH = 6
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


def held_bytes(value: Any) -> int:
    """What ``value`` really keeps alive, in bytes, walked whole (no sampling, each object
    counted once, an array's buffer counted with its owner): slow, for tests and the
    memory bench (``bench.memory``) to check :func:`sizeof` and the caches' sizers."""
    seen: set[int] = set()
    total = 0
    todo = [value]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += sys.getsizeof(obj) - (obj.nbytes if obj.base is None else 0)
            if obj.base is None:
                total += obj.nbytes
            else:
                todo.append(obj.base)
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo.append(obj.__dict__)
    return total


# -- memory freed but kept by the C allocator ------------------------------------------------

# Past this many bytes freed but kept by glibc's malloc, :func:`free_unused` gives them back
# to the system. A query's intermediate arrays (up to its Budget's max_bytes) are freed when
# it ends, but glibc keeps freed chunks below its mmap threshold (which grows up to 32 MiB)
# in its arenas for reuse, scattered between live ones, and only gives back the top of the
# heap: at 10M documents 1.0-1.4 GB of a search process's 2.2-2.6 GB of anonymous memory
# was such free memory (bench/RESULTS.md, "memory at 10M"). malloc_trim(0) returns every
# free page of every arena.
KEEP_FREE_BYTES = 64 * 2**20
# How often free_unused looks (mallinfo2 walks the arenas' free lists).
FREE_CHECK_SECONDS = 0.5


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (or older than 2.33): nothing to give back
        return None


_LIBC = _glibc()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# [when last looked, what the process's anonymous memory held beyond malloc's live bytes
# right after the last trim (the interpreter's own arenas, thread stacks)]
_trim_state = [0.0, 0]
_free_lock = threading.Lock()


def malloc_free_bytes() -> int | None:
    """Bytes glibc's malloc holds freed in its arenas, resident or not (None: not glibc)."""
    return None if _LIBC is None else int(_LIBC.mallinfo2().fordblks)


def _resident_free() -> int:
    """The process's resident anonymous bytes that malloc does not count as live: freed
    memory it kept, plus what is not malloc's (a baseline taken after each trim)."""
    with open("/proc/self/statm", "rb") as statm:
        fields = statm.read().split()
    anonymous = (int(fields[1]) - int(fields[2])) * _PAGE
    info = _LIBC.mallinfo2()
    return anonymous - int(info.uordblks) - int(info.hblkhd)


# One thread per process makes the later looks: a new timer thread for each would be
# started in a search's own time, twice a second under load.
_later: list[threading.Thread] = []
_later_lock = threading.Lock()
_look_due = threading.Event()


def _look_later(every: float) -> None:
    """One look about ``every`` seconds from now, unless one is due: what the last
    searches before a quiet spell freed is given back then, not at the next search."""
    if _look_due.is_set():
        return
    with _later_lock:
        if not (_later and _later[0].is_alive()):
            _later[:] = [threading.Thread(target=_looking, args=(every,), name="free-unused", daemon=True)]
            _later[0].start()
    _look_due.set()


def _looking(every: float) -> None:
    while True:
        _look_due.wait()
        time.sleep(every)
        # Cleared before the look: a search that ends after it asks for the next one.
        _look_due.clear()
        free_unused(every=0.0)


def free_unused(keep: int = KEEP_FREE_BYTES, every: float = FREE_CHECK_SECONDS, now: bool = False) -> int:
    """Give the C allocator's freed memory back to the system once more than ``keep``
    bytes of it have become resident since the last time. Called after each search:
    looked at most once per ``every`` seconds (a look reads /proc, about a millisecond
    here), or at once when ``now`` (a search that built ``keep`` bytes of arrays or more).
    Returns the bytes it found, else 0."""
    if _LIBC is None:
        return 0
    when = time.monotonic()
    if when - _trim_state[0] < every and not now:
        _look_later(every)
        return 0
    if not _free_lock.acquire(blocking=False):
        return 0  # another thread is looking now
    try:
        _trim_state[0] = when
        try:
            excess = _resident_free() - _trim_state[1]
        except (OSError, ValueError, IndexError):  # no /proc: nothing to measure by
            return 0
        if excess <= keep:
            return 0
        _LIBC.malloc_trim(0)
        _trim_state[1] = _resident_free()
    finally:
        _free_lock.release()
    return excess
