"""The progress line: a `progress:` log line per LOGSTATS_INTERVAL when not on a terminal,
a line redrawn in place under a pseudo-terminal (with the log intact above it), and the
same kind of line for `python -m index ingest`."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import shutil
import struct
import sys
import termios
import time
from pathlib import Path

import pytest
from scrapy.utils.test import get_crawler

from conftest import ROOT, crawl_in_process
from index.progress import IndexGenerations, IngestProgress, LiveLine, RateMeter, crawl_line, wants_live
from pipeline.extensions.progress import Progress

EXAMPLES = ROOT / "examples" / "pages"
# A Scrapy log record's first line: date, time, [logger] LEVEL:
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[[\w.]+\] (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
PROGRESS_LINE = re.compile(
    r"\[pipeline\.extensions\.progress\] INFO: progress: pages [\d,]+( of [\d,]+ \(\d+%\)| \([\d,]+ listed so far\))?, "
    r"images [\d,]+ indexed, [\d,]+ docs/s, [\d.,]+ pages/s, [\d,]+ commits?, skipped [\d,]+ unchanged \+ [\d,]+ invalid"
)


@pytest.fixture
def slow_pages(http_root):
    """The example pages over HTTP, each answered after 0.3 s, one at a time: a crawl that
    lasts a few seconds without being big."""
    root, base, server = http_root
    for page in EXAMPLES.iterdir():
        shutil.copy(page, root / page.name)
    server.delay = 0.3
    return [f"{base}/{p.name}" for p in sorted(EXAMPLES.iterdir())]


def crawl_args(index: Path, urls: list[str], *settings: str) -> list[str]:
    args = [
        "crawl",
        "pages",
        "-s",
        f"INDEX_DIR={index}",
        "-s",
        "CONCURRENT_REQUESTS=1",
        "-s",
        "AUTOTHROTTLE_ENABLED=False",
        # The index written in the crawl process: what is drawn does not depend on where,
        # and a writer process and its sub-writers would double the command's start-up.
        "-s",
        "INDEX_WRITER_PROCESS=False",
        "-s",
        "INDEX_WRITER_PROCS=1",
    ]
    for setting in settings:
        args += ["-s", setting]
    for url in urls:
        args += ["-a", f"start={url}"]
    return args


# One page at a time, at the server's pace.
SLOW = {"CONCURRENT_REQUESTS": 1, "AUTOTHROTTLE_ENABLED": False}


def test_progress_lines_in_a_log_replace_scrapys_line(slow_pages, http_root, tmp_path):
    http_root[2].delay = 0.15  # half the pace, half the interval: as many lines
    log = tmp_path / "crawl.log"
    settings = {**SLOW, "LOGSTATS_INTERVAL": 0.25, "LOG_FILE": str(log)}
    result = crawl_in_process(tmp_path / "index", *slow_pages, settings=settings)
    assert result.returncode == 0, result.stderr[-2000:]
    text = log.read_text()
    lines = [line for line in text.splitlines() if "progress:" in line]
    assert len(lines) >= 3, text[-3000:]
    assert all(PROGRESS_LINE.search(line) for line in lines), lines
    assert any(re.search(r"progress: pages [1-4]\b", line) for line in lines), lines
    assert "\r" not in text and "\x1b[" not in text  # nothing redrawn in a log
    assert "Crawled " not in text  # LogStats is replaced, not doubled


def test_progress_false_is_scrapys_logstats(slow_pages, http_root, tmp_path):
    http_root[2].delay = 0.15
    settings = {**SLOW, "LOGSTATS_INTERVAL": 0.25, "PROGRESS": False}
    result = crawl_in_process(tmp_path / "index", *slow_pages, settings=settings)
    assert result.returncode == 0
    assert "progress:" not in result.stderr
    assert re.search(r"Crawled \d+ pages \(at \d+ pages/min\)", result.stderr)


def run_in_pty(args: list[str], env: dict[str, str], columns: int = 220) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin/stdout/stderr; return its exit
    status and everything it wrote to the terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns
        # The child sizes its own terminal before it starts: set from the parent, a loaded
        # machine could let the crawl read the default 80 columns first.
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        os.chdir(ROOT)
        os.execve(args[0], args, env)
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", errors="replace")


def pty_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PAGES_INDEX", "NO_COLOR", "TERM")}
    return {**env, "TERM": "xterm-256color", **extra}


# Narrow enough that the crawl's summary line is more than twice as wide, wide enough for
# the live line up to its "docs/s".
COLUMNS = 80


def test_live_line_under_a_terminal_keeps_log_lines_whole(slow_pages, tmp_path):
    args = [sys.executable, "-m", "scrapy", *crawl_args(tmp_path / "index", slow_pages)]
    status, out = run_in_pty(args, pty_env(), columns=COLUMNS)
    assert status == 0, out[-3000:]
    # The line is drawn and redrawn in place: rich erases it (CR, erase line) before each
    # redraw and before each log line, and erases it for good at the end.
    # (Up to "docs/s": under a loaded `make test -n 2` rich has been seen to measure the
    # terminal narrower than it is and end the line with "…" before "invalid".)
    drawn = re.findall(r"pages \d[\d,]*[^\r\n]*?docs/s", out)
    assert len(drawn) >= 3, out[-3000:]
    assert "\r\x1b[2K" in out
    assert "progress:" not in out  # no log lines about progress on a terminal
    # Every log line reaches the terminal whole, on a line of its own: what follows the
    # last erase on a terminal line is the log line, from its date to its end.
    records = []
    for row in out.split("\r\n"):
        visible = row.rsplit("\x1b[2K", 1)[-1]
        if re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", visible):
            assert LOG_LINE.match(visible), repr(row)
            assert "docs/s" not in visible, repr(row)
            records.append(visible)
    assert any("crawl finished: pages seen 4, new 4" in r for r in records), records[-5:]
    assert any(r.endswith("Spider closed (finished)") for r in records)
    # Long lines are not broken at the terminal's width by the console: the summary is
    # twice as wide as this terminal (which still fits the live line up to "docs/s").
    summary = re.compile(LOG_LINE.pattern + r"crawl finished: pages seen 4, new 4, .*; index .* \(\d+ commits?\)$")
    assert any(summary.match(r) and len(r) > 2 * COLUMNS for r in records), records[-5:]


def test_dumb_terminal_gets_log_lines(slow_pages, http_root, tmp_path):
    # No need to wait for the pages: the first line is logged as the spider opens, and a
    # live line would be drawn then too.
    http_root[2].delay = 0
    args = [sys.executable, "-m", "scrapy", *crawl_args(tmp_path / "index", slow_pages, "LOGSTATS_INTERVAL=0.5")]
    status, out = run_in_pty(args, pty_env(TERM="dumb"))
    assert status == 0
    assert "\x1b[2K" not in out
    assert PROGRESS_LINE.search(out)


def test_no_color_keeps_the_live_line_without_colour():
    stream = _FakeTerminal()
    line = LiveLine(stream)
    old = os.environ.get("NO_COLOR")
    os.environ["NO_COLOR"] = "1"
    try:
        line.start("pages 1")
        line.update("pages 2")
        line.stop()
    finally:
        if old is None:
            del os.environ["NO_COLOR"]
        else:
            os.environ["NO_COLOR"] = old
    text = stream.getvalue()
    assert "pages 2" in text
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m", text)  # no foreground colour


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_line_routes_the_root_handler_above_itself():
    stream = _FakeTerminal()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        line = LiveLine(stream)
        line.start("pages 1 of 2")
        assert handler.stream is not stream  # goes through the console now
        logging.getLogger("x").warning("a warning with a long URL %s", "http://example.org/" + "a" * 300)
        line.update("pages 2 of 2")
        line.stop()
        assert handler.stream is stream
    finally:
        root.removeHandler(handler)
    rows = stream.getvalue().split("\n")
    logged = [r.rsplit("\x1b[2K", 1)[-1] for r in rows if "a warning" in r]
    assert logged == ["a warning with a long URL http://example.org/" + "a" * 300]


def test_wants_live():
    assert not wants_live(io.StringIO())
    assert wants_live(_FakeTerminal(), {"TERM": "xterm"})
    assert not wants_live(_FakeTerminal(), {"TERM": "dumb"})
    assert wants_live(_FakeTerminal(), {"TERM": "xterm", "NO_COLOR": "1"})


def test_figures_from_the_crawl_stats(tmp_path):
    crawler = get_crawler(settings_dict={"INDEX_DIR": str(tmp_path / "none"), "LOGSTATS_INTERVAL": 1.0})
    crawler.stats.open_spider()
    ext = Progress.from_crawler(crawler)
    ext.generations = IndexGenerations(tmp_path / "none")
    stats = crawler.stats
    stats.set_value("pages/listed", 100)
    stats.set_value("pages/seen", 10)
    assert ext.figures().startswith("pages 10 (100 listed so far), images 0 indexed")
    ext.pages_meter.samples.clear()
    ext.pages_meter.add(time.monotonic() - 10, 0)
    stats.set_value("pages/listed_all", 1)
    stats.set_value("pages/seen", 20)
    stats.set_value("pages/unchanged", 5)
    stats.set_value("pages/invalid", 2)
    stats.set_value("images/indexed", 300)
    line = ext.figures()
    assert line.startswith("pages 20 of 100 (20%), images 300 indexed")
    assert "0 commits, skipped 5 unchanged + 2 invalid, ETA " in line
    assert re.search(r"ETA (3\ds|40s)$", line), line  # 80 pages to go at ~2 pages/s


def test_commits_counted_as_the_index_makes_them(tmp_path):
    from helpers import item, write

    index = tmp_path / "index"
    gens = IndexGenerations(index)
    assert gens.commits() == 0
    write(index, item("file:///a.md", ["one"]))
    first = gens.commits()
    assert first >= 1
    write(index, item("file:///b.md", ["two"]))
    assert gens.commits() == first + 1


def test_progress_is_off_without_an_interval_and_a_terminal():
    from scrapy.exceptions import NotConfigured

    with pytest.raises(NotConfigured):
        Progress.from_crawler(get_crawler(settings_dict={"LOGSTATS_INTERVAL": 0}))


def test_rate_meter_forgets_old_samples():
    m = RateMeter(window=10)
    for t in range(0, 100, 1):
        m.add(float(t), t * 50)
    assert m.rate() == pytest.approx(50.0)
    assert len(m.samples) <= 12


def test_crawl_line_total_never_below_done():
    line = crawl_line(done=12, total=10, images=0, docs_per_s=0, pages_per_s=1, commits=None, unchanged=0, invalid=0)
    assert line.startswith("pages 12 of 12 (100%)") and "ETA" not in line


def test_ingest_progress_logs_a_line_per_interval(caplog):
    now = [0.0]
    backlog = [4500]
    progress = IngestProgress(lambda: backlog[0], stream=io.StringIO(), interval=30, clock=lambda: now[0])
    assert progress.live is None
    with caplog.at_level(logging.INFO, logger="index.progress"):
        progress.update(0, 0, 0)
        now[0] = 10
        progress.update(100, 800, 0)  # inside the interval: nothing
        now[0] = 30
        progress.update(500, 4000, 1)
        backlog[0] = None  # type: ignore[assignment]

        def broken() -> int:
            raise ConnectionError("gone")

        progress.backlog = broken
        now[0] = 60
        progress.update(600, 4800, 2)
    progress.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "progress: pages 0 written, 0 documents, 0 commits, backlog 4,500 pages, 0 docs/s",
        "progress: pages 500 written, 4,000 documents, 1 commit, backlog 4,500 pages, 133 docs/s",
        "progress: pages 600 written, 4,800 documents, 2 commits, backlog ?, 27 docs/s",
    ]


def test_ingest_progress_live_on_a_terminal():
    stream = _FakeTerminal()
    now = [0.0]
    progress = IngestProgress(lambda: 7, stream=stream, clock=lambda: now[0])
    assert progress.live is not None
    progress.update(1, 10, 0)
    now[0] = 1.0
    progress.update(2, 20, 1)
    progress.stop()
    assert "pages 2 written, 20 documents, 1 commit, backlog 7 pages" in stream.getvalue()
