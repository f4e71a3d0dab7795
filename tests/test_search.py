"""The search command on the seed + example pages: every query form with exact hits,
every error path with its exit code, JSON schema, highlighting on and off. The command is
called in this process (`index.cli.main`); test_crawl runs it as a process."""

from __future__ import annotations

import io
import json
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import HIT_KEYS, ROOT, crawl_in_process, fuzz, index_main
from index.api import QueryError
from index.cli import BOLD, main, run_search
from index.search.run import search

EXAMPLES = ROOT / "examples" / "pages"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("search") / "index"
    result = crawl_in_process(index, str(EXAMPLES))
    assert result.returncode == 0
    return index


def headlines(index: Path, query: str, **options) -> list[str]:
    return [h["headline"] for h in search(index, query, limit=200, **options).hits]


def positions(index: Path, query: str, page: str = "chair-exercises-upper-back.md", **options) -> list[int]:
    hits = search(index, query, limit=200, **options).hits
    return sorted(h["position"] for h in hits if h["page_url"].endswith(page))


def test_words_are_anded_and_ranked_by_headline(index):
    assert headlines(index, "chair yoga")[0] in {
        "A chair yoga class in a community centre",
        "Chair yoga practice for the neck and upper back",
    }
    assert set(positions(index, "theraband")) == {3}
    assert positions(index, "thoracic spine") == [45]


def test_or_not_minus_phrase_prefix_fuzzy(index):
    assert set(positions(index, "theraband OR biomechanist")) == {3, 4}
    with_pin = positions(index, "fitness")
    assert positions(index, "fitness NOT pin") == positions(index, "fitness -pin")
    assert len(positions(index, "fitness -pin")) < len(with_pin)
    assert positions(index, '"thoracic stretch"') == [4]
    assert 3 in positions(index, "thera*")
    assert 3 in positions(index, "therabnd~")


def test_case_accents_and_word_forms(index):
    assert positions(index, "epingle") == [18] == positions(index, "ÉPINGLÉ")
    assert set(positions(index, "stretches")) == set(positions(index, "stretch"))


def test_field_filters(index):
    youtube = positions(index, "site:YouTube")
    assert youtube == positions(index, "site:youtube") == [6, 12, 25, 26, 40, 45, 49, 52, 72, 81]
    pinterest = search(index, "domain:pinterest.com", limit=200, collapse=False).hits
    assert all(h["domain"] == "pinterest.com" for h in pinterest) and len(pinterest) == 11
    assert len(search(index, 'author:"Our Writers"', limit=200, collapse=False).hits) == 88
    assert positions(index, "board:fitness") == [2]
    assert positions(index, "tag:ChairExercises") == [8]
    assert len(search(index, "tag:stretching", limit=200).hits) == 3  # front-matter tag of desk-stretches.md
    assert len(search(index, "image_host:i0.wp.com", limit=200).hits) == 3


def test_date_ranges(index):
    assert {h["title"] for h in search(index, "date:2020", limit=200).hits} == {"Chair Exercises For Upper Back"}
    in_range = search(index, "date:[2021-01-01 to 2022-12-31]", limit=200).hits
    assert {h["title"] for h in in_range} == {"Desk Stretches You Can Do Between Meetings", "Chair Yoga Basics"}
    assert {h["title"] for h in search(index, "date:>2021-12-31", limit=200).hits} == {"Chair Yoga Basics"}
    assert {h["title"] for h in search(index, "yoga", since="2022-06-01", limit=200).hits} == {"Chair Yoga Basics"}
    assert {h["title"] for h in search(index, "yoga", until="2020-11-09", limit=200).hits} == {
        "Chair Exercises For Upper Back"
    }


def test_option_filters_sort_and_pages(index):
    hits = search(index, "back", filters={"site": "YouTube"}, limit=200).hits
    assert hits and all(h["site"] == "YouTube" for h in hits)
    dates = [h["date"] for h in search(index, "stretch", sort="-date", limit=200).hits]
    assert dates == sorted(dates, reverse=True)
    first = search(index, "back", limit=5, page=1).hits
    second = search(index, "back", limit=5, page=2).hits
    assert len(first) == len(second) == 5
    assert not {h["image_url"] for h in first} & {h["image_url"] for h in second}


