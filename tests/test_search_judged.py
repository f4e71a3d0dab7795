"""A judged query set over the example pages (issue 18): for each query, what a person
would want to see in the first five results (a headline fragment, case-insensitive).
Exact queries, one- and two-typo variants, word starts, accents left out. Hits@5 is the
share of queries with a wanted image in the top five; exact queries also keep their top
result as it was before typo tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, crawl_in_process
from index.search.run import search

EXAMPLES = ROOT / "examples" / "pages"

EXACT = [
    ("theraband", "theraband"),
    ("biomechanist", "biomechanist"),
    ("thoracic spine", "thoracic spine pain"),
    ("wheelchair", "wheelchair users"),
    ("cat cow", "cat-cow"),
    ("spinal twist", "spinal twist"),
    ("chest opener", "chest opener"),
    ("resistance band desk", "resistance band moves"),
    ("wardrobe", "wardrobe department"),
    ("limited mobility", "limited mobility"),
    ("crack upper back", "crack your upper back"),
    ("muscle spasms", "muscle spasms"),
    ("cable exercises", "cable exercises"),
    ("community centre", "community centre"),
    ("office workers stretches", "office workers"),
    ("older adults chair", "older adults"),
    ("runner equipment", "no-equipment"),
    ("mid back", "mid back"),
]
ONE_TYPO = [
    ("strech", "stretch"),
    ("therabnd", "theraband"),
    ("biomechanst", "biomechanist"),
    ("thorasic spine", "thoracic spine"),
    ("wheelchiar", "wheelchair"),
    ("shoudlers opening", "shoulders & upper back opening"),
    ("resistence band", "resistance band"),
    ("wardrobe deparment", "wardrobe department"),
    ("mobilty", "mobility"),
    ("musle spasms", "muscle spasms"),
    ("excercises seniors", "seniors"),
    ("yoga chiar", "chair yoga"),
    ("posutre correction", "posture correction"),
    ("stregth workout", "strength workout"),
]
TWO_TYPO = [
    ("biomekanist", "biomechanist"),
    ("whelchiar users", "wheelchair users"),
    ("risistanse band", "resistance band"),
    ("posture corektion", "posture correction"),
    ("comunitty centre", "community centre"),
]
PREFIX = [
    ("thorac", "thoracic"),
    ("biomech", "biomechanist"),
    ("wheelch", "wheelchair"),
    ("upper back stret", "upper back stretch"),
    ("spinal tw", "spinal twist"),
    ("chest ope", "chest opener"),
    ("wardr", "wardrobe"),
    ("resistance ba", "resistance band"),
]
ACCENTS = [
    ("buro fitness", "büro fitness"),
    ("epingle", "bureau"),
]
# Issue 31: words as people write them.
STOPWORDS = [
    ("exercises for seniors", "exercises for seniors"),
    ("stretches for office workers", "office workers"),
    ("upper back and neck", "upper back and neck"),
    ("the best upper back exercises", "the best upper back exercises"),
]
WRITTEN_TYPOS = [  # typos of inflected and derived words, first letters included
    ("seaetd stretches", "seated"),
    ("equipmnt", "no-equipment"),
    ("relieivng", "relieving"),
    ("spceific stretches", "specific"),
    ("cmplete guide", "complete"),
    ("sittnig exercises", "sitting"),
    ("rlated shoulder", "desk-related"),
    ("xhair yoga", "chair yoga"),
    ("sretches office", "office workers"),
    ("wardrobe zepartment", "wardrobe department"),
    ("strehgth workout", "strength workout"),
]
NAMES = [
    ("helpguide limited", "limited mobility"),
    ("helpguide.org", "limited mobility"),
    ("live24x7", "chair-exercises to relieve"),
    ("enabled", "wheelchair users"),
    ("chair-exercises relieve", "chair-exercises to relieve"),
]
SYMBOLS = [
    ("chair & yoga", "chair yoga"),
    ("back pain — relief", "back pain relief"),
    ("🧘 chair yoga", "chair yoga"),
    ("neck + back pain", "neck + back pain"),
]
UNICODE = [
    ("e\u0301pingle\u0301", "bureau"),
    ("bu\u0308ro fitness", "büro fitness"),
]
JUDGED = EXACT + ONE_TYPO + TWO_TYPO + PREFIX + ACCENTS + STOPWORDS + WRITTEN_TYPOS + NAMES + SYMBOLS + UNICODE

# Before typo tolerance (commit 459fdce): hits@5 = 22 of 47 (46.8%): every exact and
# accent query, 1 of 14 one-typo, 0 of 5 two-typo, 1 of 8 prefix queries. Before issue 31
# (commit caa95cb): 49 of 73 (67.1%), missing 3 of 4 stopword, 10 of 11 written-typo,
# 3 of 5 name, 3 of 4 symbol and 1 of 2 Unicode queries.
# The top result of each exact query before typo tolerance (measured on that code):
# tolerance may add results below, never change what ranked first.
EXACT_TOP: dict[str, str] = {
    "theraband": "Chair Exercises for Seniors Pdf Lovely theraband™ Upper Body Exercises Back Shoulders & Arms the Goa…",
    "biomechanist": "The Best Upper Back Stretch From a Biomechanist - Thoracic Stretch",
    "thoracic spine": "Thoracic Spine Pain | Upper Back Exercises From A Physical Therapist",
    "wheelchair": "Wheelchair Users Exercises - Resources and Guides",
    "cat cow": "Seated cat-cow stretch",
    "spinal twist": "Seated spinal twist for the upper back & shoulders",
    "chest opener": "Chest opener at the desk",
    "resistance band desk": "15 Resistance Band Moves To Do At Your Desk",
    "wardrobe": "Watch Your Back! Tips To Avoid Injury In The Wardrobe Department",
    "limited mobility": "How to Exercise with Limited Mobility",
    "crack upper back": "4 Ways to Crack Your Upper Back",
    "muscle spasms": "Exercises for Upper Back Muscle Spasms",
    "cable exercises": "10 Terrific Cable Exercises for Your Back",
    "community centre": "A chair yoga class in a community centre",
    "office workers stretches": "10 Best Stretches for Office Workers",
    "older adults chair": "Upper-Body Chair Workout for Older Adults",
    "runner equipment": "A Runner's No-Equipment, Upper-Body Workout",
    "mid back": "Best mid back stretches for relieving middle back pain",
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("judged") / "index"
    assert crawl_in_process(index, str(EXAMPLES)).returncode == 0
    return index


def found(index: Path, query: str, wanted: str) -> bool:
    hits = search(index, query, limit=5).hits
    return any(wanted in (h.get("headline") or "").lower() for h in hits)


def hits_at_5(index: Path) -> tuple[float, list[str]]:
    misses = [q for q, wanted in JUDGED if not found(index, q, wanted)]
    return 1 - len(misses) / len(JUDGED), misses


def test_the_judged_set_is_big_enough():
    assert len(JUDGED) >= 40 and len({q for q, _ in JUDGED}) == len(JUDGED)


def test_hits_at_5(index):
    score, misses = hits_at_5(index)
    print(f"hits@5 = {score:.1%} over {len(JUDGED)} queries; missed: {misses}")
    assert score >= 0.95, misses


@pytest.mark.parametrize("query", sorted(EXACT_TOP))
def test_exact_queries_keep_their_top_result(index, query):
    assert search(index, query, limit=1).hits[0]["headline"] == EXACT_TOP[query]
