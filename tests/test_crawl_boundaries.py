"""Hostile input, round two (issue 16), the crawler's side: what a remote listing may make
the crawler read, symlinks out of a start folder, two crawls at once, a gzip bomb, and
poison entries for the distributed indexer. Each test reproduces the finding first."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from conftest import crawl_in_process, image_documents, no_stat, page_documents, run_scrapy, sitemap, stat

PAGE = "---\ntitle: {title}\napi_key: s3cr3t\n---\n![](https://img.test/{title}.jpg) {title} stretch\n"


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
    result = crawl_in_process(
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
    assert stat(result, "pages/invalid/too_large") == 1 and no_stat(result, "pages/errors")


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
    result = crawl_in_process(index, str(folder))
    assert result.returncode == 0
    # The alias inside the folder is followed: it resolves to the same page, read once.
    assert [d["title"] for d in image_documents(index)] == ["real"]
    assert "/etc/passwd" not in json.dumps(page_documents(index))
    assert stat(result, "pages/refused/symlink") == 2
    assert "PAGES_FOLLOW_SYMLINKS_OUTSIDE" in result.stderr
    anywhere = crawl_in_process(tmp_path / "index2", str(folder), settings={"PAGES_FOLLOW_SYMLINKS_OUTSIDE": "True"})
    assert "secret" in {d["title"] for d in image_documents(tmp_path / "index2")}
    assert no_stat(anywhere, "pages/refused/symlink")


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
    crawl_in_process(index, str(folder))
    (folder / "locked").chmod(0)
    try:
        result = crawl_in_process(index, str(folder))
    finally:
        (folder / "locked").chmod(0o755)
    assert sorted(d["title"] for d in image_documents(index)) == ["a", "b"]
    assert no_stat(result, "pages/deleted") and stat(result, "starts/incomplete") == 1


def test_the_loser_of_two_simultaneous_crawls_exits_75(tmp_path):
    from index.writing.lock import SessionLock

    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "a.md").write_text(PAGE.format(title="a"))
    index = tmp_path / "index"
    index.mkdir()
    # The other crawl (this process) won the race after the crawl's lock probe: the crawl
    # runner has no probe, so its crawl meets the lock only when its writer opens.
    lock = SessionLock(index)
    lock.acquire()
    try:
        result = crawl_in_process(index, str(folder))
    finally:
        lock.release()
    assert result.stats["finish_reason"] == "index_locked"
    assert result.returncode == 75


def test_index_dir_that_is_a_file_is_one_line_and_exit_1(tmp_path):
    not_a_dir = tmp_path / "index"
    not_a_dir.write_text("x")
    result = run_scrapy("crawl", "pages", "-s", f"INDEX_DIR={not_a_dir}", "-a", f"start={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
