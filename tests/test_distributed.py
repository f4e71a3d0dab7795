"""Distributed mode against a real redis-server (started here on a free port): two crawler
processes and one indexer give the same documents as a local crawl, also when the indexer
is killed -9 midway; crawlers wait on a full stream; refresh rules hold across a run.
Crawlers are `scrapy crawl` processes where the test is about crawlers working side by
side, losing Redis or being held by backpressure; the local reference crawl and the
crawls that only fill the stream run in the tests' crawl runner (`crawl_distributed`),
and starts are enqueued and the indexer run in this process where no process of its own
is needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.corpus import generate
from conftest import (
    ROOT,
    CrawlResult,
    crawl_in_process,
    free_port,
    image_documents,
    index_main,
    page_documents,
    stat,
    stats_of,
)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[str]:
    if not os.path.exists(REDIS_SERVER):
        missing = "Debian redis-server not installed (.ci/run installs it)"
        if os.environ.get("REQUIRE_SYSTEM_PACKAGES"):
            pytest.fail(missing)
        pytest.skip(missing)
    import redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server) -> str:
    import redis

    redis.Redis.from_url(redis_server).flushdb()
    return redis_server


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PAGES_INDEX"}


def start_crawler(redis_url: str, *extra: str, idle_close: float = 0.2) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "scrapy", "crawl", "pages", "-s", f"REDIS_URL={redis_url}"]
    args += ["-s", f"REDIS_IDLE_CLOSE={idle_close}", "-s", "LOG_LEVEL=INFO", *extra]
    return subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_indexer(redis_url: str, index: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "index", "ingest", "--redis", redis_url, "--index", str(index), *extra]
    return subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def crawl_distributed(redis_url: str, *starts: str, idle_close: float = 0.2, **settings: Any) -> CrawlResult:
    """A distributed crawler in the tests' crawl runner, for a test about what it leaves
    in Redis rather than about its process: it takes the starts waiting in Redis (or
    joins a run with ``starts``), pushes its pages to the stream, and exits 0 after
    ``idle_close`` seconds without work. Its INDEX_DIR does not exist: it must write no
    index."""
    settings = {"REDIS_URL": redis_url, "REDIS_IDLE_CLOSE": idle_close, **settings}
    return crawl_in_process(Path("/nonexistent/distributed-crawler-index"), *starts, settings=settings)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return out, err


def documents(index: Path) -> list[tuple[str, str]]:
    return sorted(
        (d["id"], json.dumps({k: v for k, v in d.items() if k != "id"}, sort_keys=True)) for d in image_documents(index)
    )


def stats_of_log(stderr: str) -> dict:
    """The final stats in a crawler process's log."""
    return stats_of(subprocess.CompletedProcess([], 0, "", stderr))


def crawler_stat(stderr: str, key: str) -> int:
    """A stat from a crawler process's log (missing fails: see conftest.stat)."""
    return stat(subprocess.CompletedProcess([], 0, "", stderr), key)


def enqueue(redis_url: str, *starts: str) -> None:
    """`python -m index enqueue` without its start-up or its command line (the two crawlers'
    test runs the command's main)."""
    from index.distributed import ingest

    assert ingest.enqueue(redis_url, list(starts)) == len(starts)


# Pages in each of the corpus' two folders: several indexer batches, and pages left to
# crawl once a crawler's first ones are in the stream.
FOLDER_PAGES = 6
PAGES = 2 * FOLDER_PAGES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """Two folders of generated pages and the documents a local crawl makes of them."""
    root = tmp_path_factory.mktemp("corpus")
    generate(root / "a", FOLDER_PAGES, seed=21)
    generate(root / "b", FOLDER_PAGES, seed=22)
    local = root / "local-index"
    assert crawl_in_process(local, str(root / "a"), str(root / "b")).returncode == 0
    return root, documents(local)


@pytest.fixture(scope="module")
def pushed(redis_server, corpus) -> list[tuple[Any, Any]]:
    """The stream entries a distributed crawl of the corpus pushes, for the tests of the
    indexer: one crawl for them all (each test puts them back with `refill`)."""
    import redis

    root, _ = corpus
    r = redis.Redis.from_url(redis_server)
    r.flushdb()
    enqueue(redis_server, str(root / "a"), str(root / "b"))
    result = crawl_distributed(redis_server)
    assert result.returncode == 0, result.stderr[-3000:]
    entries = r.xrange("pages:items")
    assert len(entries) == PAGES == result.stats["pages/new"]
    r.flushdb()
    return entries


def refill(r: Any, entries: list[tuple[Any, Any]]) -> None:
    for _, fields in entries:
        r.xadd("pages:items", fields)


