"""Issue 18: search that forgives. Typos within an edit budget by word length (a swap is
one edit), the last word as a word start, exact matches above corrected ones, fewer
corrections above more, and the ways to turn it off; corrections reported in every
output; the same order and scores from Whoosh's path and the NumPy path."""

from __future__ import annotations

import io
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient
from whoosh import collectors

from helpers import item, write
from index.cli import run_search
from index.fast import arrays
from index.model.documents import TEXT_SECTIONS
from index.search.parse import parse_query, query_boosts
from index.search.run import _searcher, search
from index.search.typos import allowed_edits, osa_distance, tolerate
from index.serve.web import create_app


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("typo") / "ix"
    write(
        index,
        item("file:///a.md", ["Upper back stretch", "Stretches for the neck", "Strech marks cream"]),
        item("file:///b.md", ["Shoulder stretching routine", "Stretcher for patients"], title="Clinic"),
        item("file:///c.md", ["Wheelchair exercises", "Thoracic spine mobility"], title="Mobility"),
        procs=1,
    )
    return index


def heads(index: Path, query: str, **options) -> list[str]:
    return [h["headline"] for h in search(index, query, limit=50, **options).hits]


def test_edit_budget_by_length_and_swaps_count_one():
    assert [allowed_edits(n) for n in (3, 4, 5, 8, 9, 12)] == [0, 0, 1, 1, 2, 2]
    assert osa_distance("wheelchiar", "wheelchair") == 1
    assert osa_distance("strech", "stretch") == 1
    assert osa_distance("abc", "abc") == 0 and osa_distance("ca", "abc") == 3


def test_a_typo_finds_the_word_and_exact_matches_rank_first(index):
    assert "Wheelchair exercises" in heads(index, "wheelchiar")  # a swap
    assert "Thoracic spine mobility" in heads(index, "thorasic")  # a substitution
    found = heads(index, "strech")
    # "Strech" is in the index as typed: it ranks above the corrected "stretch" hits.
    assert found[0] == "Strech marks cream" and "Upper back stretch" in found


def test_short_words_are_not_corrected(index):
    assert heads(index, "nekc") == []  # four letters: no edits allowed


def test_the_last_word_is_also_a_word_start_ranked_below_whole_words(index):
    found = heads(index, "stretc")
    assert {"Upper back stretch", "Stretches for the neck", "Stretcher for patients"} <= set(found)
    assert heads(index, "wheelch") == ["Wheelchair exercises"]
    assert heads(index, "upper back stret") == ["Upper back stretch"]
    # Not for a word before the last one.
    assert heads(index, "stret back") == []


def test_fewer_corrections_rank_above_more(index):
    found = heads(index, "stretc neck")  # the prefix is one step; `neck` exact
    assert found[0] == "Stretches for the neck"


def test_quotes_field_filters_and_exact_turn_it_off(index):
    assert heads(index, '"strech"') == ["Strech marks cream"]  # quoted: as typed
    assert heads(index, "title:clinc") == []  # a field filter: as typed
    assert heads(index, "title:clinic")
    assert heads(index, "wheelchiar", exact=True) == []
    assert heads(index, "stretc", exact=True) == []  # no word start either
    assert heads(index, "strech", exact=True) == ["Strech marks cream"]


def test_negated_words_are_not_widened(index):
    assert "Upper back stretch" in heads(index, "back -strech")


def test_corrections_are_reported_in_every_output(index):
    results = search(index, "wheelchiar")
    assert results.corrections == {"wheelchiar": "wheelchair"}
    assert search(index, "wheelchair").corrections == {}
    opts = dict(query=["wheelchiar"], limit=10, page=1, sort="relevance", facet="", collapse=True, exact=False)
    opts |= dict(domain=None, site=None, author=None, board=None, since=None, until=None)
    human = io.StringIO()
    assert run_search(Namespace(json=False, **opts), str(index), out=human) == 0
    assert human.getvalue().splitlines()[0] == "wheelchiar → wheelchair"
    piped = io.StringIO()
    run_search(Namespace(json=True, **opts), str(index), out=piped)
    assert json.loads(piped.getvalue().splitlines()[-1])["corrections"] == {"wheelchiar": "wheelchair"}
    client = TestClient(create_app(index), base_url="http://localhost")
    assert client.get("/api/search", params={"q": "wheelchiar"}).json()["corrections"] == {"wheelchiar": "wheelchair"}
    assert client.get("/api/search", params={"q": "wheelchiar", "exact": "1"}).json()["hits"] == []
    page = client.get("/", params={"q": "wheelchiar"}).text
    assert 'id="corrections"' in page and "<b>wheelchair</b> (you typed wheelchiar)" in page
    assert 'href="/?q=wheelchiar&amp;exact=1"' in page


def test_did_you_mean_only_when_tolerance_finds_nothing(index):
    assert search(index, "wheelchiar").suggestion is None
    nothing = search(index, "zzzzzzzz")
    assert nothing.hits == []


# -- one ranking ------------------------------------------------------------------------------


def test_field_weights_are_defined_once(index):
    searcher = _searcher(index)
    for name, boost in query_boosts(searcher.schema).items():
        index_boost = getattr(searcher.schema[name].format, "field_boost", 1.0)
        assert index_boost * boost == pytest.approx(TEXT_SECTIONS[name]), name


@pytest.mark.parametrize(
    "text", ["strech", "stretc", "wheelchiar exercises", "stretc OR mobility", "thorasic -neck", "headline:stretch"]
)
def test_whoosh_and_the_numpy_path_give_the_same_order_and_scores(index, text):
    searcher = _searcher(index)
    q, _ = tolerate(parse_query(searcher.schema, text), searcher.reader(), searcher.schema["text"].analyzer, text)
    evaluation = arrays.evaluate(searcher, q)
    collector = collectors.TopCollector(limit=50, usequality=False)
    searcher.search_with_collector(q, collector)
    theirs = collector.results()
    ours_ids, ours_scores = evaluation.ranked(0, 50)
    assert len(evaluation) == len(theirs)
    # Whoosh ranks by score alone; the fast path ranks by tier first, so compare the
    # scores per document and the order within each tier.
    whoosh_scores = {hit.docnum: hit.score for hit in theirs}
    assert np.allclose([whoosh_scores[d] for d in ours_ids.tolist()], ours_scores)
    untiered = arrays.Evaluation(evaluation.docnums, evaluation.scores)
    assert untiered.ranked(0, 50)[0].tolist() == [hit.docnum for hit in theirs]


def test_tolerance_widens_only_a_page_the_exact_words_do_not_fill(index):
    exact_total = search(index, "stretch", exact=True, collapse=False).total
    one = search(index, "stretch", limit=1, collapse=False)
    assert one.total == exact_total and one.corrections == {}  # the page is full as typed
    wide = search(index, "stretch", limit=50, collapse=False)
    assert wide.total > exact_total  # `strech`, `stretcher`, ... join, below the exact ones
    assert [h["headline"] for h in wide.hits[:exact_total]] == heads(index, "stretch", exact=True)
