"""Fault injection for refreshes, many crawls in one process (one reactor): a crawl costs
a fraction of a second here instead of a Scrapy start-up each.

``python tests/refresh_faults.py CASES.json OUT.json`` runs every case against a fresh
copy of one base index and writes, per case, the pages left in the index, the crawl's
stats and its exit status. A case names the faults to inject:

- ``inject``: ``{"method": name, "exc": type name, "when": "entry" | "after_first",
  "calls": "all" | "first"}`` wraps the spider's method so that it raises there;
- ``http``: ``{path: behaviour}`` changes what the local server answers (see
  ``Handler``), for the HTTP fault matrix.

The corpus has four starts, each with one page gone since the base crawl: a folder (a
file deleted), a sitemap index (a URL dropped from its sub-sitemap), a robots.txt whose
sitemap dropped a URL, and one page URL that now answers 404. A refresh without faults
deletes exactly those four pages.
"""

from __future__ import annotations

import builtins
import gzip
import http.server
import inspect
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_PAGES = 8


def page(i: int, tag: str) -> bytes:
    return f"---\ntitle: {tag} page {i}\n---\n![](https://img.test/{tag}/{i}.jpg) {tag} image {i}\n".encode()


def urlset(base: str, paths: list[str]) -> bytes:
    body = "".join(f"<url><loc>{base}{p}</loc></url>" for p in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'.encode()


class Server:
    """What the local server answers: a path → (status, headers, body) table, plus
    behaviours that break the transfer itself."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, str] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                how = outer.behaviour.get(path, "ok")
                body = outer.files.get(path)
                if how == "ok" and path.endswith(".gz") and body is not None:
                    body = gzip.compress(body)
                if body is None and how == "ok":
                    self._send(404, b"not found")
                    return
                body = body or b""
                if how.startswith("status:"):
                    status = int(how.split(":")[1])
                    headers = {"Retry-After": "1"} if status == 429 else {}
                    self._send(status, b"error", headers)
                elif how == "html":
                    self._send(
                        200, b"<html><body><form>Please log in</form></body></html>", {"Content-Type": "text/html"}
                    )
                elif how == "bad_loc":
                    self._send(200, body.replace(b"<url>", b"<url><loc>http://[bad/x.md</loc></url><url>", 1))
                elif how == "stray_lt":
                    self._send(200, body.replace(b".md</loc>", b".md<</loc>", 1))
                elif how == "empty_urlset":
                    self._send(200, urlset("", []))
                elif how == "redirect_404":
                    self._send(302, b"", {"Location": "/nowhere.xml"})
                elif how == "reset":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                elif how == "short_length":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body) + 100))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                elif how == "truncated_gzip":
                    self._send(200, gzip.compress(body)[:-30], {"Content-Type": "application/x-gzip"})
                elif how == "gzip_encoding_truncated":
                    self._send(200, gzip.compress(body)[:-30], {"Content-Encoding": "gzip"})
                elif how == "timeout":
                    time.sleep(4)
                    self._send(200, body)
                elif how == "drip":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for i in range(0, len(body), 64):
                        self.wfile.write(body[i : i + 64])
                        self.wfile.flush()
                        time.sleep(0.05)
                elif how.startswith("big:"):
                    # A valid urlset padded to N MB with whitespace inside <loc>.
                    mb = int(how.split(":")[1])
                    pad = b" " * (mb * 1024 * 1024)
                    big = body.replace(b"<loc>", b"<loc>" + pad, 1)
                    self._send(200, gzip.compress(big, 1), {"Content-Type": "application/x-gzip"})
                else:
                    self._send(200, body)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def build_corpus(
    tmp: Path, server: Server, *, refreshed: bool, present: dict[str, list[int]] | None = None
) -> list[str]:
    """The four starts; ``refreshed`` drops page 0 from each, ``present`` says exactly
    which pages each start has (for chains of refreshes)."""
    keep = {tag: range(1, N_PAGES) if refreshed else range(N_PAGES) for tag in ("folder", "idx", "rob")}
    if present is not None:
        keep.update({tag: sorted(present[tag]) for tag in keep if tag in present})
    folder = tmp / "folder"
    folder.mkdir(exist_ok=True)
    for i in range(N_PAGES):
        f = folder / f"p{i}.md"
        if i in keep["folder"]:
            # Rewritten every time (a new mtime): pages go through parse(), where faults
            # are injected, and then count as unchanged by their content hash.
            f.write_bytes(page(i, "folder"))
        else:
            f.unlink(missing_ok=True)
    base = server.base
    files = server.files
    files.clear()
    for tag in ("idx", "rob"):
        for i in range(N_PAGES):
            files[f"/{tag}/p{i}.md"] = page(i, tag)
    files["/sub.xml"] = urlset(base, [f"/idx/p{i}.md" for i in keep["idx"]])
    files["/index.xml"] = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sub.xml</loc></sitemap></sitemapindex>"
    ).encode()
    files["/rob.xml.gz"] = urlset(base, [f"/rob/p{i}.md" for i in keep["rob"]])
    files["/robots.txt"] = f"User-agent: *\nAllow: /\nSitemap: {base}/rob.xml.gz\n".encode()
    single = not refreshed if present is None else bool(present.get("single"))
    if single:
        files["/single.md"] = page(0, "single")
    return [str(folder), f"{base}/index.xml", f"{base}/robots.txt", f"{base}/single.md"]


def reachable(tmp: Path, server: Server, present: dict[str, list[int]]) -> list[str]:
    """The page URLs a clean crawl of this corpus indexes."""
    urls = [(tmp / "folder" / f"p{i}.md").resolve().as_uri() for i in present["folder"]]
    urls += [f"{server.base}/{tag}/p{i}.md" for tag in ("idx", "rob") for i in present[tag]]
    if present.get("single"):
        urls.append(f"{server.base}/single.md")
    return sorted(urls)


def faulty_spider(inject: dict[str, str] | None) -> type:
    from pipeline.spiders.pages import PagesSpider

    if not inject:
        return PagesSpider

    def make() -> BaseException:
        if inject["exc"] == "UnicodeDecodeError":
            return UnicodeDecodeError("utf-8", b"\xff", 0, 1, "injected fault")
        return getattr(builtins, inject["exc"])("injected fault")

    name, when, calls = inject["method"], inject.get("when", "entry"), inject.get("calls", "all")
    original = getattr(PagesSpider, name)
    state = {"calls": 0}

    def armed() -> bool:
        state["calls"] += 1
        return calls == "all" or state["calls"] == 1

    if inspect.isgeneratorfunction(original):

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            fire = armed()
            if fire and when == "entry":
                raise make()
            for n, value in enumerate(original(self, *args, **kwargs)):
                yield value
                if fire and n == 0:
                    raise make()
            if fire:
                raise make()  # nothing was yielded: fail at the end instead

    else:

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            fire = armed()
            if fire and when == "entry":
                raise make()
            result = original(self, *args, **kwargs)
            if fire:
                raise make()
            return result

    return type("FaultySpider", (PagesSpider,), {name: wrapped, "name": "pages"})


def run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from scrapy.utils.reactor import install_reactor

    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from scrapy.crawler import CrawlerRunner
    from scrapy.utils.project import get_project_settings
    from twisted.internet import defer, reactor

    from index.model.state import load_page_states
    from pipeline.exitcodes import exit_status

    tmp = Path(tempfile.mkdtemp(prefix="refresh-faults-"))
    server = Server()
    results: list[dict[str, Any]] = []

    def settings(index: Path, extra: dict[str, Any]) -> Any:
        s = get_project_settings()
        s.setdict(
            {
                "INDEX_DIR": str(index),
                "INDEX_WRITER_PROCESS": False,
                "INDEX_WRITER_PROCS": 1,
                "LOG_LEVEL": "ERROR",
                "AUTOTHROTTLE_ENABLED": False,
                "RETRY_TIMES": 0,
                "DOWNLOAD_TIMEOUT": 2,
                "PROGRESS": False,
                **extra,
            },
            priority="cmdline",
        )
        return s

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            base = tmp / "base"
            starts = build_corpus(tmp, server, refreshed=False)
            runner = CrawlerRunner(settings(base, {}))
            yield runner.crawl("pages", start=starts)
            base_pages = sorted(load_page_states(base))
            index = tmp / "case"
            for case in cases:
                present = case.get("present")
                build_corpus(tmp, server, refreshed=True, present=present)
                server.behaviour = dict(case.get("http") or {})
                if not case.get("chain"):  # a chain goes on from the previous case's index
                    shutil.rmtree(index, ignore_errors=True)
                    shutil.copytree(base, index)
                runner = CrawlerRunner(settings(index, case.get("settings") or {}))
                crawler = runner.create_crawler(faulty_spider(case.get("inject")))
                yield runner.crawl(crawler, start=starts)
                stats = crawler.stats.get_stats()
                results.append(
                    {
                        "name": case["name"],
                        "base_pages": base_pages,
                        "pages": sorted(load_page_states(index)),
                        "exit": exit_status(stats),
                        "stats": {k: v for k, v in stats.items() if isinstance(v, (int, float, str))},
                        "reachable": reachable(tmp, server, present) if present else None,
                    }
                )
                if not case.get("chain"):
                    build_corpus(tmp, server, refreshed=False)  # the next case starts from the base
        finally:
            server.httpd.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    return results


if __name__ == "__main__":
    cases = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run(cases), indent=1, default=str))
