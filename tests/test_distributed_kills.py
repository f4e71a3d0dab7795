"""Kill a distributed crawler at generated Redis command boundaries; a second crawler
recovers; every page reachable is indexed exactly once and Redis holds no work.

The fault points are generated, not picked: a traced crawl of the same run counts the
Redis commands of each kind a crawler sends (tests/redis_faults.py: command names, Lua
script names, pipelines), and each point is "SIGKILL right after the reply to the N-th
command of kind K", for N spread over 1..count. `make test` runs a few points
(one per kind of work-taking or work-handing command); the full sweep is marked slow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_distributed as td
from test_distributed import _env, crawl_distributed, documents, enqueue, finish

from conftest import ROOT, page_documents, sitemap

# The Redis fixtures of test_distributed (a redis-server of this module's own).
redis_server, redis_url = td.redis_server, td.redis_url
FAULTS = Path(__file__).resolve().parent / "redis_faults.py"
TTL = 1  # REDIS_CRAWLER_TTL: a killed crawler's work comes back after this many seconds
SETTINGS = (
    "-s",
    f"REDIS_CRAWLER_TTL={TTL}",
    "-s",
    "REDIS_IDLE_CLOSE=0.3",
    "-s",
    "AUTOTHROTTLE_ENABLED=False",
    "-s",
    "LOG_LEVEL=INFO",
)


def crawler(redis_url: str, kill: str = "-", trace: str = "-", *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, str(FAULTS), kill, trace, "crawl", "pages", "-s", f"REDIS_URL={redis_url}", *SETTINGS]
    return subprocess.Popen(
        [*args, *extra], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def one_image_page(i: int) -> str:
    return f'+++\ntitle = "p{i}"\n+++\n[ ![](https://x.example/{i}.jpg)](https://x.example/{i}) Neck stretch {i}\n'


@pytest.fixture
def site(http_root, tmp_path) -> tuple[list[str], set[str]]:
    """Two starts, a folder of local pages and a sitemap of slow HTTP pages (one image
    each); the page URLs."""
    root, base, server = http_root
    folder = tmp_path / "folder"
    for i in range(16):
        part = folder / f"part-{i % 3}"
        part.mkdir(parents=True, exist_ok=True)
        (part / f"page-{i}.md").write_text(one_image_page(i))
    urls = {p.resolve().as_uri() for p in folder.rglob("*.md")}
    for i in range(10):
        (root / f"page-{i}.md").write_text(one_image_page(100 + i))
        urls.add(f"{base}/page-{i}.md")
    (root / "sitemap.xml").write_text(sitemap([f"{base}/page-{i}.md" for i in range(10)]))
    server.delay = 0.05  # requests are in flight when a kill comes
    return [str(folder), f"{base}/sitemap.xml"], urls


def traced_counts(redis_url: str, starts: list[str], tmp_path: Path) -> dict[str, int]:
    """The Redis commands of each kind a crawler sends for this run."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    enqueue(redis_url, *starts)
    trace = tmp_path / "trace.json"
    finish(crawler(redis_url, "-", str(trace)))
    return json.loads(trace.read_text())


def _ingest(redis_url: str, index: Path) -> None:
    """Index what the crawlers, all done, left in the stream: until it is drained."""
    import redis

    from index.distributed import ingest
    from index.options import WriterOptions

    r = redis.Redis.from_url(redis_url)
    drained = lambda: r.xlen(ingest.KEYS.stream) == 0  # noqa: E731
    ingest.ingest(redis_url, str(index), block_ms=100, stop=drained, options=WriterOptions(procs=1))


def points(counts: dict[str, int], kinds: tuple[str, ...] | None = None, spread: int = 5) -> list[str]:
    """K:N for each kind (of ``kinds``, or all), N spread evenly over 1..count."""
    out = []
    for kind, n in sorted(counts.items()):
        if kinds is not None and kind not in kinds:
            continue
        picks = sorted({1, n} | {max(1, round(n * i / (spread - 1))) for i in range(1, spread - 1)})
        out += [f"{kind}:{i}" for i in picks[:spread]]
    return out


def recover(redis_url: str) -> str:
    """The second crawler, which takes up the killed one's work and finishes the run: in
    the tests' crawl runner (nothing of its own process is tested); its log."""
    result = crawl_distributed(redis_url, idle_close=0.3, REDIS_CRAWLER_TTL=TTL, AUTOTHROTTLE_ENABLED=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def kill_and_recover(
    redis_url: str, starts: list[str], urls: set[str], index: Path, point: str, *, must_kill: bool = False
) -> None:
    import shutil

    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    shutil.rmtree(index, ignore_errors=True)
    enqueue(redis_url, *starts)
    first = crawler(redis_url, point)
    _, err = first.communicate(timeout=120)
    killed = first.returncode == -9
    assert killed or (first.returncode == 0 and not must_kill), f"{point}: exit {first.returncode}\n{err[-3000:]}"
    # Its heartbeat expires (TTL), and then the next crawler takes up its work.
    deadline = time.monotonic() + 30
    while [k for k in r.scan_iter("pages:alive:*")] and time.monotonic() < deadline:
        time.sleep(0.05)
    err = recover(redis_url)
    _ingest(redis_url, index)
    got = [p["url"] for p in page_documents(index)]
    assert len(got) == len(set(got)), f"{point}: a page indexed twice"
    missing = urls - set(got)
    assert not missing, f"{point}: {len(missing)} pages lost, e.g. {sorted(missing)[:3]}\n{err[-2000:]}"
    assert set(got) == urls
    images = [d[0] for d in documents(index)]
    assert len(images) == len(set(images)) == len(urls), point  # one image each, once
    # Nothing left behind: no queued, waiting or taken work.
    assert r.zcard("pages:requests") == 0 and r.llen("pages:start_urls") == 0, point
    assert not [k for k in r.scan_iter("pages:taken*") if r.exists(k)], point


@pytest.mark.parametrize(
    "point",
    [
        # Finding 1: right after the 3rd request taken. The old code popped requests in a
        # pipeline (a MULTI) and recorded them loop turns later: the kill lost them.
        "take_request|multi:3",
        # Finding 2: right after taking the first start, before its folder is walked.
        "take_start|lpop:1",
        # Found by the sweep: a request's fingerprint in the duplicate filter but the
        # request not queued yet (two commands in scrapy-redis): the start walked again
        # found it "seen" and dropped it. Now one script.
        "push_request|sadd:14",
        # Found by the sweep once its single-kind points really killed: a sitemap's
        # request released (HDEL) before the page requests its callback yielded were
        # queued (Scrapy consumes async callback output in parallel): every page lost.
        "hdel:1",
    ],
)
def test_a_crawler_killed_at_a_redis_command_loses_nothing(redis_url, site, tmp_path, point):
    """The fast, deterministic part of the sweep below (`make test`)."""
    starts, urls = site
    kill_and_recover(redis_url, starts, urls, tmp_path / "index", point, must_kill=True)


@pytest.mark.slow
def test_kills_at_every_kind_of_redis_command(redis_url, site, tmp_path):
    starts, urls = site
    for point in points(traced_counts(redis_url, starts, tmp_path)):
        kill_and_recover(redis_url, starts, urls, tmp_path / "index", point)