def test_collapse_counts_uses(tmp_path):
    folder = tmp_path / "pages"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.md").write_text(f"![](https://x.test/shared.jpg) Shared stretch {name}\n")
    index = tmp_path / "index"
    crawl_in_process(index, str(folder))
    collapsed = search(index, "stretch").hits
    assert len(collapsed) == 1 and collapsed[0]["uses"] == 3
    assert len(search(index, "stretch", collapse=False).hits) == 3


def test_facets_count_the_whole_result_set(index):
    results = search(index, "back", facets=("domain", "site"), limit=1)
    assert len(results.hits) == 1
    assert results.facets["domain"]["youtube.com"] >= 8
    assert sum(results.facets["site"].values()) <= results.total or not results.total_exact


def test_did_you_mean(index):
    results = search(index, "bak strech")
    assert results.hits == [] and results.suggestion == "back stretch"


@pytest.mark.parametrize(
    "query, message",
    [
        ("title:(", "unbalanced"),
        ("date:[x to", "unbalanced"),
        ("date:[x to y]", "cannot read date"),
        ('"upper back', "unclosed quote"),
        ("title:", "nothing after"),
        ("   ", "empty query"),
    ],
)
def test_malformed_queries(index, query, message):
    with pytest.raises(QueryError, match=message):
        search(index, query)


def test_cli_exit_codes_and_one_line_errors(index, tmp_path, capsys):
    assert index_main(capsys, "search", "--index", str(index), "theraband").returncode == 0
    none = index_main(capsys, "search", "--index", str(index), "bak strech")
    assert none.returncode == 1 and "Did you mean: back stretch?" in none.stdout
    for bad in ("title:(", "date:[x to"):
        r = index_main(capsys, "search", "--index", str(index), bad)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: ")
    typo = index_main(capsys, "search", "--index", str(index), "--sitee", "YouTube", "chair")
    assert typo.returncode == 2 and typo.stdout == "" and len(typo.stderr.splitlines()) == 1
    assert typo.stderr.startswith("error: unrecognized arguments: --sitee")
    empty = tmp_path / "empty"
    from whoosh import index as wi

    from index.model.schema import make_schema

    empty.mkdir()
    wi.create_in(str(empty), make_schema())
    for target, words in ((tmp_path / "missing", "no index at"), (empty, "is empty")):
        r = index_main(capsys, "search", "--index", str(target), "x")
        assert r.returncode == 2 and words in r.stderr and "scrapy crawl pages -a start=" in r.stderr
        assert len(r.stderr.splitlines()) == 1


def test_json_lines_schema(index, capsys):
    r = index_main(capsys, "search", "--index", str(index), "--json", "--facet", "domain", "stretch")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    *hits, summary = lines
    assert hits and all(set(h) == HIT_KEYS for h in hits)
    assert list(hits[0]) == sorted(hits[0])  # stable, sorted keys
    assert set(summary) == {"facets", "total", "total_exact"}


def _opts(**kw) -> Namespace:
    base = dict(
        query=["upper", "back"],
        limit=2,
        page=1,
        json=False,
        sort="relevance",
        facet="",
        domain=None,
        site=None,
        author=None,
        board=None,
        since=None,
        until=None,
        collapse=True,
    )
    base.update(kw)
    return Namespace(**base)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_highlight_on_a_terminal_only(index, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = _Tty()
    assert run_search(_opts(), str(index), out=tty) == 0
    assert BOLD in tty.getvalue()
    piped = io.StringIO()
    run_search(_opts(), str(index), out=piped)
    assert "\x1b[" not in piped.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = _Tty()
    run_search(_opts(), str(index), out=tty)
    assert "\x1b[" not in tty.getvalue()
    assert tty.getvalue().splitlines()[-1].endswith("ms")


def test_main_entry_point(index, capsys):
    assert main(["search", "--index", str(index), "--limit", "1", "theraband"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("  1. Chair Exercises for Seniors Pdf Lovely theraband™")
    assert out.rstrip().endswith("ms")


@settings(max_examples=fuzz(75), deadline=None)
@given(st.text(max_size=40))
def test_any_query_string_gives_hits_none_or_one_error(index, text):
    out, err = io.StringIO(), io.StringIO()
    code = run_search(_opts(query=[text]), str(index), out=out, err=err)
    assert code in (0, 1, 2)
    if code == 2:
        assert len(err.getvalue().splitlines()) == 1
    else:
        assert err.getvalue() == ""
