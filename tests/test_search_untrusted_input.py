"""Issue 16's search findings, each reproduced first: page-state documents, terminal
escapes, sorts, out-of-range dates, argument errors, collapse totals, highlight marks."""

from __future__ import annotations

import io
import json
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import fuzz
from helpers import item, write
from index.api import QueryError
from index.cli import BOLD, RESET, main, run_search
from index.search.run import search


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("hostile-search") / "ix"
    write(
        index,
        item("file:///a.md", ["Upper back stretch", "Chair yoga for seniors"], title="Chair exercises"),
        item("file:///b.md", ["Neck stretch at the desk"], title="Office", author="Bob", date="2019-05-01"),
        procs=1,
    )
    return index


def _opts(**kw) -> Namespace:
    base = dict(query=["stretch"], limit=10, page=1, json=False, sort="relevance", facet="", collapse=True)
    base |= dict(domain=None, site=None, author=None, board=None, since=None, until=None, exact=False)
    return Namespace(**(base | kw))


def _opts(**kw) -> Namespace:
    base = dict(query=["stretch"], limit=10, page=1, json=False, sort="relevance", facet="", collapse=True)
    base |= dict(domain=None, site=None, author=None, board=None, since=None, until=None, exact=False)
    return Namespace(**(base | kw))


def run_main(*argv: str, capsys) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- 4: page-state documents are never hits ---------------------------------------------------


@pytest.mark.parametrize("query", ["*:*", "-stretch", "NOT stretch", "url:*", "kind:page", "id:*", "page_url:*"])
def test_no_query_shape_returns_page_state_documents(index, query):
    hits = search(index, query, limit=200, collapse=False).hits
    assert all("front_matter" not in h and h.get("position") is not None for h in hits), query
    assert search(index, query, limit=200, collapse=False).total == len(hits)


# -- 5: no terminal escapes from crawled text ---------------------------------------------------

NASTY = "\x1b]0;PWNED\x07\x1b[31m\x9b31m\u202e"


