"""After every refresh the index equals a clean crawl of what is reachable, or keeps the
old pages with a counted reason (issue 29): one test per way it used to drift silently."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from conftest import crawl_in_process, image_documents, no_stat, page_documents, sitemap, stat
from index.deletion import canonical_start, plan_deletions
from pipeline.exitcodes import EXIT_DELETE_REFUSED
from pipeline.refresh import RefreshState


def page(i: int, tag: str = "p") -> str:
    return f"---\ntitle: {tag} {i}\n---\n![](https://img.test/{tag}/{i}.jpg) {tag} image {i}\n"


def folder_of(root: Path, n: int, tag: str = "p") -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = [root / f"{tag}{i}.md" for i in range(n)]
    for i, f in enumerate(files):
        f.write_text(page(i, tag))
    return files


def sitemap_site(www: Path, base: str, n: int) -> list[Path]:
    """``folder_of`` pages served from ``www`` at ``base``, and ``/sitemap.xml`` listing them."""
    files = folder_of(www, n)
    (www / "sitemap.xml").write_text(sitemap([f"{base}/{f.name}" for f in files]))
    return files


def strip(docs: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in d.items() if k not in ("score", "indexed_at")} for d in docs), key=str)


def pages_of(index: Path) -> set[str]:
    return {p["url"] for p in page_documents(index)}


def assert_clean(index: Path, tmp: Path, *starts: str) -> None:
    """The index holds exactly what a clean crawl of ``starts`` gives."""
    clean = tmp / f"clean-{len(list(tmp.glob('clean-*')))}"
    crawl_in_process(clean, *starts)
    assert pages_of(index) == pages_of(clean)
    assert strip(image_documents(index)) == strip(image_documents(clean))


# -- finding 1: pages that come back empty --------------------------------------------------
def test_pages_answering_empty_200_are_refused_like_a_mass_deletion(tmp_path, http_root):
    www, base, _ = http_root
    files = sitemap_site(www, base, 10)
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    before = strip(image_documents(index))
    later = os.stat(files[0]).st_mtime + 2  # If-Modified-Since has a resolution of seconds
    for f in files:
        f.write_text("")  # a maintenance page served as 200
        os.utime(f, (later, later))
    result = crawl_in_process(index, f"{base}/sitemap.xml")
    assert result.returncode == EXIT_DELETE_REFUSED
    assert stat(result, "pages/kept/collapsed") == 10 and stat(result, "pages/delete_refused") == 10
    assert no_stat(result, "pages/changed")
    assert strip(image_documents(index)) == before
    assert result.stderr.count("refused to delete or replace") == 1
    accepted = crawl_in_process(index, f"{base}/sitemap.xml", settings={"REFRESH_ACCEPT_MASS_DELETE": "True"})
    assert accepted.returncode == 0
    assert "images indexed 0, deleted 10" in accepted.stderr
    assert image_documents(index) == []


def test_truncated_files_keep_their_pages(tmp_path):
    files = folder_of(tmp_path / "site", 20)
    index = tmp_path / "index"
    crawl_in_process(index, str(tmp_path / "site"))
    before = strip(image_documents(index))
    for f in files:
        f.write_text("")
    result = crawl_in_process(index, str(tmp_path / "site"))
    assert result.returncode == EXIT_DELETE_REFUSED
    assert stat(result, "pages/kept/collapsed") == 20
    assert strip(image_documents(index)) == before


def test_one_emptied_page_is_replaced_and_its_images_counted(tmp_path):
    files = folder_of(tmp_path / "site", 10)
    index = tmp_path / "index"
    crawl_in_process(index, str(tmp_path / "site"))
    files[3].write_text("no images any more\n")
    result = crawl_in_process(index, str(tmp_path / "site"))
    assert result.returncode == 0
    assert stat(result, "images/deleted") == 1  # removed by replacement, not by deletion
    assert "images indexed 0, deleted 1" in result.stderr
    assert_clean(index, tmp_path, str(tmp_path / "site"))


def test_collapse_and_vanishing_count_together():
    states = {f"u{i}": {"start": "/s", "image_count": 1} for i in range(20)}
    seen = {f"u{i}" for i in range(17)}  # 3 vanished
    plan = plan_deletions(states, ["/s"], seen, collapsed={"u0": "/s", "u1": "/s", "u2": "/s"})
    assert plan.refused == {"/s": (6, 20)} and plan.delete == [] and plan.hold == ["u0", "u1", "u2"]
    ok = plan_deletions(states, ["/s"], seen, collapsed={"u0": "/s"})
    assert ok.refused == {} and ok.delete == ["u17", "u18", "u19"] and ok.hold == []


# -- finding 3: redirects ------------------------------------------------------------------
def test_a_page_moved_as_is_behind_a_redirect_is_indexed_under_its_target(tmp_path, http_root):
    www, base, server = http_root
    sitemap_site(www, base, 6)
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    (www / "p0.md").rename(www / "p0-new.md")  # same bytes, same modification time
    server.redirects["/p0.md"] = "/p0-new.md"
    result = crawl_in_process(index, f"{base}/sitemap.xml")
    assert result.returncode == 0
    assert f"{base}/p0-new.md" in pages_of(index)
    assert f"{base}/p0.md" not in pages_of(index)
    assert_clean(index, tmp_path, f"{base}/sitemap.xml")


def test_a_redirect_to_a_failing_target_keeps_the_listed_page(tmp_path, http_root):
    www, base, server = http_root
    sitemap_site(www, base, 6)
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    server.redirects["/p0.md"] = "/moved.md"
    server.failing.add("/moved.md")
    result = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(result, "pages/errors") == 1 and no_stat(result, "pages/deleted")
    assert f"{base}/p0.md" in pages_of(index)


# -- finding 4: dates ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("2024-06-01T23:00:00+00:00", "2024-06-01T20:00:00-05:00"),  # a later instant, earlier as text
        ("2204-06-01", "2024-07-01"),  # a bogus future date, corrected
        ("2024-06-01", "not a date"),
    ],
)
def test_lastmod_is_compared_as_instants(tmp_path, http_root, first, then):
    www, base, server = http_root
    (www / "a.md").write_text(page(0))
    (www / "sitemap.xml").write_text(sitemap([(f"{base}/a.md", first)]))
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    (www / "a.md").write_text(page(1))
    later = dt.datetime.now().timestamp() + 10
    os.utime(www / "a.md", (later, later))  # If-Modified-Since has a resolution of seconds
    (www / "sitemap.xml").write_text(sitemap([(f"{base}/a.md", then)]))
    server.requests.clear()
    result = crawl_in_process(index, f"{base}/sitemap.xml")
    assert "/a.md" in server.requests
    assert stat(result, "pages/changed") == 1
    assert_clean(index, tmp_path, f"{base}/sitemap.xml")


def test_an_unchanged_lastmod_still_skips_the_request():
    state = RefreshState(states={"u": {"lastmod": "2024-06-01T23:00:00Z"}})
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert state.sitemap_unchanged("u", "2024-06-01T18:00:00-05:00", now)  # the same instant
    assert not state.sitemap_unchanged("u", "2024-06-01T18:00:01-05:00", now)
    assert not state.sitemap_unchanged("u", "2024-06-01T23:00:00Z", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


# -- finding 2: a start is a place -----------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://h.test/sitemap.xml", "HTTP://H.test/sitemap.xml"),
        ("http://h.test/sitemap.xml", "http://h.test:80/sitemap.xml#"),
        ("https://h.test", "https://h.test:443/"),
        ("/srv/site", "/srv/site/"),
        ("/srv/site", "/srv/./other/../site"),
        ("/srv/site", "file:///srv/site"),
    ],
)
def test_one_place_one_start(a, b):
    assert canonical_start(a) == canonical_start(b)


def test_a_differently_spelled_sitemap_start_still_deletes(tmp_path, http_root):
    www, base, _ = http_root
    sitemap_site(www, base, 6)
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    (www / "sitemap.xml").write_text(sitemap([f"{base}/p{i}.md" for i in range(1, 6)]))
    result = crawl_in_process(index, f"{base.upper()}/sitemap.xml#")
    assert stat(result, "pages/deleted") == 1
    assert_clean(index, tmp_path, f"{base}/sitemap.xml")


def test_a_symlinked_release_folder_switched_to_another_release(tmp_path):
    folder_of(tmp_path / "releases" / "v1", 6)
    v2 = folder_of(tmp_path / "releases" / "v2", 6)
    v2[0].unlink()
    v2[1].write_text(page(1) + "![](https://img.test/extra.jpg) extra\n")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "releases" / "v1")
    index = tmp_path / "index"
    crawl_in_process(index, str(current))
    current.unlink()
    current.symlink_to(tmp_path / "releases" / "v2")
    import shutil

    shutil.rmtree(tmp_path / "releases" / "v1")
    result = crawl_in_process(index, str(current))
    assert result.returncode == 0
    assert stat(result, "pages/deleted") == 1
    assert_clean(index, tmp_path, str(current))


def test_a_page_belongs_to_the_folder_starts_it_lies_under(tmp_path):
    site = tmp_path / "site"
    folder_of(site, 3)
    sub = folder_of(site / "sub", 3, tag="s")
    index = tmp_path / "index"
    crawl_in_process(index, str(site), str(site / "sub"))
    crawl_in_process(index, str(site / "sub"))
    sub[1].unlink()
    result = crawl_in_process(index, str(site / "sub"))
    assert stat(result, "pages/deleted") == 1
    assert sub[1].resolve().as_uri() not in pages_of(index)


# -- finding 5: the writer's temporary space -------------------------------------------------
def test_stale_temporary_segments_are_removed_when_the_writer_opens(tmp_path):
    from index.writing.pagewriter import PageWriter

    files = folder_of(tmp_path / "site", 3)
    index = tmp_path / "index"
    crawl_in_process(index, str(tmp_path / "site"))
    stale = index / "MAIN.tmp"
    stale.mkdir(exist_ok=True)
    (stale / "run1.ctmp").write_bytes(b"x" * 100_000)
    (index / "MAIN_deadbeefdeadbeef.pst").write_bytes(b"x" * 100_000)  # a commit that never happened
    writer = PageWriter(index)
    writer.open()
    try:
        assert not (stale / "run1.ctmp").exists()
        assert not (index / "MAIN_deadbeefdeadbeef.pst").exists()
    finally:
        writer.cancel()
    files[0].write_text(page(7))
    assert crawl_in_process(index, str(tmp_path / "site")).returncode == 0
    assert_clean(index, tmp_path, str(tmp_path / "site"))


# -- finding 6: robots.txt and pages that turn invalid ----------------------------------------
def test_a_page_robots_txt_now_disallows_is_gone(tmp_path, http_root):
    www, base, _ = http_root
    sitemap_site(www, base, 6)
    index = tmp_path / "index"
    crawl_in_process(index, f"{base}/sitemap.xml")
    (www / "robots.txt").write_text("User-agent: *\nDisallow: /p0.md\n")
    result = crawl_in_process(index, f"{base}/sitemap.xml")
    assert stat(result, "pages/gone/robots") == 1 and stat(result, "pages/deleted") == 1
    assert_clean(index, tmp_path, f"{base}/sitemap.xml")


def test_a_page_that_turns_invalid_keeps_its_last_valid_version(tmp_path):
    files = folder_of(tmp_path / "site", 6)
    index = tmp_path / "index"
    crawl_in_process(index, str(tmp_path / "site"))
    files[0].write_text("---\ntitle: [unclosed\n---\n![](https://img.test/new.jpg) x\n")
    result = crawl_in_process(index, str(tmp_path / "site"))
    assert stat(result, "pages/kept/invalid") == 1
    assert files[0].resolve().as_uri() in pages_of(index)


def test_file_urls_are_known_by_the_folder_the_user_named(tmp_path):
    real = tmp_path / "real"
    folder_of(real, 2)
    link = tmp_path / "link"
    link.symlink_to(real)
    index = tmp_path / "index"
    crawl_in_process(index, str(link))
    assert pages_of(index) == {(link / f"p{i}.md").absolute().as_uri() for i in range(2)}
    assert os.path.realpath(link) == str(real.resolve())


def test_stale_starts_are_reported_and_forgotten_on_request(tmp_path, capsys):
    from conftest import index_main
    from index.admin import starts

    old, kept = folder_of(tmp_path / "old", 2, tag="o"), folder_of(tmp_path / "kept", 3, tag="k")
    index = tmp_path / "index"
    crawl_in_process(index, str(tmp_path / "old"), str(tmp_path / "kept"))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    assert [(r["pages"], r["stale"]) for r in starts(index)] == [(3, False), (2, False)]
    assert [(r["pages"], r["stale"]) for r in starts(index, now=later)] == [(3, True), (2, True)]
    crawl_in_process(index, str(tmp_path / "kept"))
    shown = index_main(capsys, "stats", "--index", str(index))
    assert f"{tmp_path / 'old'} (2 pages" in shown.stdout and "STALE" not in shown.stdout
    forgotten = index_main(capsys, "forget", f"{tmp_path / 'old'}/", "--index", str(index))
    assert forgotten.returncode == 0 and "2 pages" in forgotten.stdout
    assert pages_of(index) == {f.resolve().as_uri() for f in kept}
    assert not any(o.resolve().as_uri() in pages_of(index) for o in old)
    again = index_main(capsys, "forget", str(tmp_path / "old"), "--index", str(index))
    assert again.returncode != 0 and "no page" in again.stderr


def test_a_symlinked_monitoring_file_is_written_through(tmp_path):
    from pipeline.extensions.monitoring import write_atomically

    target = tmp_path / "collector" / "pages.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "metrics.prom"
    link.symlink_to(target)
    write_atomically(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
