"""Crawls for the tests, many in one process (one reactor): a crawl costs its own work,
not a Scrapy start-up, a writer process and two sub-writers each.

``python tests/crawl_runner.py`` reads one request per line on stdin, a JSON object
``{"index": DIR, "starts": [...], "settings": {...}, "env": {...}, "cwd": DIR}``, runs that crawl as
``scrapy crawl pages -s INDEX_DIR=DIR -s NAME=VALUE... -a start=...`` would (the
project's settings, the same spider, pipelines and extensions), and answers with one line
``{"exit": status, "stats": {...}, "log": "..."}``: the exit status the crawl command maps
the final stats to (``pipeline.exitcodes.exit_status``), the stats, and what the crawl
logged, formatted as on the command's stderr. ``env`` is set and ``cwd`` (optional) is
the current directory for the crawl's duration (and so for the processes it starts).

What only the command does is not here: the index lock probe before the crawl (exit 75
at once), ``-a start=`` parsing, a process of its own (kill -9, umask, a pseudo-terminal).
Unless a request says otherwise, the index is written in the crawl process by one plain
writer (``INDEX_WRITER_PROCESS=False``, ``INDEX_WRITER_PROCS=1``): the documents are the
same, without a writer process and sub-writers to start for every crawl; and AutoThrottle
is off (its 0.5 s start delay per request to the tests' local servers is politeness, not
behaviour under test). `conftest.crawl_in_process` is the client.
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# See the module docstring.
DEFAULTS = {"INDEX_WRITER_PROCESS": False, "INDEX_WRITER_PROCS": 1, "AUTOTHROTTLE_ENABLED": False}


def serve(replies: io.TextIOBase) -> None:
    from scrapy.utils.reactor import install_reactor

    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from scrapy.crawler import CrawlerRunner
    from scrapy.utils.log import configure_logging
    from scrapy.utils.project import get_project_settings
    from twisted.internet import defer, reactor, threads

    from pipeline.exitcodes import exit_status

    # As the crawl command sets it up: warnings and Twisted's log through logging, and a
    # root handler that each crawler replaces with one built from its own settings. It
    # writes to sys.stderr as it is when the crawler is created: a buffer per crawl.
    configure_logging(get_project_settings())

    @defer.inlineCallbacks
    def crawl(request: dict[str, Any]) -> Any:
        settings = get_project_settings()
        settings.setdict({**DEFAULTS, "INDEX_DIR": request["index"], **request.get("settings", {})}, priority="cmdline")
        log, stderr = io.StringIO(), sys.stderr
        sys.stderr = log
        environ, cwd = dict(os.environ), os.getcwd()
        os.environ.update(request.get("env", {}))
        os.chdir(request.get("cwd") or cwd)
        runner = CrawlerRunner(settings)
        stats: dict[str, Any] = {}
        try:
            crawler = runner.create_crawler("pages")
            yield runner.crawl(crawler, start=request["starts"])
            stats = crawler.stats.get_stats() if crawler.stats else {}
            status = exit_status(stats, bootstrap_failed=runner.bootstrap_failed)
        except Exception:  # noqa: BLE001 (a crawl that could not start: reported to the test, which fails)
            traceback.print_exc(file=log)
            status = 1
        finally:
            sys.stderr = stderr
            os.environ.clear()
            os.environ.update(environ)
            os.chdir(cwd)
        return {"exit": status, "stats": stats, "log": log.getvalue()}

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            while line := (yield threads.deferToThread(sys.stdin.readline)):
                reply = yield crawl(json.loads(line))
                replies.write(json.dumps(reply, default=str) + "\n")
                replies.flush()
        finally:
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()


if __name__ == "__main__":
    # Replies on a descriptor of their own: anything a crawl prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(replies)
