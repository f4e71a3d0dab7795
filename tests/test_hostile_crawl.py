"""Hostile input, round two (issue 16), the crawler's side: what a remote listing may make
the crawler read, symlinks out of a start folder, two crawls at once, a gzip bomb, and
poison entries for the distributed indexer. Each test reproduces the finding first."""

from __future__ import annotations

import gzip
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from conftest import ROOT, crawl, crawl_stats, image_documents, page_documents, sitemap

PAGE = "---\ntitle: {title}\napi_key: s3cr3t\n---\n![](https://img.test/{title}.jpg) {title} stretch\n"


def stat(result: subprocess.CompletedProcess[str], key: str) -> int:
    marker = f"'{key}': "
    stats = crawl_stats(result)
    return int(stats.split(marker, 1)[1].split(",", 1)[0].split("}", 1)[0]) if marker in stats else 0


class Site:
    """A server answering by (Host, path), recording every request it gets with its Host:
    127.0.0.1 plays the public site, localhost the internal host."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                site.requests.append((host, self.path))
                status, headers, body = site.routes.get((host, self.path), (404, {}, b"not found"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, host: str, path: str, body: bytes | str, status: int = 200, **headers: str) -> None:
        self.routes[(host, path)] = (status, headers, body.encode() if isinstance(body, str) else body)


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_remote_listings_cannot_reach_other_hosts_or_local_files(site, tmp_path):
    pub, internal = "127.0.0.1", "localhost"
    local_sitemap = tmp_path / "local-sitemap.xml"
    local_sitemap.write_text(sitemap([site.url(internal, "/internal.md")]))
    # Finding 1: robots.txt's Sitemap: lines name an internal host, /etc/passwd and a local
    # sitemap file (whose file: scheme used to allow any host).
    robots = "User-agent: *\nAllow: /\n" + "".join(
        f"Sitemap: {u}\n"
        for u in (
            site.url(internal, "/internal-sitemap.xml"),
            "file:///etc/passwd",
            local_sitemap.as_uri(),
            site.url(pub, "/sitemap.xml"),
        )
    )
    site.add(pub, "/robots.txt", robots)
    # Finding 2: a same-host entry that redirects to the internal host.
    site.add(pub, "/sitemap.xml", sitemap([site.url(pub, "/good.md"), site.url(pub, "/moved.md")]))
    site.add(pub, "/good.md", PAGE.format(title="good"))
    site.add(pub, "/moved.md", b"", status=302, Location=site.url(internal, "/internal.md"))
    site.add(internal, "/internal-sitemap.xml", sitemap([site.url(internal, "/internal.md")]))
    site.add(internal, "/internal.md", PAGE.format(title="internal"))
    # Finding 14: a page whose Content-Encoding gzip body inflates past DOWNLOAD_MAXSIZE.
    site.add(pub, "/bomb.md", gzip.compress(b"x" * 3_000_000), **{"Content-Encoding": "gzip"})
    index = tmp_path / "index"
    result = crawl(
        index, site.url(pub, "/robots.txt"), site.url(pub, "/bomb.md"), settings={"DOWNLOAD_MAXSIZE": "1000000"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [d["title"] for d in image_documents(index)] == ["good"]
    assert {p["title"] for p in page_documents(index)} == {"good"}
    # The internal host was never asked for anything, not even its robots.txt.
    assert [r for r in site.requests if r[0] == internal] == []
    assert stat(result, "pages/refused/host") == 1  # the internal sitemap
    assert stat(result, "pages/refused/scheme") == 2  # /etc/passwd and the local sitemap
    assert stat(result, "pages/refused/redirect") == 1
    assert stat(result, "pages/invalid/too_large") == 1 and stat(result, "pages/errors") == 0


def test_symlinked_files_are_followed_only_inside_the_start(tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text(PAGE.format(title="secret"))
    folder = tmp_path / "pages"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "real.md").write_text(PAGE.format(title="real"))
    (folder / "passwd.md").symlink_to("/etc/passwd")
    (folder / "secret.md").symlink_to(secret)
    (folder / "alias.md").symlink_to(folder / "sub" / "real.md")
    index = tmp_path / "index"
    result = crawl(index, str(folder))
    assert result.returncode == 0
    # The alias inside the folder is followed: it resolves to the same page, read once.
    assert [d["title"] for d in image_documents(index)] == ["real"]
    assert "/etc/passwd" not in json.dumps(page_documents(index))
    assert stat(result, "pages/refused/symlink") == 2
    assert "PAGES_FOLLOW_SYMLINKS_OUTSIDE" in result.stderr
    anywhere = crawl(tmp_path / "index2", str(folder), settings={"PAGES_FOLLOW_SYMLINKS_OUTSIDE": "True"})
    assert "secret" in {d["title"] for d in image_documents(tmp_path / "index2")}
    assert stat(anywhere, "pages/refused/symlink") == 0


def test_an_unreadable_subfolder_keeps_its_pages(tmp_path):
    import os

    if os.geteuid() == 0:
        # root reads any folder: stand in for the permission error at the walk itself.
        pytest.skip("chmod 000 does not stop root; the fault matrix covers the walk's errors")
    folder = tmp_path / "pages"
    (folder / "locked").mkdir(parents=True)
    (folder / "a.md").write_text(PAGE.format(title="a"))
    (folder / "locked" / "b.md").write_text(PAGE.format(title="b"))
    index = tmp_path / "index"
    crawl(index, str(folder))
    (folder / "locked").chmod(0)
    try:
        result = crawl(index, str(folder))
    finally:
        (folder / "locked").chmod(0o755)
    assert sorted(d["title"] for d in image_documents(index)) == ["a", "b"]
    assert stat(result, "pages/deleted") == 0 and stat(result, "starts/incomplete") == 1


RACE = """
import sys
from pathlib import Path
from scrapy.crawler import CrawlerProcess
from scrapy.utils.project import get_project_settings
from index.writer import SessionLock
from pipeline.exitcodes import exit_status

index, start = sys.argv[1], sys.argv[2]
lock = SessionLock(index)
lock.acquire()  # the other crawl won the race after this one's lock probe
settings = get_project_settings()
settings.set("INDEX_DIR", index, priority="cmdline")
process = CrawlerProcess(settings)
crawler = process.create_crawler("pages")
process.crawl(crawler, start=start)
process.start()
print("EXIT", exit_status(crawler.stats.get_stats()))
"""


def test_the_loser_of_two_simultaneous_crawls_exits_75(tmp_path):
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "a.md").write_text(PAGE.format(title="a"))
    index = tmp_path / "index"
    index.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", RACE, str(index), str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in proc.stderr and "AssertionError" not in proc.stderr, proc.stderr[-3000:]
    assert "EXIT 75" in proc.stdout


def test_index_dir_that_is_a_file_is_one_line_and_exit_1(tmp_path):
    from conftest import run_scrapy

    not_a_dir = tmp_path / "index"
    not_a_dir.write_text("x")
    result = run_scrapy("crawl", "pages", "-s", f"INDEX_DIR={not_a_dir}", "-a", f"start={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
