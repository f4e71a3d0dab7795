"""Progress of long runs, for people and for logs: shared by the crawl (``pipeline.extensions.progress``)
and the distributed indexer (``python -m index ingest``). No Scrapy here.

On a terminal one line is redrawn in place with ``rich``, and log records are printed above
it through the same console (a log line written straight to the terminal would land in the
middle of the line being redrawn). Anywhere else (cron, systemd, a log file, a pipe) callers
log one plain ``progress:`` line per interval instead: redrawing there only fills the log
with carriage returns.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "IndexGenerations",
    "IngestProgress",
    "LiveLine",
    "RateMeter",
    "crawl_line",
    "duration",
    "ingest_line",
    "wants_live",
]

logger = logging.getLogger(__name__)


def wants_live(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Whether a line may be redrawn in place on ``stream``: a terminal that can move its
    cursor. ``NO_COLOR`` only takes the colour away (rich reads it); ``TERM=dumb`` cannot
    redraw, so it gets the plain log lines.

    >>> wants_live(io.StringIO())
    False
    """
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
    return tty and env.get("TERM", "") not in ("dumb", "unknown")


class RateMeter:
    """A per-second rate over the last ``window`` seconds of samples of a growing total.

    >>> m = RateMeter(window=10)
    >>> m.add(0.0, 0); m.add(5.0, 100); m.add(10.0, 300)
    >>> m.rate()
    30.0
    >>> m.add(20.0, 300)   # the first samples leave the window
    >>> m.rate()
    0.0
    """

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> None:
        self.samples.append((now, total))
        # Keep one sample at or beyond the window's start, so the rate covers all of it.
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def duration(seconds: float) -> str:
    """A short human duration.

    >>> duration(42.4), duration(372), duration(3725), duration(200000)
    ('42s', '6m 12s', '1h 02m', '55h 33m')
    """
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def crawl_line(
    *,
    done: int,
    total: int | None,
    total_final: bool = True,
    images: int,
    docs_per_s: float,
    pages_per_s: float,
    commits: int | None,
    unchanged: int,
    invalid: int,
) -> str:
    """The figures of a crawl in progress, one line (the same on a terminal and in a log).
    ``total`` is what the listings named so far; only a ``total_final`` one (every listing
    read to its end) gives a percentage and an ETA.

    >>> line = crawl_line(done=1250, total=12500, images=10321, docs_per_s=2351.4, pages_per_s=31.2,
    ...                   commits=3, unchanged=1000, invalid=2)
    >>> for part in line.split(", "):
    ...     print(part)
    pages 1,250 of 12,500 (10%)
    images 10,321 indexed
    2,351 docs/s
    31.2 pages/s
    3 commits
    skipped 1,000 unchanged + 2 invalid
    ETA 6m 01s
    >>> print(crawl_line(done=190, total=194, total_final=False, images=0, docs_per_s=0, pages_per_s=9,
    ...                  commits=0, unchanged=0, invalid=0))
    pages 190 (194 listed so far), images 0 indexed, 0 docs/s, 9.0 pages/s, 0 commits, skipped 0 unchanged + 0 invalid
    >>> print(crawl_line(done=7, total=None, images=0, docs_per_s=0, pages_per_s=0, commits=None,
    ...                  unchanged=0, invalid=0))
    pages 7, images 0 indexed, 0 docs/s, 0.0 pages/s, skipped 0 unchanged + 0 invalid
    """
    parts = []
    if total and not total_final:
        parts.append(f"pages {done:,} ({total:,} listed so far)")
        total = None
    elif total:
        total = max(total, done)
        parts.append(f"pages {done:,} of {total:,} ({100 * done // total}%)")
    else:
        parts.append(f"pages {done:,}")
    parts += [f"images {images:,} indexed", f"{docs_per_s:,.0f} docs/s", f"{pages_per_s:,.1f} pages/s"]
    if commits is not None:
        parts.append(f"{commits:,} commit{'' if commits == 1 else 's'}")
    parts.append(f"skipped {unchanged:,} unchanged + {invalid:,} invalid")
    if total and pages_per_s > 0 and done < total:
        parts.append(f"ETA {duration((total - done) / pages_per_s)}")
    return ", ".join(parts)


def ingest_line(*, pages: int, documents: int, commits: int, backlog: int | None, docs_per_s: float) -> str:
    """The figures of ``python -m index ingest``, one line.

    >>> print(ingest_line(pages=1200, documents=9800, commits=3, backlog=4500, docs_per_s=2210))
    pages 1,200 written, 9,800 documents, 3 commits, backlog 4,500 pages, 2,210 docs/s
    """
    backlog_text = "backlog ?" if backlog is None else f"backlog {backlog:,} pages"
    return (
        f"pages {pages:,} written, {documents:,} documents, {commits:,} commit{'' if commits == 1 else 's'}, "
        f"{backlog_text}, {docs_per_s:,.0f} docs/s"
    )


