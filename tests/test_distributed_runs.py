"""Distributed runs against a real redis-server: Redis lost mid-crawl (restart with and
without persistence), runs with an id (--finish refuses while a crawler of the run is
alive), the duplicate filter of a run, page states tied to the index, one rule for a
page twice in a batch, and the indexer's exit statuses (issue 28, findings 3-8)."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_distributed as td
from test_distributed import REDIS_SERVER, crawl_distributed, crawler_stat, enqueue, finish, start_crawler

from conftest import CrawlResult, free_port, index_main, no_stat, page_documents, sitemap
from index.distributed.keys import REPLACED_RUN_TTL

# The Redis fixtures of test_distributed (a redis-server of this module's own).
redis_server, redis_url = td.redis_server, td.redis_url
FAST = ("-s", "REDIS_CRAWLER_TTL=2", "-s", "AUTOTHROTTLE_ENABLED=False")


def crawl(redis_url: str) -> CrawlResult:
    """A crawler of the run, start to end, where its process is not what is tested: in the
    tests' crawl runner (test_distributed.crawl_distributed), with FAST's settings."""
    result = crawl_distributed(redis_url, REDIS_CRAWLER_TTL=2, AUTOTHROTTLE_ENABLED=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def write_pages(root: Path, base: str, n: int) -> list[str]:
    urls = [f"{base}/page-{i}.md" for i in range(n)]
    for i in range(n):
        (root / f"page-{i}.md").write_text(f'+++\ntitle = "p{i}"\n+++\n![](https://x.example/{i}.jpg) Neck {i}\n')
    (root / "sitemap.xml").write_text(sitemap(urls))
    return urls


def ingest_finish(capsys, redis_url: str, index: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return index_main(
        capsys, "ingest", "--redis", redis_url, "--index", str(index), "--idle-exit", "0.5", "--finish", *extra
    )


def no_crawler_alive(r) -> bool:
    """No crawler heartbeat left (a crawler that lost Redis leaves its own to expire)."""
    return not list(r.scan_iter("pages:alive:*"))


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class RestartableRedis:
    """A redis-server of one test, on a free port, that the test stops and starts again."""

    def __init__(self, workdir: Path, persist: bool) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persist = persist
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        keep = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *keep]
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, 10)

    def restart(self) -> None:
        """Down (with persistence: everything saved) and up again at once."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retry: redis-py's default retries the connection the shutdown closes, for 4 s.
        with contextlib.suppress(redis.ConnectionError):
            client = redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))
            client.shutdown(save=self.persist, nosave=not self.persist)
        assert self.proc is not None
        self.proc.wait(timeout=10)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