@pytest.fixture(scope="module")
def nasty_index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("nasty") / "ix"
    page = item("file:///n.md", [f"Nasty stretch {NASTY}"], title=f"Title {NASTY}", author=f"Eve {NASTY}")
    page["images"][0]["image_url"] = f"https://x.test/{NASTY}.jpg"
    page["images"][0]["site"] = f"Site{NASTY}"
    page["url"] = f"file:///n{NASTY}.md"
    write(index, page, procs=1)
    return index


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_human_output_escapes_control_characters(nasty_index, tty, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = _Tty() if tty else io.StringIO()
    opts = _opts(query=["nasty"], facet="site,author")
    assert run_search(opts, str(nasty_index), out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    visible = text.replace(BOLD, "").replace(RESET, "")
    assert not any(c in visible for c in "\x1b\x07\x9b\u202e"), visible
    assert "\\x1b]0;PWNED\\x07" in visible  # shown, not obeyed
    assert (BOLD in text) is tty


def test_json_output_is_valid_json_without_raw_control_characters(nasty_index):
    out = io.StringIO()
    assert run_search(_opts(query=["nasty"], json=True, facet="site"), str(nasty_index), out=out) == 0
    raw = out.getvalue()
    assert not any(c in raw for c in "\x1b\x07\x9b\u202e")
    hit = json.loads(raw.splitlines()[0])
    assert hit["title"] == f"Title {NASTY}"  # the data itself is kept


# -- 14: private-use characters in page text never unbalance <mark> ---------------------------


def test_private_use_marks_in_page_text_stay_balanced(tmp_path):
    from index.serve.web import marked

    index = tmp_path / "ix"
    write(index, item("file:///m.md", ["Stretch \ue001 open \ue000 close \ue000\ue001"]), procs=1)
    hit = search(index, "stretch open", marks=("\ue000", "\ue001")).hits[0]
    html = str(marked(hit["headline_marked"]))
    assert html.count("<mark>") == html.count("</mark>") == 2
    assert html.index("<mark>") < html.index("</mark>")
    assert str(marked("a \ue001 b \ue000 c")) == "a  b  c"


# -- 10: every sort works and a score is a score ----------------------------------------------


@pytest.mark.parametrize("sort", ["relevance", "date", "-date", "domain"])
def test_every_sort_runs_and_reports_a_relevance_score_or_none(index, sort):
    hits = search(index, "stretch OR yoga", sort=sort, limit=10).hits
    assert len(hits) == 3
    for hit in hits:
        assert hit["score"] is None or 0 < hit["score"] < 1000, hit["score"]
    if sort == "date":
        assert [h["date"][:4] for h in hits] == ["2019", "2020", "2020"]


# -- 11 and 9: dates out of range are one-line errors, and pages with them are indexed -------------


@pytest.mark.parametrize(
    "query", ["date:<0001", "date:>=9999-12-31", "date:>9999", "date:<=0001-01-01", "date:9999-12-31", "date:0001"]
)
def test_dates_at_the_ends_of_the_calendar_never_raise(index, query):
    try:
        search(index, query)
    except QueryError as exc:
        assert "\n" not in str(exc)


def test_cli_out_of_range_date_exits_2_with_one_line(index, capsys):
    code, _, err = run_main("search", "--index", str(index), "date:<0001", capsys=capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize("date", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "10000-01-01"])
def test_a_page_dated_off_the_calendar_is_indexed(tmp_path, date):
    from index.model.documents import index_date, page_documents

    index_date(date)  # never raises
    index = tmp_path / "ix"
    write(index, item("file:///d.md", ["Calendar stretch"], date=date), procs=1)
    assert len(search(index, "calendar").hits) == 1
    assert page_documents(item("file:///d.md", ["x"], date=date))


# -- 14 and issue 17: argument errors --------------------------------------------------------


def test_sort_minus_date_works_as_the_readme_writes_it(index, capsys):
    for argv in (["--sort", "-date"], ["--sort=-date"]):
        code, out, _ = run_main("search", "--index", str(index), *argv, "--json", "stretch", capsys=capsys)
        dates = [json.loads(line)["date"] for line in out.splitlines()]
        assert code == 0 and dates == sorted(dates, reverse=True) and len(dates) == 2


@pytest.mark.parametrize(
    "argv", [["--no-such-option", "stretch"], ["--sitee", "YouTube", "stretch"], ["--limit", "x", "stretch"], []]
)
def test_unknown_or_bad_options_exit_2_with_one_usage_line(index, capsys, argv):
    code, out, err = run_main("search", "--index", str(index), *argv, capsys=capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "usage:" in err and "error:" in err


def test_scrapy_search_refuses_unknown_options(index):
    from conftest import run_scrapy

    bad = run_scrapy("search", "-s", f"INDEX_DIR={index}", "--no-such-option", "stretch")
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "--no-such-option" in bad.stderr and "usage:" in bad.stderr
    ok = run_scrapy("search", "-s", f"INDEX_DIR={index}", "--sort", "-date", "stretch")
    assert ok.returncode == 0, ok.stderr


# -- 14: collapsed totals, no empty pages, fuzzy totals ---------------------------------------


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory) -> Path:
    """Three images, each shown on 30 pages (two segments), plus one image of its own."""
    index = tmp_path_factory.mktemp("shared") / "ix"
    pages = []
    for n in range(30):
        page = item(f"file:///p{n}.md", ["Shared chair one", "Shared chair two", "Shared chair three"])
        for i, image in enumerate(page["images"]):
            image["image_url"] = f"https://img.example.com/shared-{i}.jpg"
        pages.append(page)
    write(index, *pages[:15], procs=1)
    write(index, *pages[15:], item("file:///own.md", ["Own chair"]), procs=1)
    return index


@pytest.mark.parametrize("query", ["chair", "chair*", "shared OR own", '"shared chair"'])
def test_collapsed_results_count_images_not_pages(shared_index, query):
    results = search(shared_index, query, limit=2)
    expected = 3 if query.startswith('"') else 4
    assert results.total == expected and results.total_exact
    assert len(search(shared_index, query, limit=2, page=2).hits) == expected - 2
    assert search(shared_index, query, collapse=False).total == 90 + (expected == 4)


def test_collapsed_totals_without_the_image_url_column_count_images_too(shared_index, monkeypatch):
    # The fallback (a segment without the column) compares what collapsing compares.
    from index.fast import arrays

    def unsupported(*args, **kwargs):
        raise arrays.Unsupported("no column image_url")

    monkeypatch.setattr(arrays, "distinct_count", unsupported)
    assert search(shared_index, "chair", limit=2).total == 4


def test_collapsed_page_links_never_lead_to_an_empty_page(shared_index):
    from starlette.testclient import TestClient

    from index.serve.web import create_app

    html = (
        TestClient(create_app(shared_index), base_url="http://localhost")
        .get("/", params={"q": "chair", "limit": 2})
        .text
    )
    assert "page 1 of 2" in html and 'rel="next"' in html
    last = (
        TestClient(create_app(shared_index), base_url="http://localhost")
        .get("/", params={"q": "chair", "limit": 2, "page": 2})
        .text
    )
    assert last.count('<li class="card"') == 2 and 'rel="next"' not in last


def test_fuzzy_totals_never_exceed_the_documents(shared_index):
    for query in ("chair~2", "shrd~2 OR chr~2", "c*"):
        assert search(shared_index, query, collapse=False).total <= 91


# -- the query fuzzer (make fuzz): any query, any option, through main() -----------------------

_QUERY_PIECES = st.sampled_from(
    [
        "stretch",
        "chair",
        "*",
        "?",
        "~",
        "~9",
        "^2",
        ":",
        "date:",
        "date:<",
        "date:>=",
        "0001",
        "9999-12-31",
        "[",
        "]",
        "(",
        ")",
        '"',
        "-",
        "NOT",
        "OR",
        "AND",
        "url:",
        "kind:",
        "site:",
        "tag:",
        "\x1b",
        "\ue000",
        "title:",
        "to",
        "2020",
        "*:*",
        "\\",
        "/",
        "{",
        "}",
        "TO",
    ]
)
_QUERY = st.one_of(
    st.text(max_size=60), st.lists(st.one_of(_QUERY_PIECES, st.text(max_size=5)), max_size=12).map("".join)
)


@settings(max_examples=fuzz(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=_QUERY,
    options=st.lists(
        st.sampled_from(
            [
                ["--sort", "date"],
                ["--sort", "-date"],
                ["--sort", "domain"],
                ["--json"],
                ["--no-collapse"],
                ["--facet", "domain,author"],
                ["--page", "2"],
                ["--limit", "1"],
                ["--since", "2020-01-01"],
            ]
        ),
        max_size=3,
    ),
)
def test_any_query_through_main_exits_0_1_or_2_without_a_traceback(index, capsys, text, options):
    argv = ["search", "--index", str(index), *[a for o in options for a in o], "--", text]
    code, _, err = run_main(*argv, capsys=capsys)
    assert code in (0, 1, 2), (text, code)
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 1, err


@pytest.mark.parametrize("query", ['"0,0"', 'tags:"chair yoga"', '"upper, back"'])
def test_a_phrase_over_a_field_without_positions_searches_its_words(index, capsys, query):
    """The tag list keeps no positions: a phrase that reaches it (`"0,0"` is two tags)
    is all of its words there, not Whoosh's "field has no positions" traceback."""
    code, _, err = run_main("search", "--index", str(index), "--", query, capsys=capsys)
    assert code in (0, 1) and "Traceback" not in err, (code, err)
