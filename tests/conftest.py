from __future__ import annotations

import atexit
import errno
import functools
import http.server
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where `python -m index serve` announces itself (index.serve.remote): the tests' own folder, so
# that a server the developer runs never answers a test's search, nor a test's theirs.
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="pages-tests-runtime-")
SEED = ROOT / "examples" / "pages" / "chair-exercises-upper-back.md"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# What every `--json` hit carries: the contract's image record plus page fields. Spelled
# out here, not imported from the code under test.
HIT_KEYS = frozenset(
    "position image_url link_url alt caption_raw caption headline site board tags image_host domain duplicate_of "
    "title author date page_url page_tags image_tags score uses".split()
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fuzz(examples: int) -> int:
    """Hypothesis examples for a property test: its usual number, or FUZZ_EXAMPLES for the
    long runs (`make fuzz`)."""
    return int(os.environ.get("FUZZ_EXAMPLES") or examples)


def sitemap(urls: list[str | tuple[str, str | None]]) -> str:
    """A urlset; entries are URLs or (URL, lastmod) pairs."""
    pairs = [(u, None) if isinstance(u, str) else u for u in urls]
    body = "".join(f"<url><loc>{u}</loc>{f'<lastmod>{m}</lastmod>' if m else ''}</url>" for u, m in pairs)
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'


def run_scrapy(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real `scrapy` command in a subprocess, as a user runs it."""
    full_env = {k: v for k, v in os.environ.items() if k != "PAGES_INDEX"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def crawl(index: Path, *starts: str, settings: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = ["crawl", "pages", "-s", f"INDEX_DIR={index}", "-s", "LOG_LEVEL=INFO"]
    for name, value in (settings or {}).items():
        args += ["-s", f"{name}={value}"]
    for start in starts:
        args += ["-a", f"start={start}"]
    result = run_scrapy(*args)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def index_main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m index ARGS` in this process (index.cli.main): its exit status, stdout and
    stderr, as `subprocess.run` would give them."""
    from index.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "index", *args], code, out, err)


def crawl_stats(result: subprocess.CompletedProcess[str] | CrawlResult) -> str:
    """The stats dump at the end of a crawl's log."""
    return result.stderr[result.stderr.find("Dumping Scrapy stats") :]


@dataclass
class CrawlResult:
    """A crawl run by the tests' crawl runner: the status `scrapy crawl` would exit with,
    what it would write to stderr (its log), and its final stats."""

    returncode: int
    stderr: str
    stats: dict[str, Any]


