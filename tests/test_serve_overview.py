"""The search page without a query shows the index (issue 31, item 8): counts, the last
refresh, the top sites/domains/boards as search links, the newest images. The overview's
figures are checked against a walk over every stored record (the oracle), through the
library and through the page."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient
from whoosh import index as whoosh_index

from helpers import item, write
from index.admin import record_crawl
from index.cache import clear_caches
from index.model.documents import page_documents as build_documents
from index.serve import overview as overview_module
from index.serve.overview import NEWEST, TOP, overview, search_link
from index.serve.web import create_app
from index.writing.pagewriter import PageWriter

SITES = ["Health.com", "YouTube", "Pinterest", 'The "Quoted" Blog', "Verywell Fit"]
BOARDS = [None, None, "Fitness", "Yoga"]


def _items(seed: int, pages: int) -> list[dict]:
    """Pages with a few images each: sites, domains and boards drawn unevenly, some
    images shown on several pages, some pages without a date."""
    rng = random.Random(seed)
    out = []
    for p in range(pages):
        date = (
            None
            if p % 7 == 0
            else f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00"
        )
        it = item(f"https://blog.example/p{p}", [f"stretch {p} {i}" for i in range(rng.randint(1, 5))], date=date)
        if date is None:
            it["date"] = None
        for image in it["images"]:
            shared = rng.random() < 0.2
            number = rng.randint(0, 9) if shared else rng.randint(100, 10**6)
            image["domain"] = f"d{min(rng.randint(0, 30), rng.randint(0, 30))}.example"
            image["image_url"] = f"https://{image['domain']}/{number}.jpg"
            image["site"] = SITES[min(rng.randint(0, 4), rng.randint(0, 4))]
            image["board"] = rng.choice(BOARDS)
        out.append(it)
    return out


def _oracle(index: Path) -> dict:
    """Everything the overview says, from every live stored record, one by one."""
    ix = whoosh_index.open_dir(str(index))
    with ix.searcher() as s:
        records = [json.loads(s.stored_fields(d)["record"]) for d in s.document_numbers(kind="image")]
        pages = sum(1 for _ in s.document_numbers(kind="page"))
    counts = {name: Counter(r[name] for r in records if r.get(name)) for name in ("site", "domain", "board")}
    top = {name: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP] for name, c in counts.items()}
    return {
        "images": len({r["image_url"] for r in records}),
        "occurrences": len(records),
        "pages": pages,
        "domains": len(counts["domain"]),
        "sites": len(counts["site"]),
        "boards": len(counts["board"]),
        "top": top,
        "dates": sorted((r.get("date") or "" for r in records), reverse=True),
    }


def _check(index: Path) -> None:
    got, want = overview(index), _oracle(index)
    assert (got.images, got.occurrences, got.pages) == (want["images"], want["occurrences"], want["pages"])
    assert (got.domains, got.sites, got.boards) == (want["domains"], want["sites"], want["boards"])
    assert got.top == want["top"]
    # The newest images: distinct, newest page date first, the undated last.
    urls = [h["image_url"] for h in got.newest]
    assert len(urls) == len(set(urls)) == min(NEWEST, want["images"])
    dates = [h["date"] or "" for h in got.newest]
    assert dates == sorted(dates, reverse=True)
    assert dates[0] == want["dates"][0]
    assert all(h["uses"] >= 1 and h["score"] is None for h in got.newest)


@pytest.mark.parametrize("seed", range(4))
def test_overview_agrees_with_every_stored_record(tmp_path, seed):
    index = tmp_path / "index"
    write(index, *_items(seed, 40), procs=1)
    _check(index)


def test_deleted_pages_stop_counting_and_a_commit_makes_a_new_overview(tmp_path):
    index = tmp_path / "index"
    items = _items(7, 30)
    write(index, *items, procs=1)
    first = overview(index)
    assert overview(index) is first  # the same index state: computed once
    writer = PageWriter(index, procs=1)
    writer.open()
    writer.delete_pages([it["url"] for it in items[:10]])
    writer.add_page(build_documents(item("https://new.example/p", ["brand new"], date="2030-01-01T00:00:00")))
    writer.close()
    second = overview(index)
    assert second is not first and second.pages == first.pages - 10 + 1
    assert second.newest[0]["page_url"] == "https://new.example/p"
    _check(index)
    clear_caches()  # a new process: the same figures
    _check(index)


def test_last_refresh_is_the_last_commit_and_the_last_crawl(tmp_path):
    index = tmp_path / "index"
    write(index, *_items(1, 5), procs=1)
    assert overview(index).last_crawl is None and overview(index).last_commit.endswith("+00:00")
    summary = {"finished_at": "2030-05-06T07:08:09+00:00", "reason": "finished", "counts": {"new": 5, "deleted": 1}}
    record_crawl(index, summary)
    assert overview(index).last_crawl == summary  # a crawl's record is a new state too


def test_search_link_quotes_values_or_filters_them():
    assert parse_qs(urlsplit(search_link("site", "Health.com")).query) == {"q": ['site:"Health.com"']}
    assert parse_qs(urlsplit(search_link("board", 'A "b" c')).query) == {"q": ["*:*"], "board": ['A "b" c']}


# -- the page ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("overview") / "index"
    write(index, *_items(3, 60), procs=1)
    record_crawl(index, {"finished_at": "2030-05-06T07:08:09+00:00", "reason": "finished", "counts": {"new": 60}})
    return index


def test_the_start_page_shows_the_counts_the_links_and_the_newest_images(site_index):
    client = TestClient(create_app(site_index), base_url="http://127.0.0.1:8000")
    html = client.get("/").text
    want = _oracle(site_index)
    assert f'<b data-count="images">{want["images"]:,}</b>' in html
    assert f'<b data-count="pages">{want["pages"]:,}</b>' in html
    assert f'<b data-count="domains">{want["domains"]:,}</b>' in html
    assert 'last crawl finished <time datetime="2030-05-06T07:08:09+00:00">2030-05-06 07:08 UTC</time>' in html
    assert html.count('<li class="card"') == NEWEST
    for name in ("site", "domain", "board"):
        assert f'<section data-top="{name}">' in html
    # Every top entry is a search for that value: it finds images of that value only.
    for value, count in overview_module.overview(site_index).top["site"]:
        href = search_link("site", value)
        assert f'href="{href.replace("&", "&amp;")}"' in html
        found = client.get("/api/search", params={**{k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}})
        body = found.json()
        assert 0 < body["total"] <= count and {h["site"] for h in body["hits"]} == {value}


def test_the_start_page_without_an_index_says_how_to_make_one(tmp_path):
    client = TestClient(create_app(tmp_path / "nowhere"), base_url="http://localhost")
    page = client.get("/")
    assert page.status_code == 200 and "scrapy crawl pages -a start=" in page.text
    assert 'class="intro"' in page.text


def test_page_text_on_the_start_page_is_escaped(tmp_path):
    index = tmp_path / "index"
    evil = item("https://evil.example/p", ["<script>window.pwned=1</script>"], date="2031-01-01T00:00:00")
    evil["images"][0]["site"] = "<img src=x onerror=alert(1)>"
    write(index, evil, procs=1)
    html = TestClient(create_app(index), base_url="http://localhost").get("/").text
    assert "<script>window.pwned" not in html and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html
