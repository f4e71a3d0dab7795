"""Scrapy settings for the pages crawler. Every tunable of this project is here, with
its default and why; override any of them with ``-s NAME=VALUE``.

These are the defaults, defined once: code that reads a setting with a fallback (a
crawler built without this module, as in tests) takes the fallback from here, or, for
the settings the index side reads too, from ``index.options``, which this module lists."""

from index.options import DEFAULTS as _writer  # lower case: not a setting itself
from index.options import DeletionGuard as _DeletionGuard
from index.options import default_index_dir as _default_index_dir

_guard = _DeletionGuard()

BOT_NAME = "pages"
SPIDER_MODULES = ["pipeline.spiders"]
NEWSPIDER_MODULE = "pipeline.spiders"
COMMANDS_MODULE = "pipeline.commands"

ITEM_PIPELINES = {
    "pipeline.pipelines.ValidatePage": 100,
    "pipeline.pipelines.NormalizeDomains": 200,
    "pipeline.pipelines.NormalizeCaptions": 300,
    "pipeline.pipelines.DeduplicateImages": 400,
    # With REDIS_URL, RedisAddon puts pipeline.distributed.RedisItemStream here instead.
    "pipeline.pipelines.IndexWriter": 900,
}
ADDONS = {"pipeline.distributed.RedisAddon": 0}
# Before RobotsTxtMiddleware (100): a refused redirect hop must not even fetch robots.txt.
# After distributed mode's InflightRequests (50): a request taken from the shared queue is
# recorded before anything else runs (at 50 too, a kill -9 in between lost a page).
DOWNLOADER_MIDDLEWARES = {"pipeline.middlewares.HopCheck": 60}
EXTENSIONS = {
    # Progress replaces LogStats (one periodic line, not two saying the same); with
    # PROGRESS=False it logs LogStats' own line.
    "scrapy.extensions.logstats.LogStats": None,
    "pipeline.extensions.progress.Progress": 0,
    "pipeline.extensions.monitoring.MonitoringFiles": 0,
}

# --- distributed mode (scrapy-redis), off unless REDIS_URL is set ----------------------
# e.g. -s REDIS_URL=redis://127.0.0.1:6379/0: shared scheduler queue and duplicate filter,
# page items to the Redis Stream `pages:items` for `python -m index ingest`.
REDIS_URL = None
# Crawlers wait while the stream holds this many pages (backpressure).
REDIS_STREAM_MAXLEN = 10_000
# Seconds a distributed crawler waits for new starts before it exits (0: forever).
REDIS_IDLE_CLOSE = 0
# Seconds without a heartbeat after which a crawler counts as gone, and other crawlers
# fetch again the requests it had in flight.
REDIS_CRAWLER_TTL = 20

# --- index ------------------------------------------------------------------------
# The writer's defaults are defined once, in index.options.WriterOptions (which
# `python -m index ingest -s NAME=VALUE` reads too); they are listed here to be found.
# Where the Whoosh index lives. Precedence: -s INDEX_DIR=... > $PAGES_INDEX > data/index.
INDEX_DIR = _default_index_dir()
# Set False to crawl without touching the index (e.g. only `-O items.jsonl`).
INDEX_ENABLED = True
# Commit after this many documents, or this many seconds, whichever comes first: a crash
# loses at most one batch, a search sees progress during long crawls. 100k documents
# are ~35 s of work for the default two sub-writers, and give each a 50k segment.
INDEX_COMMIT_DOCS = _writer.commit_docs
INDEX_COMMIT_SECONDS = _writer.commit_seconds
# Commits merge small segments but never into one bigger than this, so no commit has to
# rewrite a big part of the index.
INDEX_SEGMENT_MAX_DOCS = _writer.segment_max_docs
# Whoosh writer memory before it spills sorted runs to disk (shared by the sub-writers).
INDEX_WRITER_LIMITMB = _writer.limitmb
# Whoosh sub-writer processes (its multiprocess writer); 0 = one per CPU, at most two.
# 1 = one plain writer. Two wrote 1M documents in 0.65x the time of one on 2 cores.
INDEX_WRITER_PROCS = _writer.procs
# Each sub-writer commits its own segment. False merges them into one segment at every
# commit, single-threaded, which measured no faster than one plain writer.
INDEX_WRITER_MULTISEGMENT = _writer.multisegment
# Write in a separate process (overlaps with crawling: Whoosh is pure Python and holds
# the GIL). False writes in the crawl process, which is simpler to debug.
INDEX_WRITER_PROCESS = _writer.writer_process
# Pages in flight between crawl and writer; bounds memory when the writer falls behind.
INDEX_QUEUE_PAGES = _writer.queue_pages
# A second crawl on a locked index: fail at once (False) or wait for the lock (True).
INDEX_LOCK_WAIT = _writer.lock_wait