# Without persistence is close to test_distributed's FLUSHALL test: slow-marked.
@pytest.fixture(
    params=[pytest.param(True, id="persistent"), pytest.param(False, id="volatile", marks=pytest.mark.slow)]
)
def restartable(request, tmp_path) -> Iterator[RestartableRedis]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    server = RestartableRedis(tmp_path, request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_restart_mid_crawl_stops_the_crawler_and_the_next_run_completes(
    restartable, http_root, tmp_path, capsys
):
    """Finding 4: a restart (with persistence: every key back; without: everything gone)
    is losing Redis: exit 1, the run incomplete, nothing deleted; the next run completes.
    (The old code went on after a restart with persistence and exited 0.)"""
    import redis

    root, base, server = http_root
    urls = write_pages(root, base, 40)
    index = tmp_path / "index"
    url = restartable.url
    r = redis.Redis.from_url(url)
    # A first run indexes 10 of the pages: what a faulty run must not delete.
    (root / "sitemap.xml").write_text(sitemap(urls[:10]))
    enqueue(url, f"{base}/sitemap.xml")
    crawl(url)
    assert ingest_finish(capsys, url, index).returncode == 0
    assert len(page_documents(index)) == 10
    (root / "sitemap.xml").write_text(sitemap(urls))

    server.delay = 0.1
    enqueue(url, f"{base}/sitemap.xml")
    # (A heartbeat of 1 s: what the next crawler waits for, once this one has stopped.)
    crawler = start_crawler(url, *FAST, "-s", "CONCURRENT_REQUESTS=2", "-s", "REDIS_CRAWLER_TTL=1")
    try:
        wait_for(lambda: r.xlen("pages:items") >= 3)
        # As quick a restart as can be: the crawler may send no command while Redis is
        # down, and must notice it all the same (it used to wait 1.5 s down, and a crawler
        # slowed by a busy machine still missed it: redis-py reconnected silently).
        restartable.restart()
    finally:
        _, err = crawler.communicate(timeout=120)
    assert crawler.returncode == 1, err[-3000:]
    assert "lost Redis" in err and crawler_stat(err, "redis/errors") >= 1
    assert "Traceback" not in err
    server.delay = 0
    # The run is incomplete: --finish deletes nothing (with persistence, once a crawler
    # has taken up the dead one's work: until then it refuses, the run is not over).
    wait_for(lambda: no_crawler_alive(r))  # the stopped crawler's heartbeat expires
    crawl(url)
    result = ingest_finish(capsys, url, index)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run finished: 0 vanished pages deleted" in result.stdout
    assert len(page_documents(index)) >= 10
    # The next run completes: every page indexed, and a page gone is deleted.
    (root / "page-5.md").unlink()  # indexed by the first run
    enqueue(url, f"{base}/sitemap.xml")
    crawl(url)
    result = ingest_finish(capsys, url, index)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p["url"] for p in page_documents(index)} == set(urls) - {urls[5]}
    assert "run finished: 1 vanished pages deleted" in result.stdout


def test_a_crawlers_client_reconnects_to_the_same_server_only(tmp_path):
    """A crawler's Redis client (pipeline.distributed.CrawlerRedis) takes any restart of
    the server, however short, for losing Redis, and a connection the same server closed
    (its idle `timeout`, a network blip) for nothing."""
    import redis

    from pipeline.distributed import CrawlerRedis

    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    server = RestartableRedis(tmp_path, persist=False)
    server.start()
    try:
        client = CrawlerRedis.from_url(server.url, decode_responses=True)
        assert client.set("k", "v") and client.get("k") == "v"
        redis.Redis(port=server.port).client_kill_filter(_type="normal", skipme=True)
        assert client.get("k") == "v"  # the same server: reconnected
        server.restart()
        for _ in range(2):  # and not on a second try either
            with pytest.raises(redis.ConnectionError, match="restarted"):
                client.ping()
    finally:
        server.stop()


def test_finish_refuses_while_a_crawler_of_the_run_is_alive(redis_url, http_root, tmp_path, capsys):
    """Finding 3: --finish during a crawl used to end the run with "0 complete starts"
    and wipe the reports a later --finish needed; it now refuses with its own status, and
    the run, once over, finishes as usual."""
    import redis

    root, base, server = http_root
    urls = write_pages(root, base, 20)
    index = tmp_path / "index"
    enqueue(redis_url, f"{base}/sitemap.xml")
    crawl(redis_url)
    assert ingest_finish(capsys, redis_url, index).returncode == 0
    (root / "page-0.md").unlink()
    server.delay = 0.2  # 20 pages one at a time: 4 s of crawl, while --finish is refused
    r = redis.Redis.from_url(redis_url)
    enqueue(redis_url, f"{base}/sitemap.xml")
    crawler = start_crawler(redis_url, *FAST, "-s", "CONCURRENT_REQUESTS=1")
    try:
        wait_for(lambda: r.llen("pages:start_urls") == 0)  # it took the start
        result = ingest_finish(capsys, redis_url, index)
        assert result.returncode == 3, result.stderr[-2000:]
        assert "still running" in result.stderr and "nothing deleted" in result.stderr
        assert len(page_documents(index)) == 20
    finally:
        server.delay = 0  # the rest of the crawl, at once
        finish(crawler)
    result = ingest_finish(capsys, redis_url, index)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run finished: 1 vanished pages deleted" in result.stdout
    assert {p["url"] for p in page_documents(index)} == set(urls[1:])


