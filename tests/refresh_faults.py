"""Fault injection for refreshes, many crawls in one process (one reactor): a crawl costs
a fraction of a second here instead of a Scrapy start-up each.

``python tests/refresh_faults.py CASES.json OUT.json`` runs every case against a fresh
copy of one base index and writes, per case, the pages left in the index, the crawl's
stats and its exit status. A case names the faults to inject:

- ``inject``: ``{"method": name, "exc": type name, "when": "entry" | "after_first",
  "calls": "all" | "first"}`` wraps the spider's method so that it raises there;
- ``http``: ``{path: behaviour}`` changes what the local server answers (see
  ``Handler``; a path ending in ``*`` is a prefix), for the HTTP fault matrix;
- ``disk_full``: every commit of the refresh fails with ENOSPC.

A case in a chain (``present``) also says what the sites look like: which pages each start
has, ``version`` (the sitemap index's pages change with it, and say so in a ``<lastmod>``
written in the ``lastmod`` style: ``z``, ``west`` (-05:00), ``future`` (year 2204), ``junk``
or None), ``moved`` (sitemap index pages now answering 301 to a new URL), ``release`` (the
folder start is a symlink switched between two release folders), ``truncate`` (the folder's
files emptied) and ``spell`` (the starts spelled differently). For those cases the runner
also crawls the same sites into a fresh index: the clean crawl the refresh must equal, or
keep old pages against with a counted reason.

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


def page(i: int, tag: str, version: int = 0) -> bytes:
    title = f"{tag} page {i}" + (f" v{version}" if version else "")
    return f"---\ntitle: {title}\n---\n![](https://img.test/{tag}/{i}.jpg) {tag} image {i}\n".encode()


def lastmod(version: int, style: str | None) -> str | None:
    """When the sitemap index's pages last changed, written in one of the styles sites use."""
    import datetime as dt

    stamp = dt.datetime(2024, 6, 1, tzinfo=dt.UTC) + dt.timedelta(hours=version)
    if style == "z":
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "west":  # a later instant that reads as earlier text
        return stamp.astimezone(dt.timezone(-dt.timedelta(hours=5))).isoformat()
    if style == "future":
        return "2204-06-01"
    if style == "junk":
        return "last tuesday"
    return None