def test_two_crawlers_and_one_indexer_make_the_local_crawls_documents(redis_url, corpus, tmp_path, capsys):
    from index.distributed import ingest
    from index.options import WriterOptions

    root, expected = corpus
    index = tmp_path / "index"
    # The starts wait in Redis before the crawlers open (`python -m index enqueue`'s main,
    # in this process): each crawler takes one at its first idle round, so no crawler can
    # time out before they are queued (12 s of REDIS_IDLE_CLOSE once lost that race to a
    # loaded machine's start-ups).
    result = index_main(capsys, "enqueue", "--redis", redis_url, str(root / "a"), str(root / "b"))
    assert result.returncode == 0 and "2 starts queued" in result.stdout, result.stderr
    crawlers = [start_crawler(redis_url, idle_close=1) for _ in range(2)]
    # The indexer works while they crawl, in this process, until both have exited and
    # every page they pushed is committed (no idle wait to tune).
    stats = ingest.ingest(
        redis_url,
        str(index),
        batch=5,
        block_ms=100,
        options=WriterOptions(procs=1),
        stop=drained_after(*crawlers, redis_url=redis_url),
    )
    errs = [finish(c)[1] for c in crawlers]
    # Together they reached every page exactly once. Which crawler took which start is
    # the scheduler's business: one that is idle again first (a few local pages take well
    # under a second) may take both starts, and pages the other queued, and then the
    # other counts no page at all (its stat is absent, not 0).
    new = [stats_of_log(e).get("pages/new", 0) for e in errs]
    assert sum(new) == PAGES, new
    assert stats.pages == PAGES and stats.batches >= PAGES // 5, stats
    assert documents(index) == expected


def drained_after(*crawlers: subprocess.Popen[str], redis_url: str, timeout: float = 120) -> Callable[[], bool]:
    """An indexer's ``stop``: every crawler has exited and the stream is drained (its
    entries are deleted once committed); or ``timeout`` passed (the test then fails)."""
    import redis

    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    return lambda: (
        (all(c.poll() is not None for c in crawlers) and r.xlen("pages:items") == 0) or (time.monotonic() > deadline)
    )


def test_indexer_killed_midway_loses_nothing_and_doubles_nothing(redis_url, corpus, pushed, tmp_path):
    import redis

    _, expected = corpus
    index = tmp_path / "index"
    r = redis.Redis.from_url(redis_url)
    refill(r, pushed)  # everything the crawlers pushed waits for the indexer
    # Killed right after its third acknowledged batch (tests/redis_faults.py: a MULTI is
    # how a commit's entries are acknowledged and removed): midway, at the same point every
    # run, where a kill after polling the stream's length raced the indexer draining it.
    faults = Path(__file__).with_name("redis_faults.py")
    # (One plain writer: the kill comes after a commit, whatever the writer.)
    args = ["-m", "index", "ingest", "--redis", redis_url, "--index", str(index), "--batch", "2"]
    args += ["-s", "INDEX_WRITER_PROCS=1"]
    indexer = subprocess.Popen([sys.executable, str(faults), "multi:3", "-", *args], cwd=ROOT, env=_env())
    assert indexer.wait(timeout=120) == -signal.SIGKILL
    assert r.xlen("pages:items") == PAGES - 6  # three batches of 2 acknowledged and deleted
    from index.distributed import ingest
    from index.options import WriterOptions

    # The next indexer claims what the dead one had read but not committed: the same
    # ingest() as `python -m index ingest`, in this process, with one plain writer (two
    # sub-writers started for each commit took a third of this test).
    stats = ingest.ingest(
        redis_url, str(index), options=WriterOptions(procs=1), stop=lambda: r.xlen("pages:items") == 0
    )
    assert stats.pages == PAGES - 6, stats
    assert documents(index) == expected
    ids = [d[0] for d in documents(index)]
    assert len(ids) == len(set(ids))
    assert r.xlen("pages:items") == 0 and r.xpending("pages:items", "indexer")["pending"] == 0


def test_pages_trickling_in_are_committed_together(redis_url, corpus, pushed, tmp_path):
    # Found by the bench: the indexer committed whatever each read returned, so crawlers
    # trickling pages in meant a commit per page or two (and the multiprocess writer
    # starts its sub-writers at every commit): the indexer took 1.6x the local crawl.
    import threading

    import redis

    from index.distributed import ingest

    _, expected = corpus
    r = redis.Redis.from_url(redis_url)

    def trickle() -> None:
        for _, fields in pushed:
            r.xadd("pages:items", fields)
            time.sleep(0.03)

    feeder = threading.Thread(target=trickle)
    feeder.start()
    # Until the last page is in and committed (a read that found the stream dry commits).
    stats = ingest.ingest(
        redis_url,
        str(tmp_path / "index"),
        block_ms=500,
        commit_seconds=60,
        stop=lambda: not feeder.is_alive() and r.xlen("pages:items") == 0,
    )
    feeder.join()
    assert stats.pages == PAGES and stats.batches <= 3, stats
    assert documents(tmp_path / "index") == expected
    assert r.xlen("pages:items") == 0 and r.xpending("pages:items", "indexer")["pending"] == 0