class _CrawlRunner:
    """tests/crawl_runner.py in a child process, kept for every crawl of this pytest
    process (one per xdist worker); it exits when this process closes its stdin."""

    def __init__(self) -> None:
        # Its own errors (not the crawls' logs, which come back with each reply).
        self.errors = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (open while the runner runs)
        env = {k: v for k, v in os.environ.items() if k != "PAGES_INDEX"}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("crawl_runner.py"))],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )

    def crawl(self, request: dict[str, Any], timeout: float) -> CrawlResult:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            self.errors.seek(0)
            raise AssertionError(
                f"the crawl runner {'timed out' if not ready else 'died'}: {self.errors.read()[-3000:]}"
            )
        reply = json.loads(line)
        return CrawlResult(reply["exit"], reply["log"], reply["stats"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_runner: _CrawlRunner | None = None


def crawl_in_process(
    index: Path,
    *starts: str,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> CrawlResult:
    """The crawl `crawl()` runs, without a `scrapy crawl` process of its own: in one
    process kept for all of this session's crawls (tests/crawl_runner.py says what differs
    from the command). For the spider's, the pipelines' and the index's behaviour; the
    command's own (exit 75 at once, a one-line error, kill -9) needs `crawl()`. `env` and
    `cwd` are that process's for the crawl's duration (and so a writer process's)."""
    global _runner
    if _runner is None or _runner.proc.poll() is not None:
        _runner = _CrawlRunner()
        atexit.register(_runner.close)
    request = {
        "index": str(index),
        "starts": list(starts),
        "settings": {"LOG_LEVEL": "INFO", **(settings or {})},
        "env": env or {},
        "cwd": str(cwd) if cwd else None,
    }
    result = _runner.crawl(request, timeout)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def stats_of(result: subprocess.CompletedProcess[str] | CrawlResult) -> dict[str, Any]:
    """A crawl's final stats: its own, or the numbers read back from the command's dump."""
    if isinstance(result, CrawlResult):
        return result.stats
    dump = crawl_stats(result)
    assert dump, "no stats in the crawl's log"
    return {k: int(v) for k, v in re.findall(r"'([^']+)': (\d+)\b(?![.:-])", dump)}


def stat(result: subprocess.CompletedProcess[str] | CrawlResult, key: str) -> int:
    """A stat the crawl counted: missing fails (renamed, or never counted), never 0."""
    stats = stats_of(result)
    assert key in stats, f"no stat {key!r} in the crawl's stats"
    return stats[key]


def no_stat(result: subprocess.CompletedProcess[str] | CrawlResult, key: str) -> bool:
    """A stat the crawl did not count (Scrapy leaves a stat that stayed 0 out). The name
    must be one the crawler's code spells, so a renamed stat fails here instead of
    passing as 0."""
    assert f'"{key}"' in _crawler_source(), f"{key!r} is not a stat the crawler counts"
    return not stats_of(result).get(key)


@functools.cache
def _crawler_source() -> str:
    return "".join(p.read_text() for p in (ROOT / "pipeline").rglob("*.py"))


def image_documents(index: Path) -> list[dict]:
    from whoosh import index as whoosh_index

    ix = whoosh_index.open_dir(str(index))
    with ix.searcher() as s:
        return (
            [
                {**json.loads(fields["record"]), "id": fields["id"]}
                for _, fields in ((d, s.stored_fields(d)) for d in s.document_numbers(kind="image"))
            ]
            if s.doc_count()
            else []
        )


def page_documents(index: Path) -> list[dict]:
    from whoosh import index as whoosh_index

    ix = whoosh_index.open_dir(str(index))
    with ix.searcher() as s:
        return [json.loads(s.stored_fields(d)["record"]) for d in s.document_numbers(kind="page")]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, plus `failing` paths that answer 500 (a set on the server) and
    `redirects` paths that answer 302 to their value (a dict on the server; a key ending
    in `*` is a prefix, a callable value gets the path)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.server.delay:  # type: ignore[attr-defined]
            time.sleep(self.server.delay)  # type: ignore[attr-defined]
        if self.path in self.server.failing:  # type: ignore[attr-defined]
            self.send_error(500, "test failure")
            return None
        location = None
        for path, target in self.server.redirects.items():  # type: ignore[attr-defined]
            if self.path == path or (path.endswith("*") and self.path.startswith(path[:-1])):
                location = target(self.path) if callable(target) else target
        if location is not None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()


class _LocalServer(http.server.ThreadingHTTPServer):
    # A crawl opens its connections at once; past socketserver's backlog of 5 the kernel
    # drops the SYNs and the client retries a second later (tests/refresh_faults.py too).
    request_queue_size = 64


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (free port) for the test's duration."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _LocalServer(("127.0.0.1", 0), handler)
    server.failing = set()  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    server.redirects = {}  # type: ignore[attr-defined]
    server.delay = 0.0  # type: ignore[attr-defined]
    # Shutting down waits for the poll: 0.5 s by default, at every test's end.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


# Every commit fails as a full disk would when FAKE_ENOSPC is set: a sitecustomize.py body
# for crawls started by the tests (the table of contents is the last file a commit writes).
ENOSPC_PATCH = f"""
import errno, os
if os.environ.get("FAKE_ENOSPC"):
    from whoosh.filedb import filestore
    _create = filestore.FileStorage.create_file
    def create_file(self, name, *args, **kwargs):
        # The table of contents is the last file a commit writes.
        if ".toc" in name:
            raise OSError({errno.ENOSPC}, os.strerror({errno.ENOSPC}), name)
        return _create(self, name, *args, **kwargs)
    filestore.FileStorage.create_file = create_file
"""


def full_disk(tmp_path: Path) -> dict[str, str]:
    """The environment under which every Python process started fails its commits (the
    patch is a sitecustomize.py): for a `scrapy crawl` process, or for a crawl in the
    crawl runner whose index writer is a process (INDEX_WRITER_PROCESS=True)."""
    patch = tmp_path / "full-disk"
    patch.mkdir(exist_ok=True)
    (patch / "sitecustomize.py").write_text(ENOSPC_PATCH)
    return {"FAKE_ENOSPC": "1", "PYTHONPATH": f"{patch}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    """A copy of examples/pages the test may change (delete, edit, add pages)."""
    folder = tmp_path / "pages"
    shutil.copytree(ROOT / "examples" / "pages", folder)
    return folder
