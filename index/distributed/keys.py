"""The Redis protocol of distributed crawling, shared by the crawlers
(:mod:`pipeline.distributed`) and the indexer (:mod:`index.distributed.ingest`): every key,
and every step that must not be split by a kill, as one Lua script.

Each script starts with its name in a comment (``-- take_request``): logs and the kill
tests (tests/redis_faults.py) tell them apart by it. The scripts build key names from the
prefix they are given, so they assume one Redis server, not a cluster.

No Scrapy here; ``redis`` is imported lazily.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DUPEFILTER_KEY",
    "KEYS",
    "REQUESTS_KEY",
    "Keys",
    "RunKeys",
    "connect",
    "crawler_token",
    "ensure_group",
    "new_run_id",
]


# scrapy-redis's name for a spider's duplicate filter (its default); RedisAddon sets it as
# SCHEDULER_DUPEFILTER_KEY, so the crawlers and this module use this one spelling.
DUPEFILTER_KEY = "%(spider)s:dupefilter"
# scrapy-redis's name for a spider's request queue (a sorted set), the same way.
REQUESTS_KEY = "%(spider)s:requests"


@dataclass(frozen=True)
class RunKeys:
    """The keys of one run (``<prefix>:run:<id>:...``): reports of one run never mix with
    another's, and finishing a run deletes only its own."""

    base: str

    @property
    def starts(self) -> str:  # every start of the run
        return f"{self.base}:starts"

    @property
    def seen(self) -> str:  # every page URL a crawler of the run reached
        return f"{self.base}:seen"

    @property
    def incomplete(self) -> str:  # starts that did not complete, "*", or crawler:<token>
        return f"{self.base}:incomplete"

    @property
    def listings(self) -> str:  # start -> its listings opened less those read to the end
        return f"{self.base}:listings"

    @property
    def listed(self) -> str:  # start -> entries its listings yielded
        return f"{self.base}:listed"

    @property
    def crawlers(self) -> str:  # every crawler that took work of the run
        return f"{self.base}:crawlers"

    def all(self) -> list[str]:
        return [self.starts, self.seen, self.incomplete, self.listings, self.listed, self.crawlers]


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keys:
    """Every Redis key the distributed mode uses, under one prefix: the spider's name
    (``pipeline.spiders.pages.PagesSpider.name``), which scrapy-redis names its own keys
    after."""

    prefix: str = "pages"

    @property
    def dupefilter(self) -> str:  # scrapy-redis: fingerprints of every request of the run
        return DUPEFILTER_KEY % {"spider": self.prefix}

    @property
    def requests(self) -> str:  # scrapy-redis: the shared request queue (sorted set)
        return REQUESTS_KEY % {"spider": self.prefix}

    @property
    def stream(self) -> str:  # page items, crawlers → indexer
        return f"{self.prefix}:items"

    @property
    def group(self) -> str:
        return "indexer"

    @property
    def state(self) -> str:  # url → refresh state JSON, indexer → crawlers
        return f"{self.prefix}:state"

    @property
    def state_epoch(self) -> str:  # bumped whenever the state is replaced from the index
        return f"{self.prefix}:state:epoch"

    @property
    def start_urls(self) -> str:  # starts waiting for a crawler
        return f"{self.prefix}:start_urls"

    @property
    def run(self) -> str:  # the current run's id
        return f"{self.prefix}:run"

    def of_run(self, run: str) -> RunKeys:
        return RunKeys(f"{self.prefix}:run:{run}")

    @property
    def crawlers(self) -> str:  # tokens of crawlers that may hold taken work
        return f"{self.prefix}:crawlers"

    def alive(self, token: str) -> str:  # the crawler's heartbeat (a key with a TTL)
        return f"{self.prefix}:alive:{token}"

    def taken(self, token: str) -> str:  # lease id -> "score\nrequest" it took
        return f"{self.prefix}:taken:{token}"

    def taken_starts(self, token: str) -> str:  # starts it took and has not queued fully
        return f"{self.prefix}:taken-starts:{token}"

    @property
    def dead(self) -> str:  # entries the indexer could not use, with the reason
        return f"{self.prefix}:dead"


KEYS = Keys()