def test_crawlers_wait_while_the_stream_is_full(redis_url, corpus, tmp_path):
    import redis

    from index.distributed import ingest
    from index.options import WriterOptions

    root, _ = corpus
    r = redis.Redis.from_url(redis_url)
    maxlen = FOLDER_PAGES // 2
    crawler = start_crawler(redis_url, "-s", f"REDIS_STREAM_MAXLEN={maxlen}", "-a", f"start={root / 'a'}")
    lengths = []
    drained = drained_after(crawler, redis_url=redis_url)

    def length() -> int:
        lengths.append(r.xlen("pages:items"))
        return lengths[-1]

    deadline = time.monotonic() + 60
    while length() < maxlen and time.monotonic() < deadline:
        time.sleep(0.05)
    hold = time.monotonic() + 1
    while time.monotonic() < hold:  # local pages: without backpressure, the rest would follow at once
        length()
        time.sleep(0.05)
    assert lengths[-1] == maxlen and crawler.poll() is None  # holding, not filling Redis
    # The indexer (in this process) drains it 2 pages a commit until the crawler is done.
    ingest.ingest(
        redis_url,
        str(tmp_path / "index"),
        batch=2,
        block_ms=100,
        options=WriterOptions(procs=1),
        stop=lambda: length() >= 0 and drained(),  # (each look at the stream sampled)
    )
    _, err = finish(crawler)
    assert max(lengths) == maxlen, lengths  # never past REDIS_STREAM_MAXLEN
    assert crawler_stat(err, "redis/backpressure_waits") > 0
    assert len(page_documents(tmp_path / "index")) == FOLDER_PAGES