def test_a_late_report_of_a_finished_run_never_reaches_the_next(redis_url, tmp_path):
    """Finding 3's orphan: a report into a run that is over lands under that run's id,
    which the next run's --finish never reads (an orphan report deletes nothing)."""
    import redis

    from index.distributed import ingest

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    enqueue(redis_url, "https://a.test/p")
    first = r.get(ingest.KEYS.run)
    r.lpop(ingest.KEYS.start_urls)  # its crawler is done
    ingest.finish_run(redis_url, str(tmp_path / "index"))
    enqueue(redis_url, "https://a.test/p")
    second = r.get(ingest.KEYS.run)
    assert second != first
    # A late report of the first run, as a crawler sends it (not finished: it marks "*").
    import json

    from index.distributed.keys import REPORT

    late = {"seen": ["https://a.test/p"], "incomplete": [], "listings": {}, "listed": {}}
    r.eval(REPORT, 0, ingest.KEYS.prefix, first, "crawler-late", json.dumps(late), "0", REPLACED_RUN_TTL)
    assert not r.sismember(ingest.KEYS.of_run(second).incomplete, "*")
    assert r.sismember(ingest.KEYS.of_run(first).incomplete, "*")
    # Nobody reads it again: its keys expire instead of staying forever.
    assert 0 < r.ttl(ingest.KEYS.of_run(first).incomplete) <= REPLACED_RUN_TTL
    assert 0 < r.ttl(ingest.KEYS.of_run(first).seen) <= REPLACED_RUN_TTL


def test_a_new_run_fetches_changed_pages_again_without_finish(redis_url, tmp_path, capsys):
    """Finding 6: with a long-running indexer and no --finish, the duplicate filter was
    never cleared, so a changed page was dropped as a duplicate at the next run."""
    import redis

    from index.distributed import ingest
    from index.options import WriterOptions

    pages = tmp_path / "pages"
    pages.mkdir()
    page = pages / "p0.md"
    page.write_text('+++\ntitle = "old"\n+++\n![](https://x.example/0.jpg) Neck\n')
    index = tmp_path / "index"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    runs = []
    for title in ("old", "new"):
        page.write_text(f'+++\ntitle = "{title}"\n+++\n![](https://x.example/0.jpg) Neck\n')
        enqueue(redis_url, str(pages))
        runs.append(r.get(ingest.KEYS.run))
        assert no_stat(crawl(redis_url), "requests/dropped")
        ingest.ingest(redis_url, str(index), block_ms=100, idle_exit=0.3, options=WriterOptions(procs=1))
    assert [p["title"] for p in page_documents(index)] == ["new"]
    # The first run, never finished, was replaced: its reports expire, nothing deleted.
    assert runs[0] != runs[1] and 0 < r.ttl(ingest.KEYS.of_run(runs[0]).seen) <= REPLACED_RUN_TTL


