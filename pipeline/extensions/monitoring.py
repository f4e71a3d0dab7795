"""Files a refresh job leaves for monitoring, written at the end of every crawl:
``STATS_FILE`` (JSON: the summary and all the crawl stats) and ``METRICS_FILE`` (the
Prometheus text format, for node_exporter's textfile collector).

Both are written on ``engine_stopped``, once every ``spider_closed`` handler (the index
writer's last commit and deletions included) has run, and with the exit status the crawl
command will end with (``pipeline.exitcodes``), so the files never disagree with it. Each
is replaced atomically (a temporary file in the same folder, then a rename): a collector
never reads half a file. The last success time survives failed runs: it is carried over
from the previous file, so an alert can say how long the index has gone unrefreshed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from pipeline import settings as defaults
from pipeline.exitcodes import EXIT_LOCKED, EXIT_OK, exit_status

__all__ = ["MonitoringFiles", "metrics_text", "previous_success", "report", "write_atomically"]

logger = logging.getLogger(__name__)

PREFIX = "pages_crawler"
# (summary key, stats key): the crawl's counts, as in its `crawl finished:` line.
PAGE_COUNTS = {
    "seen": "pages/seen",
    "new": "pages/new",
    "changed": "pages/changed",
    "unchanged": "pages/unchanged",
    "deleted": "pages/deleted",
    "invalid": "pages/invalid",
    # Kept by the mass-deletion guard (exit 25): see README, "Deletion needs proof".
    "delete_refused": "pages/delete_refused",
}
IMAGE_COUNTS = {"indexed": "images/indexed", "deleted": "images/deleted"}


def _timestamp(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, dt.datetime) else None


def report(
    stats: Mapping[str, Any],
    *,
    index_dir: str | None,
    index_counts: Mapping[str, int] | None,
    last_success: float | None,
    now: float,
) -> dict[str, Any]:
    """The JSON document of one crawl: a summary for people and alerts, and every stat.

    >>> r = report({"finish_reason": "finished", "pages/seen": 3, "elapsed_time_seconds": 1.5},
    ...            index_dir="data/index", index_counts={"documents": 9, "pages": 3}, last_success=None, now=100.0)
    >>> r["summary"]["pages"]["seen"], r["exit_status"], r["success"], r["last_success"]
    (3, 0, True, 100.0)
    """
    status = exit_status(stats)
    success = status == EXIT_OK
    return {
        "success": success,
        "exit_status": status,
        "finish_reason": stats.get("finish_reason"),
        "started_at": _timestamp(stats.get("start_time")),
        "finished_at": _timestamp(stats.get("finish_time")) or now,
        "duration_seconds": stats.get("elapsed_time_seconds"),
        "last_success": now if success else last_success,
        "summary": {
            "pages": {name: stats.get(key, 0) for name, key in PAGE_COUNTS.items()},
            "images": {name: stats.get(key, 0) for name, key in IMAGE_COUNTS.items()},
            "commits": stats.get("index/commits", 0),
        },
        "index": {"dir": index_dir, **(index_counts or {})} if index_dir else None,
        "stats": {key: _json_value(value) for key, value in sorted(stats.items())},
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _label(value: str) -> str:
    # The exposition format's escapes for label values.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def metrics_text(doc: Mapping[str, Any]) -> str:
    """``report()``'s figures in the Prometheus text exposition format. Every sample
    carries the index as a label, so two refresh jobs (two indexes) on one machine can
    share node_exporter's folder without clashing.

    >>> text = metrics_text(report({"finish_reason": "finished"}, index_dir="ix", index_counts=None,
    ...                            last_success=None, now=100.0))
    >>> print(text.splitlines()[2])
    pages_crawler_last_run_pages{index="ix",outcome="seen"} 0
    """
    index = _label((doc.get("index") or {}).get("dir") or "")
    base = f'index="{index}"'
    families: list[tuple[str, str, list[tuple[str, float]]]] = []
    summary = doc["summary"]

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        families.append((f"{PREFIX}_{name}", help_text, samples))

    family(
        "last_run_pages",
        "Pages of the last crawl, by outcome.",
        [(f'outcome="{k}"', v) for k, v in summary["pages"].items()],
    )
    family(
        "last_run_images",
        "Image documents the last crawl indexed or deleted.",
        [(f'outcome="{k}"', v) for k, v in summary["images"].items()],
    )
    family("last_run_commits", "Index commits of the last crawl.", [("", summary["commits"])])
    family(
        "last_run_starts_incomplete",
        "Starts of the last crawl that were not read completely (none of their pages deleted).",
        [("", (doc.get("stats") or {}).get("starts/incomplete", 0))],
    )
    family("last_run_duration_seconds", "How long the last crawl ran.", [("", doc.get("duration_seconds") or 0.0)])
    family(
        "last_run_exit_status",
        "Exit status of the last crawl (0 ok, 1 failed, 25 mass deletion refused).",
        [("", doc["exit_status"])],
    )
    family(
        "last_run_finish_reason",
        "How the last crawl ended (Scrapy's finish_reason), as a label.",
        [(f'reason="{_label(str(doc.get("finish_reason") or "unknown"))}"', 1)],
    )
    family("last_run_success", "1 if the last crawl succeeded (exit status 0).", [("", 1 if doc["success"] else 0)])
    family("last_run_timestamp_seconds", "When the last crawl ended (Unix time).", [("", doc["finished_at"])])
    family(
        "last_success_timestamp_seconds",
        "When a crawl last succeeded (Unix time; 0: never).",
        [("", doc.get("last_success") or 0)],
    )
    idx = doc.get("index") or {}
    if "documents" in idx:
        family("index_documents", "Live image documents in the index.", [("", idx["documents"])])
        family("index_pages", "Live page documents in the index.", [("", idx["pages"])])
    lines = []
    for name, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            lines.append(f"{name}{{{base}{',' + labels if labels else ''}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def previous_success(path: Path) -> float | None:
    """The last success time recorded in an earlier STATS_FILE or METRICS_FILE."""
    try:
        text = path.read_text("utf-8")
    except OSError:
        return None
    if path.suffix == ".json":
        try:
            value = json.loads(text).get("last_success")
        except (ValueError, AttributeError):
            return None
        return float(value) if isinstance(value, int | float) else None
    name = f"{PREFIX}_last_success_timestamp_seconds"
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                value = float(line.rsplit(None, 1)[1])
            except (IndexError, ValueError):
                return None
            return value or None
    return None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s content at once. A symlink is written through to its target
    (a textfile collector's folder linked to from the crawl's): renaming over the link
    itself would turn it into a regular file nobody reads."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes it private; a collector running as another user must read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MonitoringFiles:
    """Writes STATS_FILE and/or METRICS_FILE when the crawl's engine stops."""

    def __init__(
        self,
        crawler: Crawler,
        stats_file: str | None,
        metrics_file: str | None,
        index_dir: str | None,
    ) -> None:
        self.crawler = crawler
        self.stats_file = Path(stats_file) if stats_file else None
        self.metrics_file = Path(metrics_file) if metrics_file else None
        self.index_dir = index_dir

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        s = crawler.settings
        if not s.get("STATS_FILE") and not s.get("METRICS_FILE"):
            # Off unless STATS_FILE or METRICS_FILE is set. (No message: Scrapy logs a
            # NotConfigured with one as a warning, and a default crawl logs none.)
            raise NotConfigured
        local_index = s.getbool("INDEX_ENABLED", defaults.INDEX_ENABLED) and not s.get("REDIS_URL")
        o = cls(crawler, s.get("STATS_FILE"), s.get("METRICS_FILE"), s.get("INDEX_DIR") if local_index else None)
        crawler.signals.connect(o.engine_stopped, signal=signals.engine_stopped)
        return o

    def _index_counts(self) -> dict[str, int] | None:
        if self.index_dir is None:
            return None
        from index.admin import counts
        from index.api import SearchError

        try:
            return counts(self.index_dir)
        except (SearchError, OSError) as exc:
            logger.warning("monitoring: cannot count the index's documents: %s", exc)
            return None

    def engine_stopped(self) -> None:
        stats = self.crawler.stats.get_stats() if self.crawler.stats else {}
        if exit_status(stats) == EXIT_LOCKED:
            # Another crawl holds the index: this one did nothing, and the one holding it
            # writes these files when it ends (the crawl command refuses most such runs
            # before they start; this is the one that lost the race for the lock).
            logger.info("monitoring files left alone: another crawl holds the index")
            return
        index_counts = self._index_counts()
        now = dt.datetime.now(dt.UTC).timestamp()
        for path, render in ((self.stats_file, _json_text), (self.metrics_file, metrics_text)):
            if path is None:
                continue
            doc = report(
                stats, index_dir=self.index_dir, index_counts=index_counts, last_success=previous_success(path), now=now
            )
            try:
                write_atomically(path, render(doc))
            except OSError as exc:
                # A warning, and the crawl's exit stays its own: the index is what the job
                # is for, and a monitor that stops receiving this file alerts on its
                # last_success timestamp growing old.
                logger.warning("cannot write %s: %s", path, exc)


def _json_text(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