def test_refresh_rules_hold_across_a_distributed_run(redis_url, tmp_path, capsys):
    import redis

    from index.distributed import ingest

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    pages = tmp_path / "pages"
    n = 6
    generate(pages, n, seed=31)
    index = tmp_path / "index"
    files = sorted(pages.rglob("*.md"))

    def run(crawlers: int = 0, killed: bool = False) -> tuple[list[dict], str]:
        """A run: ``crawlers`` crawler processes side by side, or (0) one crawler in the
        crawl runner; then the indexer drains the stream and finishes the run."""
        enqueue(redis_url, str(pages))
        if killed:  # a crawler of the run killed -9 before it reported what it saw
            run_keys = ingest.KEYS.of_run(r.get(ingest.KEYS.run))
            r.sadd(run_keys.crawlers, "elsewhere-123")
            r.sadd(run_keys.incomplete, "crawler:elsewhere-123")
        if crawlers:
            procs = [start_crawler(redis_url) for _ in range(crawlers)]
            stats = [stats_of_log(finish(p)[1]) for p in procs]
        else:
            result = crawl_distributed(redis_url)
            assert result.returncode == 0, result.stderr[-3000:]
            stats = [result.stats]
        # Every page is in the stream before the indexer starts: 0.3 s of nothing is the end.
        result = index_main(
            capsys, "ingest", "--redis", redis_url, "--index", str(index), "--idle-exit", "0.3", "--finish"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return stats, result.stdout

    run()
    assert len(page_documents(index)) == n
    files[0].unlink()
    with files[1].open("a", encoding="utf-8") as out:
        out.write("[ ![](https://changed.example.com/x.jpg)](https://changed.example.com/) A changed page\n")
    # Two crawlers: their reports add up to the run's (either may have taken any page).
    stats, out = run(crawlers=2)
    assert sum(s.get("pages/unchanged", 0) for s in stats) == n - 2  # skipped from the published state
    assert sum(s.get("pages/changed", 0) for s in stats) == 1
    assert "run finished: 1 vanished pages deleted" in out
    urls = {p["url"] for p in page_documents(index)}
    assert files[0].resolve().as_uri() not in urls and len(urls) == n - 1
    assert any(d["image_url"] == "https://changed.example.com/x.jpg" for d in image_documents(index))

    # A crawler killed -9 mid-run never reports what it saw: its token stays in the
    # run's "incomplete" set and the run deletes nothing, as an interrupted local crawl.
    files[2].unlink()
    _, out = run(killed=True)
    assert "run finished: 0 vanished pages deleted" in out
    assert len(page_documents(index)) == n - 1


def _page(url: str, **changes: object) -> dict:
    image = {"position": 0, "image_url": f"{url}.jpg", "caption": "Neck stretch", "tags": []}
    page = {"url": url, "format": "none", "content_hash": "0" * 64, "images": [image], "fetch": {"start": url}}
    page.update(changes)
    return page


def test_poison_entries_go_to_the_dead_letter_stream_and_the_rest_is_indexed(redis_url, tmp_path):
    import redis

    from index.distributed import ingest

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    ingest.ensure_group(r, ingest.KEYS)
    entries = [
        _page("https://a.test/before"),
        _page("https://a.test/ints", images=[1]),
        _page("https://a.test/object-title", title={"a": 1}),
        _page("https://a.test/far-date", date="9999-12-31T23:59:59-01:00"),
    ]
    for page in entries:
        r.xadd(ingest.KEYS.stream, {"page": json.dumps(page)})
    r.xadd(ingest.KEYS.stream, {"page": "{not json"})
    r.xadd(ingest.KEYS.stream, {"no_page_field": "x"})
    r.xadd(ingest.KEYS.stream, {"page": json.dumps(_page("https://a.test/after"))})
    index = tmp_path / "index"
    stats = ingest.ingest(redis_url, str(index), block_ms=200, idle_exit=0.5)
    assert stats.dead == 4 and stats.pages == 3
    dead = r.xrange(ingest.KEYS.dead)
    reasons = [fields["reason"] for _, fields in dead]
    assert any("bad_image_record" in x for x in reasons) and any("bad_title" in x for x in reasons)
    assert {p["url"] for p in page_documents(index)} == {
        "https://a.test/before",
        "https://a.test/far-date",  # indexed without a date: past the calendar's end in UTC
        "https://a.test/after",
    }
    # Acknowledged: a restarted indexer does not meet them again.
    assert r.xlen(ingest.KEYS.stream) == 0 and r.xpending(ingest.KEYS.stream, "indexer")["pending"] == 0
    again = ingest.ingest(redis_url, str(index), block_ms=200, idle_exit=0.3)
    assert again.dead == 0 and again.pages == 0


def test_a_crawler_that_loses_redis_exits_1_and_the_run_deletes_nothing(redis_url, http_root, tmp_path):
    import redis

    from conftest import sitemap

    root, base, server = http_root
    for i in range(40):
        (root / f"page-{i}.md").write_text(f'+++\ntitle = "p{i}"\n+++\n![](https://x.example/{i}.jpg) Neck {i}\n')
    (root / "sitemap.xml").write_text(sitemap([f"{base}/page-{i}.md" for i in range(40)]))
    server.delay = 0.1
    r = redis.Redis.from_url(redis_url)
    slow = ("-s", "CONCURRENT_REQUESTS=2", "-s", "AUTOTHROTTLE_ENABLED=False")
    crawler = start_crawler(redis_url, *slow, "-a", f"start={base}/sitemap.xml")
    deadline = time.monotonic() + 60
    while r.xlen("pages:items") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    r.flushall()  # a restart without persistence: the stream, its group and the run are gone
    _, err = crawler.communicate(timeout=120)
    assert crawler.returncode == 1, err[-3000:]
    assert "lost Redis" in err and crawler_stat(err, "redis/errors") >= 1
    assert "Traceback" not in err
    # What the crawler could still write marks its run incomplete; the run itself is gone
    # with the flush, so --finish has no run to finish and deletes nothing.
    incomplete = [k for k in r.scan_iter("pages:run:*:incomplete")]
    assert incomplete and b"*" in r.smembers(incomplete[0])
    assert r.get("pages:run") is None


def test_idle_waits_end_on_time_not_at_the_next_poll(redis_url, tmp_path):
    """An idle crawler looks at Redis every IDLE_POLL, not at Scrapy's 5 s engine heartbeat
    (through the engine's slot, a part of Scrapy this pins), and the indexer's --idle-exit
    ends at its time, not at the end of a longer blocking read."""
    from index.distributed import ingest
    from pipeline.distributed import IDLE_POLL

    result = crawl_distributed(redis_url, idle_close=0.2)  # nothing to do
    assert result.returncode == 0, result.stderr[-3000:]
    # Without the wake-up, Scrapy's next look at an idle spider comes 5 s after the first.
    assert result.stats["elapsed_time_seconds"] < 5 - IDLE_POLL, result.stats
    started = time.monotonic()
    ingest.ingest(redis_url, str(tmp_path / "index"), block_ms=4000, idle_exit=0.2)
    assert time.monotonic() - started < 3  # not the 4 s read