def test_a_rebuilt_index_is_filled_again(redis_url, tmp_path):
    """Finding 5: the page states in Redis described the old index, so after `rm -rf` of
    the index crawlers skipped every page as unchanged and it stayed empty for good. The
    indexer replaces them by the index's own when it starts; crawlers then fetch again."""
    from index.distributed import ingest
    from index.options import WriterOptions

    pages = tmp_path / "pages"
    pages.mkdir()
    for i in range(5):
        (pages / f"p{i}.md").write_text(f'+++\ntitle = "p{i}"\n+++\n![](https://x.example/{i}.jpg) Neck\n')
    index = tmp_path / "index"
    enqueue(redis_url, str(pages))
    crawl(redis_url)
    ingest.ingest(redis_url, str(index), block_ms=100, idle_exit=0.3, options=WriterOptions(procs=1))
    assert len(page_documents(index)) == 5
    import shutil
    import threading

    import redis

    shutil.rmtree(index)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    # A long-running indexer starts first (as the README has it), then the crawlers. It
    # runs beside them here, in a thread, until the crawler is done and the stream drained.
    crawled = threading.Event()
    outcome: list[object] = []

    def indexer() -> None:
        try:
            stop = lambda: crawled.is_set() and r.xlen(ingest.KEYS.stream) == 0  # noqa: E731
            outcome.append(
                ingest.ingest(redis_url, str(index), block_ms=100, stop=stop, options=WriterOptions(procs=1))
            )
        except BaseException as exc:  # noqa: BLE001 (raised in the test below)
            outcome.append(exc)

    thread = threading.Thread(target=indexer)
    thread.start()
    try:
        wait_for(lambda: r.get(ingest.KEYS.state_epoch) is not None or not thread.is_alive())
        enqueue(redis_url, str(pages))
        assert no_stat(crawl(redis_url), "pages/unchanged")
    finally:
        crawled.set()
        thread.join(timeout=60)
    [stats] = outcome
    assert isinstance(stats, ingest.IngestStats), stats
    assert stats.pages == 5 and len(page_documents(index)) == 5


def _page(url: str, content_hash: str) -> dict:
    image = {"position": 0, "image_url": f"{url}.jpg", "caption": "Neck stretch", "tags": []}
    return {"url": url, "format": "none", "content_hash": content_hash, "images": [image], "fetch": {"start": url}}


def test_the_same_page_twice_in_a_batch_indexes_and_publishes_the_last(redis_url, tmp_path):
    """Finding 7: the index kept the first copy, the published state said the last."""
    import redis

    from index.distributed import ingest

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    ingest.ensure_group(r, ingest.KEYS)
    for content_hash in ("1" * 64, "2" * 64):
        r.xadd(ingest.KEYS.stream, {"page": json.dumps(_page("https://a.test/p", content_hash))})
    index = tmp_path / "index"
    ingest.ingest(redis_url, str(index), block_ms=100, idle_exit=0.3)
    [page] = page_documents(index)
    assert page["content_hash"] == "2" * 64
    assert json.loads(r.hget(ingest.KEYS.state, "https://a.test/p"))["content_hash"] == "2" * 64


def test_ingest_on_a_locked_index_exits_75_as_the_crawl(redis_url, tmp_path, capsys):
    """Finding 8: a second indexer on the same index exited 2; the crawl says 75."""
    from index.writing.pagewriter import PageWriter

    holder = PageWriter(str(tmp_path / "index"))
    holder.open()
    try:
        result = index_main(capsys, "ingest", "--redis", redis_url, "--index", str(tmp_path / "index"))
    finally:
        holder.close()
    assert result.returncode == 75, result.stderr


def test_finish_takes_the_guards_settings(monkeypatch, tmp_path):
    """Finding 8: `ingest --finish -s REFRESH_MAX_DELETE_SHARE=...` was refused as "not a
    writer setting"; the guard could not be tuned there."""
    from index import cli
    from index.distributed import ingest
    from index.options import DeletionGuard

    given = {}

    def finish_run(url, index_dir, *, guard, options):
        given["guard"] = guard
        return ingest.plan_deletions({}, set(), set())

    monkeypatch.setattr(ingest, "ingest", lambda *args, **kwargs: ingest.IngestStats())
    monkeypatch.setattr(ingest, "finish_run", finish_run)
    monkeypatch.setattr(cli.sys, "stdout", io.StringIO())
    monkeypatch.setattr(cli.sys, "stderr", io.StringIO())
    argv = ["ingest", "--redis", "redis://fake", "--index", str(tmp_path), "--finish"]
    assert cli.main([*argv, "-s", "REFRESH_MAX_DELETE_SHARE=0.5", "-s", "REFRESH_MAX_DELETE_FEW=9"]) == 0
    assert given["guard"] == DeletionGuard(max_share=0.5, few=9)
    assert cli.main([*argv, "-s", "REFRESH_MAX_DELETE_SHARE=0.5", "--accept-mass-delete"]) == 0
    assert given["guard"] == DeletionGuard(max_share=0.5, accept_mass_delete=True)
    assert cli.main([*argv, "-s", "REFRESH_MAX_DELETE_SHARE=lots"]) == 2


