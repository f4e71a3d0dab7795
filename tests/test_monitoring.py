"""Files for monitoring (STATS_FILE as JSON, METRICS_FILE in the Prometheus text format)
after a normal crawl, a crawl with invalid pages and failed ones; `python -m index stats`
counting live documents only."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, crawl_in_process, full_disk, image_documents, run_scrapy
from index.admin import counts, stats
from index.writing.lock import SessionLock
from pipeline.extensions.monitoring import metrics_text, previous_success, report, write_atomically


def metrics(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The metrics file parsed by prometheus_client: name -> {labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text("utf-8")):
        assert family.type == "gauge"
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "index"))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def one(m: dict, name: str, **labels: str) -> float:
    return m[name][tuple(sorted(labels.items()))]


def monitored(index: Path, tmp_path: Path, *starts: str, full: bool = False):
    """A crawl (in the tests' crawl runner) writing both files; `full`: on a full disk,
    which its writer process meets (test_crawl_bad_input fills it under the `scrapy crawl` command)."""
    settings = {
        "STATS_FILE": str(tmp_path / "out" / "crawl.json"),
        "METRICS_FILE": str(tmp_path / "out" / "crawl.prom"),
    }
    if full:
        settings["INDEX_WRITER_PROCESS"] = True
    result = crawl_in_process(index, *starts, settings=settings, env=full_disk(tmp_path) if full else None)
    return result, json.loads((tmp_path / "out" / "crawl.json").read_text()), metrics(tmp_path / "out" / "crawl.prom")


def test_normal_crawl_then_a_failed_one_keeps_the_last_success(pages, tmp_path):
    index = tmp_path / "index"
    result, doc, m = monitored(index, tmp_path, str(pages))
    assert result.returncode == 0
    assert doc["success"] is True and doc["exit_status"] == 0 and doc["finish_reason"] == "finished"
    assert doc["summary"]["pages"] == {
        "seen": 4,
        "new": 4,
        "changed": 0,
        "unchanged": 0,
        "deleted": 0,
        "invalid": 0,
        "delete_refused": 0,
    }
    assert one(m, "pages_crawler_last_run_starts_incomplete") == 0
    assert doc["summary"]["images"] == {"indexed": 95, "deleted": 0}
    assert doc["index"] == {"dir": str(index), "documents": 95, "pages": 4}
    assert doc["stats"]["pages/seen"] == 4 and doc["stats"]["finish_reason"] == "finished"
    assert doc["duration_seconds"] > 0 and doc["started_at"] <= doc["finished_at"] <= doc["last_success"]
    assert one(m, "pages_crawler_last_run_pages", outcome="new") == 4
    assert one(m, "pages_crawler_last_run_images", outcome="indexed") == 95
    assert one(m, "pages_crawler_last_run_exit_status") == 0
    assert one(m, "pages_crawler_last_run_success") == 1
    assert one(m, "pages_crawler_last_run_finish_reason", reason="finished") == 1
    assert one(m, "pages_crawler_index_documents") == 95
    assert one(m, "pages_crawler_last_run_duration_seconds") > 0
    succeeded_at = one(m, "pages_crawler_last_success_timestamp_seconds")
    assert succeeded_at == pytest.approx(doc["last_success"])
    for name in ("crawl.json", "crawl.prom"):  # readable by a collector running as another user
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) & 0o044 == 0o044
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["crawl.json", "crawl.prom"]  # no temp files left

    # The next run cannot commit (a full disk): exit 1, and the files say so, keeping
    # the time of the last success.
    (pages / "new-page.md").write_text('+++\ntitle = "new"\n+++\n![a](https://x.example.org/a.jpg) A caption\n')
    result, doc, m = monitored(index, tmp_path, str(pages), full=True)
    assert result.returncode == 1
    assert doc["success"] is False and doc["exit_status"] == 1
    assert doc["last_success"] == pytest.approx(succeeded_at)
    assert one(m, "pages_crawler_last_run_exit_status") == 1
    assert one(m, "pages_crawler_last_run_success") == 0
    assert one(m, "pages_crawler_last_success_timestamp_seconds") == pytest.approx(succeeded_at)
    assert one(m, "pages_crawler_last_run_timestamp_seconds") > succeeded_at
    assert one(m, "pages_crawler_index_documents") == 95  # the last commit still serves


def test_crawl_with_invalid_pages(pages, tmp_path):
    (pages / "unclosed.md").write_text("---\ntitle: never closed\n\nbody\n")
    (pages / "binary.md").write_bytes(b"\x00\x01\x02" * 100)
    result, doc, m = monitored(tmp_path / "index", tmp_path, str(pages))
    assert result.returncode == 0
    assert doc["summary"]["pages"]["invalid"] == 2 and doc["summary"]["pages"]["new"] == 4
    assert doc["stats"]["pages/invalid/unclosed_front_matter"] == 1
    assert one(m, "pages_crawler_last_run_pages", outcome="invalid") == 2
    assert one(m, "pages_crawler_last_run_success") == 1


def test_a_first_crawl_that_cannot_commit(pages, tmp_path):
    # Never a success yet: the files say exit 1 and a last success of 0 ("never"), which
    # an alert on the last success time catches at once.
    result, doc, m = monitored(tmp_path / "index", tmp_path, str(pages), full=True)
    assert result.returncode == 1
    assert doc["exit_status"] == 1 and doc["success"] is False and doc["last_success"] is None
    assert one(m, "pages_crawler_last_run_exit_status") == 1
    assert one(m, "pages_crawler_last_success_timestamp_seconds") == 0


def test_a_locked_index_leaves_the_files_alone(pages, tmp_path):
    # Exit 75 at once: another crawl holds the index and will write the files itself when
    # it ends; a run that did nothing must not overwrite them (nor count as a success).
    # (The crawl command's lock probe, before Scrapy starts: the one test of it.)
    index = tmp_path / "index"
    (tmp_path / "s.json").write_text('{"last_success": 1.0}')
    lock = SessionLock(index)
    lock.acquire()
    try:
        result = run_scrapy(
            "crawl", "pages", "-s", f"INDEX_DIR={index}", "-a", f"start={pages}",
            "-s", f"STATS_FILE={tmp_path / 's.json'}", "-s", f"METRICS_FILE={tmp_path / 'm.prom'}",
        )  # fmt: skip
    finally:
        lock.release()
    assert result.returncode == 75
    assert "being written by another process" in result.stderr
    assert "Spider opened" not in result.stderr  # refused before crawling
    assert json.loads((tmp_path / "s.json").read_text()) == {"last_success": 1.0}
    assert not (tmp_path / "m.prom").exists()


def test_metrics_for_every_exit_status_parse():
    for finish_reason, extra, status in [
        ("finished", {}, 0),
        ("index_error", {"index/errors": 1}, 1),
        ("finished", {"pages/delete_refused": 3}, 25),
        ("index_locked", {}, 75),
        ("shutdown", {}, 0),
    ]:
        doc = report(
            {"finish_reason": finish_reason, **extra},
            index_dir='/srv/odd "index"\\\nname',
            index_counts=None,
            last_success=123.0,
            now=456.0,
        )
        assert doc["exit_status"] == status
        families = {f.name: f for f in text_string_to_metric_families(metrics_text(doc))}
        (sample,) = families["pages_crawler_last_run_exit_status"].samples
        assert sample.value == status and sample.labels["index"] == '/srv/odd "index"\\\nname'
        (success,) = families["pages_crawler_last_success_timestamp_seconds"].samples
        assert success.value == (456.0 if status == 0 else 123.0)


def test_previous_success_reads_either_file(tmp_path):
    doc = report({"finish_reason": "finished"}, index_dir="ix", index_counts=None, last_success=None, now=99.5)
    write_atomically(tmp_path / "a.prom", metrics_text(doc))
    write_atomically(tmp_path / "a.json", json.dumps(doc))
    assert previous_success(tmp_path / "a.prom") == 99.5
    assert previous_success(tmp_path / "a.json") == 99.5
    assert previous_success(tmp_path / "missing.prom") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert previous_success(tmp_path / "bad.json") is None


def test_index_stats_count_only_live_documents(pages, tmp_path):
    index = tmp_path / "index"
    assert crawl_in_process(index, str(pages)).returncode == 0
    before = stats(index)
    assert before["documents"] == 95 and before["pages"] == 4
    # Two pages vanish; the refresh deletes their documents (no merge happens yet).
    (pages / "chair-exercises-upper-back.md").unlink()
    (pages / "desk-stretches.md").unlink()
    refresh = crawl_in_process(index, str(pages), settings={"REFRESH_MAX_DELETE_SHARE": "1"})
    assert refresh.returncode == 0, refresh.stderr[-2000:]
    clean = tmp_path / "clean"
    assert crawl_in_process(clean, str(pages)).returncode == 0
    after, expected = stats(index), stats(clean)
    assert after["deleted_documents"] > 0  # deleted, not merged away: their terms are still in the lexicon
    live = image_documents(index)
    assert after["documents"] == len(live) == expected["documents"] < before["documents"]
    assert after["pages"] == expected["pages"] == 2
    assert after["domains"] == expected["domains"] == len({d["domain"] for d in live if d.get("domain")})
    assert after["sites"] == expected["sites"] == len({d["site"] for d in live if d.get("site")})
    assert after["domains"] < before["domains"]
    assert counts(index) == {"documents": after["documents"], "pages": 2}
    # The same figures from the command line, as JSON.
    cli = subprocess.run(
        [sys.executable, "-m", "index", "stats", "--json", "--index", str(index)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    as_json = json.loads(cli.stdout)
    for key in ("documents", "pages", "domains", "sites", "segments", "deleted_documents", "generation"):
        assert as_json[key] == after[key], key
    assert as_json["last_crawl"]["counts"]["deleted"] == 2
