"""Decoded per-segment arrays kept on disk beside the index, for the next process.

A new search process (``python -m index search``, a restarted search page) starts with an
empty memory cache, so its first query decodes every posting block of its words from
Whoosh's pickled, zlib-compressed format: at a million documents a common word's blocks
take most of a second, and counting a result set's distinct images reads a column value
per hit. Those arrays depend only on a segment, whose files never change once written, so
they are worth keeping: this module keeps them in one SQLite file in the index folder,
``pages-arrays.sqlite``, keyed by segment id, and the next process reads them back as
NumPy arrays without decoding anything.

It is a cache, never the index: deleting the file loses nothing; a read-only index folder,
a locked or damaged file, or a full disk only turn it off (logged at debug level) and the
search decodes as before. Rows of segments whose files are gone (merged away) are
dropped, and the file is kept under a size bound, oldest rows first.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index.cache import on_clear
from index.options import ARRAY_STORE_FILE, megabytes_from_env

logger = logging.getLogger(__name__)

FILENAME = ARRAY_STORE_FILE
# Writes kept in memory for the next flush, at most this much.
PENDING_FLUSH_BYTES = 64 * 2**20


def default_limit_bytes(default_mb: int = 512) -> int:
    """``$PAGES_ARRAY_STORE_MB`` (0 turns the store off), else 512 MiB."""
    return megabytes_from_env("PAGES_ARRAY_STORE_MB", default_mb, minimum=0)


def pack(arrays: Sequence[np.ndarray]) -> tuple[str, bytes]:
    """Arrays as one blob and a description of their dtypes and lengths."""
    layout = ",".join(f"{a.dtype.str}:{len(a)}" for a in arrays)
    return layout, b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def unpack(layout: str, blob: bytes) -> list[np.ndarray]:
    """The arrays ``pack`` was given, read-only views of ``blob``."""
    out: list[np.ndarray] = []
    offset = 0
    for part in layout.split(",") if layout else []:
        dtype_str, length = part.rsplit(":", 1)
        dtype = np.dtype(dtype_str)
        count = int(length)
        out.append(np.frombuffer(blob, dtype=dtype, count=count, offset=offset))
        offset += dtype.itemsize * count
    if offset != len(blob):
        raise ValueError(f"blob of {len(blob)} bytes, layout says {offset}")
    return out


class ArrayStore:
    """One index folder's stored arrays. Reads go straight to SQLite; writes are kept
    until :meth:`flush` (one transaction per search, not one per array)."""

    def __init__(self, folder: Path, limit_bytes: int) -> None:
        self.path = folder / FILENAME
        self.limit = limit_bytes
        self.folder = folder
        self.pending: dict[tuple[str, str, str, bytes], tuple[str, bytes]] = {}
        self.replacing: set[tuple[str, str]] = set()
        self.pending_bytes = 0
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.disabled = limit_bytes <= 0
        self.pruned = False

    # -- connection ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        if self.disabled:
            return None
        if self.conn is not None:
            return self.conn
        for attempt in (1, 2):
            try:
                self.conn = self._open()
                return self.conn
            except sqlite3.DatabaseError as exc:
                # Not a database (a damaged or foreign file): a cache, so it starts over.
                if attempt == 1 and _damaged(exc) and self._remove():
                    continue
                self._off(exc)
            except (sqlite3.Error, OSError) as exc:
                self._off(exc)
            break
        return None

    def _open(self) -> sqlite3.Connection | None:
        writable = os.access(self.folder, os.W_OK)
        if not writable and not self.path.exists():
            self.disabled = True
            return None
        # As a URI (percent-encoded: a folder named with ? or # stays a folder name).
        uri = self.path.resolve().as_uri() + ("" if writable else "?mode=ro")
        # Shared by the search page's worker threads, each call under self.lock.
        conn = sqlite3.connect(uri, uri=True, timeout=0.05, check_same_thread=False, isolation_level=None)
        try:
            if writable:
                conn.execute("PRAGMA journal_mode=WAL")
                # A cache: losing the last writes in a power cut costs a decode, not data.
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS arrays (segment TEXT, kind TEXT, field TEXT, term BLOB, "
                    "layout TEXT, data BLOB, PRIMARY KEY (segment, kind, field, term))"
                )
            else:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _remove(self) -> bool:
        """Delete the store's files (a damaged cache); whether that worked."""
        if not os.access(self.folder, os.W_OK):
            return False
        try:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError:
            return False
        logger.info("array store %s was damaged; removed, it fills again as searches run", self.path)
        return True

    def _off(self, exc: BaseException) -> None:
        logger.debug("array store %s off: %s", self.path, exc)
        self.disabled = True
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None
        if _damaged(exc):
            self._remove()

    # -- reads and writes --------------------------------------------------------------

    def get(self, segment: str, kind: str, field: str, term: bytes = b"") -> list[np.ndarray] | None:
        with self.lock:
            waiting = self.pending.get((segment, kind, field, term))
            if waiting is not None:
                return unpack(*waiting)
            conn = self._connect()
            if conn is None:
                return None
            try:
                row = conn.execute(
                    "SELECT layout, data FROM arrays WHERE segment=? AND kind=? AND field=? AND term=?",
                    (segment, kind, field, term),
                ).fetchone()
                return None if row is None else unpack(row[0], row[1])
            except sqlite3.OperationalError as exc:
                # Busy (another process checkpointing) or, in a read-only folder, a file
                # never written: this array is decoded instead.
                logger.debug("array store %s: %s", self.path, exc)
            except ValueError as exc:  # a row that does not match its layout
                logger.debug("array store %s: %s", self.path, exc)
            except sqlite3.Error as exc:
                self._off(exc)
            return None

    def put(
        self,
        segment: str,
        kind: str,
        field: str,
        term: bytes,
        arrays: Sequence[np.ndarray],
        replaces_kind: bool = False,
    ) -> None:
        """Keep ``arrays`` (at the next flush); ``replaces_kind``: the field's other rows
        of this kind go (arrays of a whole index state, which the next state replaces)."""
        if self.disabled:
            return
        packed = pack(arrays)
        with self.lock:
            self.pending[(segment, kind, field, term)] = packed
            self.pending_bytes += len(packed[1])
            if replaces_kind:
                self.replacing.add((kind, field))
            too_much = self.pending_bytes > PENDING_FLUSH_BYTES
        if too_much:  # a caller that never flushes (fastsearch used on its own)
            self.flush()

    def flush(self) -> None:
        """Write what :meth:`put` was given; a busy or failing file drops it (the next
        process decodes those arrays again)."""
        with self.lock:
            pending, self.pending = self.pending, {}
            replacing, self.replacing = self.replacing, set()
            self.pending_bytes = 0
            if not pending:
                return
            conn = self._connect()
            if conn is None:
                return
            try:
                conn.execute("BEGIN")
                for kind, field in replacing:
                    conn.execute("DELETE FROM arrays WHERE kind=? AND field=?", (kind, field))
                conn.executemany(
                    "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?, ?)",
                    [(*key, layout, data) for key, (layout, data) in pending.items()],
                )
                if not self.pruned:
                    self._prune_gone(conn)
                self._bound(conn)
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                # Another process is writing: this process's arrays are not needed that much.
                logger.debug("array store %s: %s; %d arrays not kept", self.path, exc, len(pending))
                self._rollback(conn)
            except sqlite3.Error as exc:
                self._rollback(conn)
                self._off(exc)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")

    def _prune_gone(self, conn: sqlite3.Connection) -> None:
        """Drop the rows of segments whose files are gone, once per process."""
        self.pruned = True
        segments = [row[0] for row in conn.execute("SELECT DISTINCT segment FROM arrays")]
        # A segment (MAIN_<id>) has its files as MAIN_<id>.seg, or .trm, .pst, ... when not compound.
        present = {name.split(".", 1)[0] for name in os.listdir(self.folder)}
        gone = [s for s in segments if s not in present]
        conn.executemany("DELETE FROM arrays WHERE segment=?", [(s,) for s in gone])

    def _bound(self, conn: sqlite3.Connection) -> None:
        """Oldest rows out until the stored bytes are under the limit (SQLite reuses the
        freed pages, so the file stops growing there)."""
        (total,) = conn.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM arrays").fetchone()
        if total <= self.limit:
            return
        excess = total - self.limit * 3 // 4
        rows = conn.execute("SELECT rowid, LENGTH(data) FROM arrays ORDER BY rowid")
        doomed: list[tuple[int]] = []
        for rowid, size in rows:
            if excess <= 0:
                break
            doomed.append((rowid,))
            excess -= size
        conn.executemany("DELETE FROM arrays WHERE rowid=?", doomed)

    def close(self) -> None:
        self.flush()
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


def _damaged(exc: BaseException) -> bool:
    """SQLite says the file is not a (sound) database, as opposed to busy or locked."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


_STORES: dict[str, ArrayStore] = {}
_STORES_LOCK = threading.Lock()


def for_folder(folder: str | os.PathLike[str]) -> ArrayStore:
    """The process's store of an index folder (one connection per folder)."""
    key = os.path.realpath(folder)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = ArrayStore(Path(key), default_limit_bytes())
        return store


def flush_all() -> None:
    with _STORES_LOCK:
        stores = list(_STORES.values())
    for store in stores:
        store.flush()


# What a process decoded since its last search still reaches the store when it exits.
atexit.register(flush_all)


@on_clear
def forget_all() -> None:
    """Close every store (tests; a process that changes ``$PAGES_ARRAY_STORE_MB``)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()
