from __future__ import annotations

import errno
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def crawl_stats(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr[result.stderr.find("Dumping Scrapy stats") :]


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


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (free port) for the test's duration."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.failing = set()  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    server.redirects = {}  # type: ignore[attr-defined]
    server.delay = 0.0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    """A copy of examples/pages the test may change (delete, edit, add pages)."""
    folder = tmp_path / "pages"
    shutil.copytree(ROOT / "examples" / "pages", folder)
    return folder