# --- pages spider --------------------------------------------------------------------
# File extensions picked up when a start is a folder (case-insensitive).
PAGES_EXTENSIONS = [".md", ".markdown", ".mdown", ".mkd", ".mdx", ".txt"]
# Hosts besides the sitemap's own whose pages a sitemap may list.
PAGES_ALLOWED_HOSTS: list[str] = []
# A page with more images than this keeps the first ones (logged, counted as
# pages/images_truncated): 100,000 images on one page is a generated page, and would
# cost the single index writer a minute on its own. 0 = no limit.
PAGES_MAX_IMAGES = 10_000
# A symlinked file in a folder start is read only when its target lies inside the start
# folder (a link to /etc/passwd must not become searchable). True follows it anywhere.
PAGES_FOLLOW_SYMLINKS_OUTSIDE = False
# The published address of the site a folder start belongs to (also -a base_url=...),
# e.g. https://example.org/: file pages get the URLs the site generator gives them (Hugo's
# conventions, front matter url/slug/permalink) and root-relative images resolve against
# them (pipeline/siteurls.py). None: pages keep their file:// URLs. Changing it changes
# every file page's URL, the page's identity: the next crawl replaces them all.
PAGES_BASE_URL = None
# Sitemaps have their own size limit (after gunzip): the protocol allows 50 MB
# uncompressed and 50,000 URLs, far above a page's DOWNLOAD_MAXSIZE. A sitemap over it is
# invalid and its start incomplete (nothing of it deleted).
SITEMAP_MAXSIZE = 50 * 1024 * 1024

# --- refresh: when pages are deleted -----------------------------------------------------
# A page is deleted only when its start was read completely and the page was not seen.
# Even then, a start that would lose more than this share of its pages (and more than
# REFRESH_MAX_DELETE_FEW pages), or whose listing came back empty, deletes none of them:
# the crawl logs a warning, counts pages/delete_refused and exits 25 (as rsync's
# --max-delete). An unmounted share or a sitemap replaced by a login page looks like that.
# (Defined in index.options.DeletionGuard, with the index writer's options.)
REFRESH_MAX_DELETE_SHARE = _guard.max_share
REFRESH_MAX_DELETE_FEW = _guard.few
# Accept a real mass deletion once: scrapy crawl pages -a start=... -s REFRESH_ACCEPT_MASS_DELETE=True
REFRESH_ACCEPT_MASS_DELETE = _guard.accept_mass_delete

# --- politeness and limits -----------------------------------------------------------
ROBOTSTXT_OBEY = True
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_TARGET_CONCURRENCY = 4.0
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 30
# Pages are text; anything bigger than this is not a page (logged and counted).
DOWNLOAD_MAXSIZE = 16 * 1024 * 1024
DOWNLOAD_WARNSIZE = 4 * 1024 * 1024
# Local files: no politeness delay, and AutoThrottle leaves this slot alone.
DOWNLOAD_SLOTS = {"local-files": {"concurrency": 64, "delay": 0}}
USER_AGENT = "pages-crawler/0.1 (+https://example.invalid/pages-crawler)"

# --- operations ----------------------------------------------------------------------
LOG_LEVEL = "INFO"
LOGSTATS_INTERVAL = 30.0
# Scrapy's check for a generator callback that returns a value reads and parses the
# callback's source again for every response (its cache misses bound methods): a tenth
# of a crawl's CPU. tests/test_crawl.py checks the spiders' callbacks once instead.
WARN_ON_GENERATOR_RETURN_VALUE = False
TELNETCONSOLE_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
# No listening sockets: a crawl contacts only the sources it was given.
REMOTE_CONTROL_ENABLED = False

# --- monitoring ----------------------------------------------------------------------
# A progress line: redrawn in place when stderr is a terminal (no colour with NO_COLOR;
# TERM=dumb and LOG_FILE count as no terminal), else a `progress:` log line every
# LOGSTATS_INTERVAL. False: Scrapy's plain "Crawled N pages" line instead.
PROGRESS = True
# Written at the end of every crawl (atomically: a temporary file, then a rename), for
# cron and systemd jobs: the final stats and summary as JSON...
STATS_FILE = None
# ...and the same in the Prometheus text format, for node_exporter's textfile collector
# (e.g. /var/lib/node_exporter/textfile_collector/pages.prom).
METRICS_FILE = None