def connect(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


# Whether the current run still has work: queued, waiting or taken by any crawler. A run
# with work left goes on; one without can give way to a new run. (A Lua function for
# the scripts below; RUN_HAS_WORK asks it alone.)
WORK_LEFT = """
local function work_left(prefix)
  if redis.call('ZCARD', prefix .. ':requests') > 0 then return true end
  if redis.call('LLEN', prefix .. ':start_urls') > 0 then return true end
  for _, token in ipairs(redis.call('SMEMBERS', prefix .. ':crawlers')) do
    if redis.call('HLEN', prefix .. ':taken:' .. token) > 0 then return true end
    if redis.call('LLEN', prefix .. ':taken-starts:' .. token) > 0 then return true end
  end
  return false
end
"""

RUN_HAS_WORK = "-- run_has_work\n" + WORK_LEFT + "return work_left(ARGV[1]) and 1 or 0\n"

# Starts go to the current run, or to a new one when there is none or the current one
# has no work left (its crawlers are done; a run nobody finished deletes nothing: its
# reports stay behind under its id, and its duplicate filter goes, so that the new run
# fetches every page again). The one rule for `enqueue` and for a crawler given its own
# starts, each in one script: a --finish cannot end the run in between.
CURRENT_RUN = (
    WORK_LEFT
    + """
local function current_run(prefix, fresh)
  local run = redis.call('GET', prefix .. ':run')
  if run and work_left(prefix) then return run, '' end
  redis.call('DEL', prefix .. ':dupefilter')
  redis.call('SET', prefix .. ':run', fresh)
  return fresh, run or ''
end
"""
)

# Returns {run id, the run it replaced or ''}.
ENQUEUE = (
    "-- enqueue\n"
    + CURRENT_RUN
    + """
local prefix, fresh = ARGV[1], ARGV[2]
local run, replaced = current_run(prefix, fresh)
for i = 3, #ARGV do
  redis.call('SADD', prefix .. ':run:' .. run .. ':starts', ARGV[i])
  redis.call('RPUSH', prefix .. ':start_urls', ARGV[i])
end
return {run, replaced}
"""
)


def crawler_token() -> str:
    """A crawler's name in the keys: its host and process, and a random part, because a
    restarted container gets the same host name and PID (1): a new crawler under a dead
    one's name would keep its lease alive and then release its taken work as done."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


# The stream and its consumer group, created when missing; never an error (a crawler
# takes any Redis error for a lost Redis), so the group's "already exists" stays inside.
ENSURE_GROUP = """-- ensure_group
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return 1
"""


def ensure_group(r: Any, keys: Keys) -> None:
    r.eval(ENSURE_GROUP, 1, keys.stream, keys.group)


# Ends the run ARGV[2] if it is still the current one: deletes its keys and its
# duplicate filter. (A crawler that reports after this writes keys nobody reads.)
END_RUN = """-- end_run
local prefix, run = ARGV[1], ARGV[2]
if redis.call('GET', prefix .. ':run') ~= run then return 0 end
redis.call('DEL', prefix .. ':run', prefix .. ':dupefilter', unpack(KEYS))
return 1
"""


# --- the crawlers' steps ------------------------------------------------------------------
# Every script that takes work joins the crawler to the current run (ARGV: prefix, token,
# the crawler's run or '', heartbeat TTL) and answers 'over' when the crawler belongs to
# another run (the run it worked for was finished or replaced) and 'norun' without one.
_JOIN = """
local prefix, token, mine, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run = redis.call('GET', prefix .. ':run')
if not run then return {'norun'} end
if mine ~= '' and mine ~= run then return {'over', run} end
local function join()
  redis.call('SADD', prefix .. ':crawlers', token)
  redis.call('SADD', prefix .. ':run:' .. run .. ':crawlers', token)
  redis.call('SADD', prefix .. ':run:' .. run .. ':incomplete', 'crawler:' .. token)
  redis.call('SET', prefix .. ':alive:' .. token, run, 'EX', ttl)
end
"""

# The lowest-score request of the queue (scrapy-redis: score = -priority) moves to the
# crawler's taken requests, under its SHA1 as lease id (queue members are unique).
TAKE_REQUEST = (
    "-- take_request\n"
    + _JOIN
    + """
local queue, taken = prefix .. ':requests', prefix .. ':taken:' .. token
local got = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
if #got == 0 then return {'empty', run} end
join()
redis.call('ZREMRANGEBYRANK', queue, 0, 0)
local lease = redis.sha1hex(got[1])
redis.call('HSET', taken, lease, got[2] .. '\\n' .. got[1])
return {'ok', run, lease, got[1]}
"""
)

# The next waiting start moves to the crawler's taken starts; with the state epoch, so
# that a crawler notices the indexer replaced the page states.
TAKE_START = (
    "-- take_start\n"
    + _JOIN
    + """
local start = redis.call('LMOVE', prefix .. ':start_urls', prefix .. ':taken-starts:' .. token, 'LEFT', 'RIGHT')
if not start then return {'empty', run} end
join()
return {'ok', run, start, redis.call('GET', prefix .. ':state:epoch') or '0'}
"""
)

# Joins the current run (a new one when there is none) for a crawler with starts of its
# own (-a start=), and records them as the run's starts.
JOIN_WITH_STARTS = (
    "-- join\n"
    + CURRENT_RUN
    + """
local prefix, token, ttl, fresh = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run, replaced = current_run(prefix, fresh)
redis.call('SADD', prefix .. ':crawlers', token)
redis.call('SADD', prefix .. ':run:' .. run .. ':crawlers', token)
redis.call('SADD', prefix .. ':run:' .. run .. ':incomplete', 'crawler:' .. token)
redis.call('SET', prefix .. ':alive:' .. token, run, 'EX', ttl)
for i = 5, #ARGV do redis.call('SADD', prefix .. ':run:' .. run .. ':starts', ARGV[i]) end
return {run, replaced}
"""
)

# A run replaced without --finish: its reports are never read again, but a crawler may
# still add a late one, so they go in a while rather than at once.
REPLACED_RUN_TTL = 7 * 24 * 3600


def forget_replaced_run(r: Any, keys: Keys, replaced: str) -> None:
    if not replaced:
        return
    logger.warning("run %s had no work left and was never finished: nothing of it is deleted", replaced)
    for key in keys.of_run(replaced).all():
        r.expire(key, REPLACED_RUN_TTL)


# A request into the queue unless the run's duplicate filter has its fingerprint (ARGV[4];
# '' for a request that is not filtered), in one step: recording the fingerprint and
# queueing the request apart let a kill in between lose the request for the run (the
# start walked again found it "seen"). The request it comes from (a retry, a redirect:
# ARGV[3]) is released in the same step, its successor being queued or a duplicate.
# 1 when queued, 0 for a duplicate.
PUSH_REQUEST = """-- push_request
if ARGV[3] ~= '' then redis.call('HDEL', KEYS[2], ARGV[3]) end
if ARGV[4] ~= '' and redis.call('SADD', KEYS[3], ARGV[4]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# A page into the stream and its request released, in one step. Never creates the
# stream: a stream that is gone means Redis lost its data (restarted without persistence).
PUSH_ITEM = """-- push_item
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'page', ARGV[1])
if ARGV[2] ~= '' then redis.call('HDEL', KEYS[2], ARGV[2]) end
return id
"""

# The taken requests and starts of every crawler whose heartbeat expired go back to the
# queue (starts to the head of theirs). Idempotent and atomic: one crawler recovers them.
RECOVER = """-- recover
local prefix = ARGV[1]
local n = 0
for _, token in ipairs(redis.call('SMEMBERS', prefix .. ':crawlers')) do
  if redis.call('EXISTS', prefix .. ':alive:' .. token) == 0 then
    local taken, starts = prefix .. ':taken:' .. token, prefix .. ':taken-starts:' .. token
    for _, v in ipairs(redis.call('HVALS', taken)) do
      local i = string.find(v, '\\n', 1, true)
      redis.call('ZADD', prefix .. ':requests', string.sub(v, 1, i - 1), string.sub(v, i + 1))
      n = n + 1
    end
    local left = redis.call('LRANGE', starts, 0, -1)
    for i = #left, 1, -1 do redis.call('LPUSH', prefix .. ':start_urls', left[i]); n = n + 1 end
    redis.call('DEL', taken, starts)
    redis.call('SREM', prefix .. ':crawlers', token)
  end
end
return n
"""

# What a crawler saw, into its run, in one step (ARGV[4]: a JSON report; ARGV[5]: '1'
# when the crawler finished its work, so its token leaves the incomplete set).
REPORT = """-- report
local prefix, run, token = ARGV[1], ARGV[2], ARGV[3]
local report = cjson.decode(ARGV[4])
local base = prefix .. ':run:' .. run
local function sadd(key, list)
  for i = 1, #list, 1000 do redis.call('SADD', key, unpack(list, i, math.min(i + 999, #list))) end
end
sadd(base .. ':seen', report.seen)
sadd(base .. ':incomplete', report.incomplete)
for start, n in pairs(report.listings) do redis.call('HINCRBY', base .. ':listings', start, n) end
for start, n in pairs(report.listed) do redis.call('HINCRBY', base .. ':listed', start, n) end
if ARGV[5] == '1' then
  redis.call('SREM', base .. ':incomplete', 'crawler:' .. token)
  redis.call('DEL', prefix .. ':taken:' .. token)
  redis.call('SREM', prefix .. ':crawlers', token)
else
  redis.call('SADD', base .. ':incomplete', '*')
end
-- A late report of a run that is over (finished, or replaced): nobody reads it again;
-- its keys go after a while instead of staying forever.
if redis.call('GET', prefix .. ':run') ~= run then
  for _, part in ipairs({':seen', ':incomplete', ':listings', ':listed'}) do
    redis.call('EXPIRE', base .. part, ARGV[6])
  end
end
return 1
"""
