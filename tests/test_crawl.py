"""The crawl on the example pages and on broken, edited, several and remote starts; the
real `scrapy crawl` and `scrapy search` commands in subprocesses where the command itself is
what is tested (the seed crawl, repeated -a start=, exit codes, one-line errors), the other
crawls in the tests' crawl runner (conftest.crawl_in_process)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from conftest import (
    HIT_KEYS,
    ROOT,
    SEED,
    crawl,
    crawl_in_process,
    image_documents,
    index_main,
    page_documents,
    run_scrapy,
    sitemap,
    stat,
)

EXAMPLES = ROOT / "examples" / "pages"


def comparable(docs: list[dict]) -> list[tuple]:
    """Documents without what depends on where the page was read from."""
    out = []
    for d in docs:
        name = d["page_url"].rsplit("/", 1)[-1]
        keep = {k: v for k, v in d.items() if k not in ("page_url", "id", "image_url", "link_url")}
        image = d["image_url"].rsplit("/", 1)[-1]
        out.append((name, d["position"], image, json.dumps(keep, sort_keys=True)))
    return sorted(out)


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seed")
    shutil.copy(SEED, folder / SEED.name)
    index = folder / "index"
    result = crawl_in_process(index, str(folder))
    assert result.returncode == 0, result.stderr[-2000:]
    return index


def test_seed_crawl_gives_88_documents_and_recrawl_keeps_88(seed_index):
    docs = image_documents(seed_index)
    assert len(docs) == 88
    assert sorted(d["position"] for d in docs) == list(range(88))
    first = next(d for d in docs if d["position"] == 0)
    assert first["title"] == "Chair Exercises For Upper Back"
    assert first["author"] == "Our Writers"
    assert first["date"] == "2020-11-09T06:14:50.636078"
    folder = seed_index.parent
    result = crawl_in_process(seed_index, str(folder))
    assert result.returncode == 0
    assert len(image_documents(seed_index)) == 88
    assert len(page_documents(seed_index)) == 1


def test_search_json_lines_have_contract_fields(seed_index):
    result = run_scrapy("search", "--json", "--limit", "100", 'title:"upper back"', "-s", f"INDEX_DIR={seed_index}")
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(hits) == 88
    assert all(set(hit) == HIT_KEYS for hit in hits)
    assert result.stderr == ""


def test_search_exit_codes_and_messages(seed_index, tmp_path, capsys):
    ok = run_scrapy("search", "chair yoga", "-s", f"INDEX_DIR={seed_index}")
    assert ok.returncode == 0 and "results in" in ok.stdout
    none = run_scrapy("search", "xyzzyplugh", "-s", f"INDEX_DIR={seed_index}")
    assert none.returncode == 1
    bad = run_scrapy("search", "title:(", "-s", f"INDEX_DIR={seed_index}")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    missing = index_main(capsys, "search", "--index", str(tmp_path / "none"), "x")
    assert missing.returncode == 2
    assert "scrapy crawl pages -a start=" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_python_m_index_search_matches_scrapy_search(seed_index, capsys):
    a = run_scrapy("search", "--json", "theraband", "-s", f"INDEX_DIR={seed_index}")
    b = index_main(capsys, "search", "--json", "--index", str(seed_index), "theraband")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    assert "theraband™" in json.loads(b.stdout.splitlines()[0])["caption"]


def test_good_and_broken_pages(tmp_path):
    folder = tmp_path / "pages"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(SEED, folder / "seed.md")
    (folder / "sub" / "good.md").write_text("---\ntitle: Good\n---\n![](https://x.test/a.jpg) fine\n")
    (folder / "unclosed.md").write_text('+++\ntitle = "x"\n![](https://x.test/b.jpg) lost\n')
    (folder / "bad-yaml.md").write_text("---\ntitle: [oops\n---\nbody\n")
    (folder / "bad-json.md").write_text('{"title": "x",\n\n![](a.jpg)\n')
    (folder / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00")
    (folder / "dir.md").mkdir()  # a folder with a page-like name is not a page
    (folder / "notes.rst").write_text("ignored: not a page extension")
    index = tmp_path / "index"
    result = crawl_in_process(index, str(folder))
    assert result.returncode == 0
    docs = image_documents(index)
    assert len(docs) == 89
    assert {d["title"] for d in docs} == {"Chair Exercises For Upper Back", "Good"}
    for reason in ("unclosed_front_matter", "invalid_yaml", "invalid_json", "binary"):
        assert stat(result, f"pages/invalid/{reason}") == 1
    assert stat(result, "pages/invalid") == 4
    for name in ("unclosed.md", "bad-yaml.md", "bad-json.md", "binary.md"):
        assert f"skipped file://{folder / name}:" in result.stderr


def test_removed_images_disappear_on_recrawl(tmp_path):
    page = tmp_path / "p" / "page.md"
    page.parent.mkdir()
    page.write_text("![](https://x.test/1.jpg) one\n![](https://x.test/2.jpg) two\n![](https://x.test/3.jpg) three\n")
    index = tmp_path / "index"
    crawl_in_process(index, str(page))
    assert len(image_documents(index)) == 3
    page.write_text("![](https://x.test/1.jpg) one, edited\n")
    crawl_in_process(index, str(page))
    docs = image_documents(index)
    assert [(d["position"], d["caption"]) for d in docs] == [(0, "one, edited")]


def test_several_starts(tmp_path):
    # The command end to end (with the default writer: a writer process and its
    # sub-writers), and its own parsing: Scrapy's `crawl` keeps only the last of repeated -a.
    index = tmp_path / "index"
    result = crawl(index, str(EXAMPLES / "desk-stretches.md"), str(EXAMPLES / "notes-without-front-matter.md"))
    assert result.returncode == 0
    assert {d["page_url"].rsplit("/", 1)[-1] for d in image_documents(index)} == {
        "desk-stretches.md",
        "notes-without-front-matter.md",
    }


def test_http_page_and_sitemaps_give_the_folder_documents(tmp_path, http_root):
    www, base, _ = http_root
    for page in EXAMPLES.iterdir():
        shutil.copy(page, www / page.name)
    names = sorted(p.name for p in EXAMPLES.iterdir())
    (www / "sitemap.xml").write_text(sitemap([f"{base}/{n}" for n in names[:2]]))
    (www / "more.xml.gz").write_bytes(gzip.compress(sitemap([f"{base}/{n}" for n in names[2:]]).encode()))
    (www / "sitemap_index.xml").write_text(
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sitemap.xml</loc></sitemap><sitemap><loc>{base}/more.xml.gz</loc></sitemap>"
        f"<sitemap><loc>{base}/sitemap_index.xml</loc></sitemap>"  # a loop: followed once
        f"<sitemap><loc>file:///etc/passwd</loc></sitemap>"  # never read local files for a remote site
        "</sitemapindex>"
    )
    folder_index = tmp_path / "folder-index"
    crawl_in_process(folder_index, str(EXAMPLES))
    expected = comparable(image_documents(folder_index))
    assert len(expected) > 88

    sitemap_index = tmp_path / "sitemap-index"
    result = crawl_in_process(sitemap_index, f"{base}/sitemap_index.xml")
    assert result.returncode == 0
    assert comparable(image_documents(sitemap_index)) == expected
    assert stat(result, "pages/refused/scheme") == 1

    page_index = tmp_path / "page-index"
    crawl_in_process(page_index, f"{base}/{SEED.name}")
    assert len(image_documents(page_index)) == 88
    assert {d["page_url"] for d in image_documents(page_index)} == {f"{base}/{SEED.name}"}


def test_no_spider_callback_is_a_generator_that_returns_a_value():
    # Scrapy's own check runs for every response and is off (WARN_ON_GENERATOR_RETURN_VALUE
    # in pipeline/settings.py): a value returned from a generator callback is lost.
    import importlib
    import inspect
    import pkgutil

    from scrapy.utils.misc import is_generator_with_return_value

    import pipeline.spiders

    generators = [
        function
        for info in pkgutil.iter_modules(pipeline.spiders.__path__)
        for cls in vars(importlib.import_module(f"pipeline.spiders.{info.name}")).values()
        if inspect.isclass(cls) and cls.__module__.startswith("pipeline.spiders")
        for function in vars(cls).values()
        if inspect.isgeneratorfunction(function)
    ]
    assert generators
    assert [f.__qualname__ for f in generators if is_generator_with_return_value(f)] == []