def test_a_crawler_of_a_run_that_is_over_reports_and_exits(redis_url, tmp_path):
    """A crawler belongs to one run: once its run has no work left and `enqueue` begins a
    new one, it reports to its own run and exits 0 instead of mixing two runs' reports."""
    import redis

    from index.distributed import ingest

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "p0.md").write_text('+++\ntitle = "p0"\n+++\n![](https://x.example/0.jpg) Neck\n')
    enqueue(redis_url, str(pages))
    first_run = r.get(ingest.KEYS.run)
    crawler = start_crawler(redis_url, *FAST, idle_close=0)  # stays open: waits for starts
    try:
        wait_for(lambda: r.xlen(ingest.KEYS.stream) == 1)  # its page pushed and released: no work left
        enqueue(redis_url, str(pages))
        assert r.get(ingest.KEYS.run) != first_run  # no work was left: a new run
        _, err = crawler.communicate(timeout=60)
    finally:
        if crawler.poll() is None:
            crawler.kill()
    assert crawler.returncode == 0, err[-3000:]
    assert f"run {first_run} is over" in err
    first = ingest.KEYS.of_run(first_run)
    assert r.smembers(first.incomplete) == set() and r.scard(first.seen) == 1  # its report, complete
    assert r.llen(ingest.KEYS.start_urls) == 1  # the new run's start waits for the next crawler


def test_enqueue_records_a_start_as_the_local_crawl_does(redis_url, tmp_path):
    """One spelling per start on both paths (issue 29): a symlinked release folder is the
    start the user named, not its target, and a URL loses its fragment and default port;
    the distributed run's deletions compare these keys with the pages' starts."""
    import redis

    from index.deletion import canonical_start
    from index.distributed import ingest

    release = tmp_path / "releases" / "v1"
    release.mkdir(parents=True)
    (tmp_path / "current").symlink_to(release)
    named = [f"{tmp_path}/current/", "HTTP://A.test:80/sitemap.xml#top"]
    enqueue(redis_url, *named)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    recorded = r.smembers(ingest.KEYS.of_run(r.get(ingest.KEYS.run)).starts)
    assert recorded == {f"{tmp_path}/current", "http://a.test/sitemap.xml"}
    assert recorded == {canonical_start(s) for s in named}


def test_a_crawler_given_its_own_starts_begins_a_new_run_when_the_old_one_is_done(redis_url):
    """Issue 28 #6 for `scrapy crawl pages -a start=... -s REDIS_URL=...`: joining a run
    with no work left must begin a new one and clear its duplicate filter, as `enqueue`
    does (one Lua rule for both); before, changed pages were dropped as duplicates."""
    import redis

    from index.distributed.keys import JOIN_WITH_STARTS, KEYS

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.set(KEYS.run, "old")
    r.sadd(KEYS.dupefilter, "fingerprint-of-p0")
    run, replaced = r.eval(JOIN_WITH_STARTS, 0, KEYS.prefix, "crawler-a", 60, "new", "/srv/site")
    assert (run, replaced) == ("new", "old")
    assert not r.exists(KEYS.dupefilter) and r.get(KEYS.run) == "new"
    # A second crawler joining while the run has work left stays in it.
    r.zadd(KEYS.requests, {"a request": 0})
    assert r.eval(JOIN_WITH_STARTS, 0, KEYS.prefix, "crawler-b", 60, "newer", "/srv/site") == ["new", ""]