def urlset(base: str, paths: list[str], mod: str | None = None) -> bytes:
    when = f"<lastmod>{mod}</lastmod>" if mod else ""
    body = "".join(f"<url><loc>{base}{p}</loc>{when}</url>" for p in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'.encode()


class _Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflowed when a crawl opened its 8 connections
    # while this process (the crawl's own) was busy: the kernel dropped the extra SYNs and
    # the client sent them again a second later, a one-second stall in a crawl in four.
    request_queue_size = 64


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
                how = outer.behaviour.get(path) or next(
                    (v for k, v in outer.behaviour.items() if k.endswith("*") and path.startswith(k[:-1])), "ok"
                )
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
                elif how == "empty":  # a maintenance page served as 200
                    self._send(200, b"", {"Content-Type": "text/html"})
                elif how.startswith("moved:"):
                    self._send(301, b"", {"Location": how.split(":", 1)[1]})
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
                    # The descriptor closes (with an RST: lingering 0 s) only once the
                    # handler's reading file lets go of it too: until then the connection
                    # stayed open, and the crawl saw a timeout instead of a reset.
                    self.rfile.close()
                    self.connection.close()
                    self.close_connection = True
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

        self.httpd = _Listener(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def build_corpus(tmp: Path, server: Server, *, refreshed: bool, present: dict[str, Any] | None = None) -> list[str]:
    """The four starts; ``refreshed`` drops page 0 from each, ``present`` says exactly
    which pages each start has and how the sites look (for chains of refreshes; see the
    module docstring). Sets the server's behaviour for moved pages."""
    keep = {tag: range(1, N_PAGES) if refreshed else range(N_PAGES) for tag in ("folder", "idx", "rob")}
    site = present or {}
    if present is not None:
        keep.update({tag: sorted(present[tag]) for tag in keep if tag in present})
    folder = tmp / "folder"  # a symlink to the current release folder
    release = tmp / f"release{site.get('release', 0)}"
    if folder.is_symlink() and folder.resolve() != release:
        shutil.rmtree(folder.resolve(), ignore_errors=True)
        folder.unlink()
    release.mkdir(exist_ok=True)
    if not folder.is_symlink():
        folder.symlink_to(release, target_is_directory=True)
    for i in range(N_PAGES):
        f = folder / f"p{i}.md"
        if i in keep["folder"]:
            # Rewritten every time (a new mtime): pages go through parse(), where faults
            # are injected, and then count as unchanged by their content hash.
            f.write_bytes(b"" if site.get("truncate") else page(i, "folder"))
        else:
            f.unlink(missing_ok=True)
    base = server.base
    files = server.files
    files.clear()
    version = site.get("version", 0)
    for tag in ("idx", "rob"):
        for i in range(N_PAGES):
            files[f"/{tag}/p{i}.md"] = page(i, tag, version if tag == "idx" else 0)
    for i in site.get("moved", ()):
        files[f"/idx/p{i}-moved.md"] = files.pop(f"/idx/p{i}.md")
        server.behaviour[f"/idx/p{i}.md"] = f"moved:/idx/p{i}-moved.md"
    files["/sub.xml"] = urlset(base, [f"/idx/p{i}.md" for i in keep["idx"]], lastmod(version, site.get("lastmod")))
    files["/index.xml"] = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sub.xml</loc></sitemap></sitemapindex>"
    ).encode()
    files["/rob.xml.gz"] = urlset(base, [f"/rob/p{i}.md" for i in keep["rob"]])
    files["/robots.txt"] = f"User-agent: *\nAllow: /\nSitemap: {base}/rob.xml.gz\n".encode()
    single = not refreshed if present is None else bool(present.get("single"))
    if single:
        files["/single.md"] = page(0, "single")
    if site.get("spell"):
        loud = base.replace("http://", "HTTP://")
        return [f"{folder}/./", f"{loud}/index.xml#", f"{loud}/robots.txt", f"{base}/single.md#x"]
    return [str(folder), f"{base}/index.xml", f"{base}/robots.txt", f"{base}/single.md"]


def reachable(tmp: Path, server: Server, present: dict[str, Any]) -> list[str]:
    """The page URLs a clean crawl of this corpus indexes (the folder's by the path the
    start names, not by the release folder it points to)."""
    urls = [(tmp / "folder" / f"p{i}.md").absolute().as_uri() for i in present["folder"]]
    moved = set(present.get("moved", ()))
    urls += [f"{server.base}/idx/p{i}{'-moved' if i in moved else ''}.md" for i in present["idx"]]
    urls += [f"{server.base}/rob/p{i}.md" for i in present["rob"]]
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


def contents(states: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """What a page holds, as far as a refresh must match a clean crawl."""
    return {url: [state.get("content_hash"), state.get("image_count")] for url, state in states.items()}


def disk_full() -> Any:
    """Every commit fails as on a full disk (the table of contents is a commit's last
    file) until the returned function is called."""
    import errno
    import os

    from whoosh.filedb import filestore

    create = filestore.FileStorage.create_file

    def create_file(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if ".toc" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        return create(self, name, *args, **kwargs)

    filestore.FileStorage.create_file = create_file

    def undo() -> None:
        filestore.FileStorage.create_file = create

    return undo


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
            base_contents = contents(load_page_states(base))
            index = tmp / "case"
            for case in cases:
                present = case.get("present")
                server.behaviour = dict(case.get("http") or {})
                case_starts = build_corpus(tmp, server, refreshed=True, present=present)
                if not case.get("chain"):  # a chain goes on from the previous case's index
                    shutil.rmtree(index, ignore_errors=True)
                    shutil.copytree(base, index)
                runner = CrawlerRunner(settings(index, case.get("settings") or {}))
                crawler = runner.create_crawler(faulty_spider(case.get("inject")))
                undo = disk_full() if case.get("disk_full") else None
                try:
                    yield runner.crawl(crawler, start=case_starts)
                finally:
                    if undo is not None:
                        undo()
                stats = crawler.stats.get_stats()
                clean: dict[str, Any] | None = None
                if present is not None:
                    # The reference: the same sites, crawled into a fresh index without
                    # the injected faults and transfer errors; what the sites serve (a
                    # login wall, an empty 200, a redirect) stays.
                    server.behaviour = {
                        k: v for k, v in server.behaviour.items() if k.endswith("*") or v.startswith("moved:")
                    }
                    shutil.rmtree(tmp / "clean", ignore_errors=True)
                    yield CrawlerRunner(settings(tmp / "clean", {})).crawl("pages", start=case_starts)
                    clean = contents(load_page_states(tmp / "clean"))
                results.append(
                    {
                        "name": case["name"],
                        "base_pages": base_pages,
                        "base": base_contents,
                        "pages": sorted(load_page_states(index)),
                        "exit": exit_status(stats),
                        "stats": {k: v for k, v in stats.items() if isinstance(v, (int, float, str))},
                        "reachable": reachable(tmp, server, present) if present else None,
                        "now": contents(load_page_states(index)),
                        "clean": clean,
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
