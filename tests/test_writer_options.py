"""The INDEX_* writer settings are defined once (index.options.WriterOptions) and read the
same way by the crawl (Scrapy settings) and by `python -m index ingest -s NAME=VALUE`."""

from __future__ import annotations

import io
import os

import pytest
from scrapy.settings import Settings

from index import cli
from index.distributed import ingest
from index.options import DEFAULTS, WriterOptions, parse_settings
from pipeline import settings as project_settings
from pipeline.distributed import RedisAddon
from pipeline.pipelines import IndexWriter, writer_options
from pipeline.spiders.pages import PagesSpider


def test_the_project_settings_are_the_writer_defaults():
    for setting, name in WriterOptions.settings().items():
        assert getattr(project_settings, setting) == getattr(DEFAULTS, name), setting
    assert writer_options(Settings()) == DEFAULTS
    assert writer_options(Settings({"INDEX_WRITER_PROCS": None})) == DEFAULTS


def test_text_values_read_as_scrapy_reads_them():
    scrapy_settings = Settings(
        {
            "INDEX_WRITER_PROCS": "1",
            "INDEX_COMMIT_SECONDS": "2.5",
            "INDEX_WRITER_MULTISEGMENT": "false",
            "INDEX_LOCK_WAIT": "1",
            "INDEX_WRITER_PROCESS": "False",
        }
    )
    options = writer_options(scrapy_settings)
    assert options == WriterOptions(
        procs=1, commit_seconds=2.5, multisegment=False, lock_wait=True, writer_process=False
    )
    assert options.procs == scrapy_settings.getint("INDEX_WRITER_PROCS")
    assert options.multisegment == scrapy_settings.getbool("INDEX_WRITER_MULTISEGMENT")
    assert options.lock_wait == scrapy_settings.getbool("INDEX_LOCK_WAIT")


@pytest.mark.parametrize(
    "values",
    [{"INDEX_WRITER_PROCS": "two"}, {"INDEX_LOCK_WAIT": "yes"}, {"INDEX_COMMIT_SECONDS": "soon"}],
)
def test_a_value_that_does_not_read_is_one_line_error(values):
    with pytest.raises(ValueError, match=next(iter(values))):
        WriterOptions.from_settings(values)


def test_the_crawls_index_writer_gets_the_options():
    crawler_settings = Settings({"INDEX_DIR": "/nonexistent/ix", "INDEX_WRITER_PROCS": "1", "INDEX_QUEUE_PAGES": 3})

    class Crawler:
        settings = crawler_settings
        stats = None

        class signals:
            @staticmethod
            def connect(*args, **kwargs):
                pass

    pipeline = IndexWriter.from_crawler(Crawler())  # type: ignore[arg-type]
    assert pipeline.queue_pages == 3 and not pipeline.in_process
    assert pipeline.writer_options["procs"] == 1
    assert pipeline.writer_options["commit_docs"] == DEFAULTS.commit_docs
    assert set(pipeline.writer_options) | {"lock_wait"} == set(DEFAULTS.page_writer())


def test_parse_settings_refuses_unknown_names_and_missing_values():
    assert parse_settings(["INDEX_WRITER_PROCS=1"]) == {"INDEX_WRITER_PROCS": "1"}
    with pytest.raises(ValueError, match="not a writer setting"):
        parse_settings(["INDEX_WRITER_PROCZ=1"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_settings(["INDEX_WRITER_PROCS"])


def test_ingest_honours_the_same_settings(monkeypatch, tmp_path):
    seen = {}

    def fake_ingest(redis_url, index_dir, **kwargs):
        seen.update(kwargs)
        return ingest.IngestStats()

    monkeypatch.setattr(ingest, "ingest", fake_ingest)
    monkeypatch.setattr(cli.sys, "stdout", io.StringIO())
    argv = ["ingest", "--redis", "redis://x", "--index", str(tmp_path), "-s", "INDEX_WRITER_PROCS=1"]
    assert cli.main([*argv, "-s", "INDEX_WRITER_LIMITMB=512"]) == 0
    assert seen["options"] == WriterOptions(procs=1, limitmb=512)

    err = io.StringIO()
    monkeypatch.setattr(cli.sys, "stderr", err)
    assert cli.main([*argv, "-s", "INDEX_WRITER_PROCZ=1"]) == 2
    assert "INDEX_WRITER_PROCZ" in err.getvalue() and err.getvalue().count("\n") == 1


def test_scrapy_redis_keys_are_named_after_the_spider():
    assert ingest.Keys("other").dupefilter == "other:dupefilter"
    assert ingest.KEYS.prefix == PagesSpider.name
    settings = Settings(
        {"REDIS_URL": "redis://x", "ITEM_PIPELINES": {}, "DOWNLOADER_MIDDLEWARES": {}, "SPIDER_MIDDLEWARES": {}}
    )
    RedisAddon().update_settings(settings)
    # scrapy-redis formats this with the spider's name: the key enqueue clears.
    assert settings["SCHEDULER_DUPEFILTER_KEY"] % {"spider": PagesSpider.name} == ingest.KEYS.dupefilter


@pytest.mark.parametrize("procs", ["1", "3", "16", "32"])
def test_a_given_number_of_sub_writers_is_kept_whatever_the_machine(monkeypatch, procs):
    from index.writing.pagewriter import PageWriter

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    options = writer_options(Settings({"INDEX_WRITER_PROCS": procs}))
    writer = PageWriter("/nonexistent/ix", lock=False, **options.page_writer())
    assert writer.procs == int(procs)
    assert PageWriter("/nonexistent/ix", lock=False, **DEFAULTS.page_writer()).procs == 2  # 0: the 2 CPUs
