"""A folder start given its site's address (issue 31, item 7): pages get their published
URLs, root-relative images resolve against them, refreshes keep working; without an
address nothing changes."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scrapy.utils.test import get_crawler

from conftest import FIXTURES, crawl_in_process, fuzz, image_documents, no_stat, page_documents, stat
from pipeline.siteurls import SiteAddress, content_path, site_path
from pipeline.spiders.pages import PagesSpider

BASE = "https://example.org/"
SITE = FIXTURES / "hugo_site"

# (start, file, front matter, published URL) for BASE.
CASES = [
    # Hugo's defaults: a page is a folder, bundles and sections are their folder
    ("/s", "/s/content/posts/my-post.md", {}, "https://example.org/posts/my-post/"),
    ("/s", "/s/content/posts/my-post/index.md", {}, "https://example.org/posts/my-post/"),
    ("/s", "/s/content/posts/_index.md", {}, "https://example.org/posts/"),
    ("/s", "/s/content/_index.md", {}, "https://example.org/"),
    ("/s", "/s/content/index.md", {}, "https://example.org/"),
    ("/s", "/s/content/a/b/c/deep.markdown", {}, "https://example.org/a/b/c/deep/"),
    # case and spaces as Hugo makes them; other characters percent-encoded
    ("/s", "/s/content/Posts/My Post.md", {}, "https://example.org/posts/my-post/"),
    ("/s", "/s/content/posts/café.md", {}, "https://example.org/posts/caf%C3%A9/"),
    ("/s", "/s/content/posts/50%.md", {}, "https://example.org/posts/50%/"),
    # the start may be the site, its content folder, or a folder or file inside it
    ("/s/content", "/s/content/posts/my-post.md", {}, "https://example.org/posts/my-post/"),
    ("/s/content/posts", "/s/content/posts/my-post.md", {}, "https://example.org/posts/my-post/"),
    ("/s/content/posts/my-post.md", "/s/content/posts/my-post.md", {}, "https://example.org/posts/my-post/"),
    # a folder of Markdown that is no Hugo site: paths count from the start
    ("/notes", "/notes/2024/idea.md", {}, "https://example.org/2024/idea/"),
    ("/notes/idea.md", "/notes/idea.md", {}, "https://example.org/idea/"),
    # front matter: slug renames the last segment (a bundle's folder too, never a section)
    ("/s", "/s/content/posts/my-post.md", {"slug": "better"}, "https://example.org/posts/better/"),
    ("/s", "/s/content/posts/b/index.md", {"slug": "better"}, "https://example.org/posts/better/"),
    ("/s", "/s/content/posts/_index.md", {"slug": "better"}, "https://example.org/posts/"),
    ("/s", "/s/content/_index.md", {"slug": "x"}, "https://example.org/"),
    # url (Hugo), permalink (Jekyll), path (Zola): the whole path, relative to the base
    ("/s", "/s/content/about.md", {"url": "/about-us/"}, "https://example.org/about-us/"),
    ("/s", "/s/content/about.md", {"url": "/About Us/", "slug": "x"}, "https://example.org/About%20Us/"),
    ("/s", "/s/content/about.md", {"permalink": "/2020/01/about.html"}, "https://example.org/2020/01/about.html"),
    ("/s", "/s/content/about.md", {"path": "company/about"}, "https://example.org/company/about"),
    ("/s", "/s/content/about.md", {"url": "https://other.example/x/"}, "https://other.example/x/"),
    # values that are not a path are ignored
    ("/s", "/s/content/about.md", {"url": 3, "slug": ["x"]}, "https://example.org/about/"),
    ("/s", "/s/content/about.md", {"url": "  ", "slug": ""}, "https://example.org/about/"),
]


@pytest.mark.parametrize("start, file, front, expected", CASES)
def test_published_url(start, file, front, expected):
    assert SiteAddress(BASE).published(Path(file).as_uri(), start, front) == expected


def test_a_base_url_with_a_path_keeps_it():
    site = SiteAddress("https://user.github.io/project")
    assert site.published("file:///s/content/posts/a.md", "/s", {}) == "https://user.github.io/project/posts/a/"
    assert site.published("file:///s/content/a.md", "/s", {"url": "/b/"}) == "https://user.github.io/project/b/"


@pytest.mark.parametrize("bad", ["example.org", "ftp://example.org/", "file:///site/", "https://"])
def test_a_base_url_that_is_no_http_address_is_refused(bad):
    with pytest.raises(ValueError, match="base_url must be an http"):
        SiteAddress(bad)


_SEGMENT = st.text(alphabet="abcXYZ é_-.%0", min_size=1, max_size=8).filter(lambda s: s.strip(". "))
_PATHS = st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda parts: "/site/content/" + "/".join(parts) + ".md")
_FRONT = st.dictionaries(st.sampled_from(["url", "slug", "permalink", "path", "title"]), st.one_of(_SEGMENT, st.none()))


@settings(max_examples=fuzz(300), deadline=None)
@given(_PATHS, _FRONT)
def test_without_a_base_url_nothing_changes(file, front):
    url = Path(file).as_uri()
    site = SiteAddress(None)
    assert not site
    assert site.published(url, "/site", front) == url
    assert site.key(url, "/site") == url
    assert SiteAddress(BASE).published("https://x.test/p", "/site", front) == "https://x.test/p"  # not a file


@settings(max_examples=fuzz(300), deadline=None)
@given(_PATHS, _FRONT)
def test_every_page_gets_an_address_on_the_site(file, front):
    url = SiteAddress(BASE).published(Path(file).as_uri(), "/site", front)
    assert url.startswith(BASE)
    assert " " not in url
    # The key (before the front matter is read) is the address when nothing moves the page.
    if not any(front.get(k) for k in ("url", "slug", "permalink", "path")):
        assert SiteAddress(BASE).key(Path(file).as_uri(), "/site") == url


@settings(max_examples=fuzz(300), deadline=None)
@given(st.lists(_SEGMENT, min_size=1, max_size=4), st.integers(0, 4))
def test_any_start_inside_the_site_gives_the_same_path(parts, depth):
    file = PurePosixPath("/site/content", *parts)
    start = PurePosixPath("/site/content", *parts[: min(depth, len(parts) - 1)])
    assert content_path(start, file) == content_path(PurePosixPath("/site"), file) == PurePosixPath(*parts)


def test_site_path_of_the_home_page_is_empty():
    assert site_path(PurePosixPath("_index.md"), {}) == ""
    assert site_path(PurePosixPath("index.md"), {"slug": "x"}) == ""


# -- the crawl --------------------------------------------------------------------------------

SITE_URLS = {
    "content/_index.md": "https://example.org/",
    "content/about.md": "https://example.org/about-us/",
    "content/posts/_index.md": "https://example.org/posts/",
    "content/posts/bundle/index.md": "https://example.org/posts/bundle/",
    "content/posts/sqlite-tricks.md": "https://example.org/posts/sqlite-tricks/",
    "content/posts/Renamed Post.md": "https://example.org/posts/a-better-name/",
}


def test_the_fixture_says_each_pages_address():
    for name, url in SITE_URLS.items():
        assert f"<!-- {url}" in (SITE / name).read_text("utf-8"), name


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    shutil.copytree(SITE, folder)
    return folder


def _images(index: Path) -> dict[str, dict]:
    return {doc["image_url"]: doc for doc in image_documents(index)}


def test_a_hugo_folder_crawled_with_its_address(site, tmp_path):
    index = tmp_path / "index"
    result = crawl_in_process(index, str(site), settings={"PAGES_BASE_URL": BASE})
    assert stat(result, "pages/new") == len(SITE_URLS)
    assert sorted(p["url"] for p in page_documents(index)) == sorted(SITE_URLS.values())
    images = _images(index)
    assert sorted(images) == [
        "https://cdn.example.net/team.jpg",  # absolute: as written
        "https://example.org/img/blog/posts-banner.png",
        "https://example.org/img/blog/renamed.png",  # a figure shortcode's src
        "https://example.org/img/blog/sqlitedb.png",  # root-relative: the site's
        "https://example.org/img/logo.png",
        "https://example.org/posts/bundle/cover.jpg",  # page-relative: beside the page
    ]
    schema = images["https://example.org/img/blog/sqlitedb.png"]
    assert schema["page_url"] == "https://example.org/posts/sqlite-tricks/"
    assert schema["domain"] == "example.org" and schema["caption"] == "Credit: the author"
    assert images["https://example.org/img/blog/renamed.png"]["caption"] == "A figure shortcode"


def test_without_an_address_folder_pages_keep_their_file_urls(site, tmp_path):
    index = tmp_path / "index"
    crawl_in_process(index, str(site))
    assert all(p["url"].startswith("file://") for p in page_documents(index))
    assert (site / "content/posts/sqlite-tricks.md").resolve().as_uri() in {p["url"] for p in page_documents(index)}


def test_refresh_with_an_address_skips_unchanged_files_and_follows_moves(site, tmp_path):
    index = tmp_path / "index"
    settings = {"PAGES_BASE_URL": BASE}
    crawl_in_process(index, str(site), settings=settings)
    again = crawl_in_process(index, str(site), settings=settings)
    # Pages that front matter does not move are known by path, unread (size and mtime).
    assert stat(again, "pages/unchanged") == len(SITE_URLS)
    assert no_stat(again, "index/commits") and no_stat(again, "pages/deleted")

    # A page given a slug moves: the old address goes, the new one comes.
    post = site / "content/posts/sqlite-tricks.md"
    post.write_text(post.read_text("utf-8").replace("title: SQLite tricks", "title: SQLite tricks\nslug: sqlite"))
    # A page that cannot be read any more keeps what was indexed (its address by path).
    (site / "content/posts/bundle/index.md").write_text("---\ntitle: [unclosed\n---\n")
    moved = crawl_in_process(index, str(site), settings=settings)
    urls = {p["url"] for p in page_documents(index)}
    assert "https://example.org/posts/sqlite/" in urls
    assert "https://example.org/posts/sqlite-tricks/" not in urls
    assert "https://example.org/posts/bundle/" in urls
    assert stat(moved, "pages/deleted") == 1


def test_changing_the_address_replaces_every_file_url(site, tmp_path):
    # Every page changes identity: to the refresh, all of the start's pages vanish and as
    # many new ones appear. The mass-deletion guard stops that (exit 25, both kept) until
    # the change is accepted once.
    index = tmp_path / "index"
    crawl_in_process(index, str(site))
    refused = crawl_in_process(index, str(site), settings={"PAGES_BASE_URL": BASE})
    assert refused.returncode == 25 and stat(refused, "pages/delete_refused") == len(SITE_URLS)
    assert len(page_documents(index)) == 2 * len(SITE_URLS)
    accepted = {"PAGES_BASE_URL": BASE, "REFRESH_ACCEPT_MASS_DELETE": True}
    assert crawl_in_process(index, str(site), settings=accepted).returncode == 0
    assert sorted(p["url"] for p in page_documents(index)) == sorted(SITE_URLS.values())
    other = "https://www.example.com/blog/"
    crawl_in_process(index, str(site), settings={"PAGES_BASE_URL": other, "REFRESH_ACCEPT_MASS_DELETE": True})
    urls = sorted(p["url"] for p in page_documents(index))
    assert urls == sorted(u.replace(BASE, other) for u in SITE_URLS.values())


def test_the_spider_argument_and_the_setting():
    crawler = get_crawler(PagesSpider, {"PAGES_BASE_URL": "https://from-setting.example/"})
    assert PagesSpider.from_crawler(crawler, start="x").site.base_url == "https://from-setting.example/"
    crawler = get_crawler(PagesSpider, {"PAGES_BASE_URL": "https://from-setting.example/"})
    spider = PagesSpider.from_crawler(crawler, start="x", base_url="https://example.org")
    assert spider.site.base_url == BASE  # -a wins; a missing `/` is added
    assert not PagesSpider.from_crawler(get_crawler(PagesSpider), start="x").site
    with pytest.raises(ValueError, match="base_url must be an http"):
        PagesSpider.from_crawler(get_crawler(PagesSpider), start="x", base_url="example.org")


def test_a_page_moved_by_front_matter_that_cannot_be_read_is_kept(site, tmp_path):
    """about.md is published at /about-us/ because its front matter says so; once it
    cannot be read, only its front matter could say which indexed page it is: its start
    deletes nothing this run (before, the page was deleted as vanished)."""
    index = tmp_path / "index"
    settings = {"PAGES_BASE_URL": BASE}
    crawl_in_process(index, str(site), settings=settings)
    (site / "content/about.md").write_text("+++\ntitle = [unclosed\n+++\n")
    broken = crawl_in_process(index, str(site), settings=settings)
    assert "https://example.org/about-us/" in {p["url"] for p in page_documents(index)}
    assert no_stat(broken, "pages/deleted")
    assert stat(broken, "starts/incomplete/page_address_unknown") == 1