class IndexGenerations:
    """Counts the commits made to an index since this object was created, by watching its
    generations (each commit writes the next one). It lets a progress line count commits
    while another process makes them: the crawl's own count only arrives when its writer
    closes."""

    def __init__(self, index_dir: str | os.PathLike[str]) -> None:
        self.path = Path(index_dir)
        self.index: Any = None
        generation = self.generation()
        # No index yet: the first writer creates it as generation 0, then commits.
        self.base = 0 if generation is None else generation

    def generation(self) -> int | None:
        from whoosh.filedb.filestore import FileStorage
        from whoosh.index import FileIndex

        from index import _whoosh  # noqa: F401  (applies the project's Whoosh fixes)

        if self.index is None:
            if not self.path.is_dir():
                return None
            # Building a FileIndex reads the table of contents, which a commit may be
            # replacing at this moment: then there is nothing new to say yet.
            try:
                self.index = FileIndex(FileStorage(str(self.path)))
            except Exception:  # noqa: BLE001 - no index yet, or a commit in flight
                return None
        # Whoosh's own listing of the generations (file names only, nothing read).
        return self.index.latest_generation()

    def commits(self) -> int:
        generation = self.generation()
        return 0 if generation is None else max(0, generation - self.base)


class _ConsoleStream(io.TextIOBase):
    """A text stream that prints whole lines through a rich console, above its live line.
    (rich's own FileProxy word-wraps them at the terminal's width, which breaks long URLs
    in two; these print as they are, and the terminal wraps them.)"""

    def __init__(self, console: Any, original: TextIO) -> None:
        self.console = console
        self.original = original
        self.buffer_: list[str] = []

    def write(self, text: str) -> int:
        from rich.text import Text

        *lines, rest = ("".join(self.buffer_) + text).split("\n")
        self.buffer_ = [rest] if rest else []
        for line in lines:
            self.console.print(Text.from_ansi(line), soft_wrap=True, highlight=False)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()


class LiveLine:
    """One line redrawn in place on a terminal, with the log printed above it.

    While it is shown, every root logging handler that writes to ``stream`` writes
    through the line's console instead (Scrapy's and ``logging.basicConfig``'s handlers
    hold the real stderr, so redirecting ``sys.stderr`` alone would not reach them)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live: Any = None
        self.swapped: list[logging.StreamHandler[Any]] = []

    def start(self, text: str = "") -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream, stderr=True)
        self.live = Live(
            self._render(text),
            console=console,
            auto_refresh=False,  # redrawn by update(), from the caller's own timer
            transient=True,  # the final summary is logged; the line goes away
            redirect_stdout=False,  # stdout may carry data (`-O -`), never touch it
            redirect_stderr=True,
        )
        self.live.start(refresh=True)
        proxy = _ConsoleStream(console, self.stream)
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and handler.stream is self.stream:
                handler.setStream(proxy)  # type: ignore[arg-type]
                self.swapped.append(handler)

    @staticmethod
    def _render(text: str) -> Any:
        from rich.text import Text

        return Text(text, style="bold", no_wrap=True, overflow="ellipsis")

    def update(self, text: str) -> None:
        if self.live is not None:
            self.live.update(self._render(text), refresh=True)

    def stop(self) -> None:
        for handler in self.swapped:
            handler.setStream(self.stream)
        self.swapped.clear()
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()


class IngestProgress:
    """The progress of ``python -m index ingest``: call ``update()`` on every turn of its
    loop (cheap: it draws at most ``redraw`` times a second, logs once per ``interval``)
    and ``stop()`` at the end. ``backlog`` is asked only when a line is about to be shown
    (it costs a Redis round trip)."""

    def __init__(
        self,
        backlog: Callable[[], int],
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        interval: float = 30.0,
        redraw: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import sys

        self.stream = stream if stream is not None else sys.stderr
        self.backlog = backlog
        self.live = LiveLine(self.stream) if (wants_live(self.stream) if live is None else live) else None
        self.interval = interval if self.live is None else redraw
        self.clock = clock
        self.meter = RateMeter(window=max(10.0, self.interval))
        self.next_at = 0.0

    def update(self, pages: int, documents: int, commits: int, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now < self.next_at:
            return
        self.next_at = now + self.interval
        self.meter.add(now, documents)
        try:
            backlog: int | None = self.backlog()
        except Exception:  # noqa: BLE001 - a progress line must never stop the indexer
            backlog = None
        text = ingest_line(
            pages=pages, documents=documents, commits=commits, backlog=backlog, docs_per_s=self.meter.rate()
        )
        if self.live is None:
            logger.info("progress: %s", text)
        elif self.live.live is None:
            self.live.start(text)
        else:
            self.live.update(text)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
