"""The body parser's fast paths (issue 19) against markdown-it alone, the oracle.

The fast path builds the inline tokens of plain lines and `[ ![alt](src)](link) caption`
lines itself, and switches off block rules no line of the page can start; whatever it
does, ``extract_body(md)`` must equal ``extract_body(md, fast_path=False)``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fuzz
from pipeline.body import extract_body, fast_inline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pages"
SEED = EXAMPLES / "chair-exercises-upper-back.md"

# Words and spaces with, now and then, something that means Markdown: pairs of emphasis
# markers, code spans, brackets, entities, escapes, HTML, autolinks, shortcodes.
PIECES = ["word", "Site.com", " ", " ", "|", "-", "#", "!", "…", "é", "1.", "&", ":"]
SPECIAL = ["*", "_", "**", "`", "[", "]", "<", ">", "\\", "&amp;", "&#33;", "{{", "}}", "<b>", "<https://a.test>", "\t"]
plain_text = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
tricky_text = st.lists(st.sampled_from(PIECES + SPECIAL), max_size=8).map("".join)
URL_PIECES = ["a", "/", ".", "?x=1", "&y=2", "_", "*", "(1)", "(", ")", "()", "%20", "#f", ";", "é", "'", '"', "~"]
URL_SPECIAL = ["&amp;", "&#33;", " ", "<", ">", "\\", "`", "[", "]", "((a))", "\t", '"t"', " 'x'"]
url_text = st.lists(st.sampled_from(URL_PIECES), max_size=8).map("".join)
tricky_url = st.lists(st.sampled_from(URL_PIECES + URL_SPECIAL), max_size=8).map("".join)


def _same(markdown: str) -> None:
    assert extract_body(markdown) == extract_body(markdown, fast_path=False), markdown


@st.composite
def image_lines(draw: st.DrawFn) -> str:
    """The seed's line shape, each part drawn plain or with Markdown's special characters."""
    space = draw(st.sampled_from(["", " ", "  "]))
    alt = draw(st.one_of(plain_text, tricky_text))
    src = draw(st.sampled_from(["https://x.test/", "", "<"])) + draw(st.one_of(url_text, tricky_url))
    link = draw(st.sampled_from(["https://y.test/", ""])) + draw(st.one_of(url_text, tricky_url))
    gap = draw(st.sampled_from(["", " ", "  ", "\t"]))
    caption = draw(st.one_of(plain_text, tricky_text))
    tail = draw(st.sampled_from(["", "", " ", "  ", "\\"]))
    return f"[{space}![{alt}]({src})]({link}){gap}{caption}{tail}"


lines = st.one_of(image_lines(), plain_text, tricky_text)
# Lines that start blocks (or look as if they might), for the block-rule switch-off.
BLOCK_STARTS = [
    "",
    "# Heading",
    "  ## h",
    "===",
    "---",
    "  ===",
    "   --- ",
    "> ===",
    "\t==",
    " - - -",
    "***",
    "- item",
    "* item",
    "+ item",
    "1. item",
    "2) item",
    "> quoted",
    "> > ===",
    ">- x",
    "```",
    "~~~",
    "    indented code",
    "\tcode",
    "<div>",
    "<img src='h.jpg'>",
    "[ref]: https://r.test/a.jpg",
    "![ref]",
    '{{< figure src="s.jpg" caption="c" >}}',
    "__",
    "\r",
]
block_lines = st.one_of(
    lines,
    st.sampled_from(BLOCK_STARTS),
    st.builds(
        lambda p, line: p + line,
        st.sampled_from(["- ", "* ", "1. ", "> ", "  ", "- > "]),
        st.sampled_from(BLOCK_STARTS),
    ),
    st.builds(lambda p, line: p + line, st.sampled_from(["  ", "> ", "- ", "1. ", "   "]), image_lines()),
)


@settings(max_examples=fuzz(80), deadline=None)
@given(st.lists(lines, min_size=1, max_size=6))
def test_one_paragraph_fast_equals_markdown_it(paragraph: list[str]) -> None:
    _same("\n".join(paragraph))


@settings(max_examples=fuzz(80), deadline=None)
@given(st.lists(block_lines, min_size=1, max_size=10))
def test_page_fast_equals_markdown_it(page: list[str]) -> None:
    _same("\n".join(page))


@settings(max_examples=fuzz(40), deadline=None)
@given(image_lines(), image_lines())
def test_image_line_pairs_in_containers(a: str, b: str) -> None:
    for sep in ("\n", "\n\n", "\n> ", "\n- ", "\n===\n", "\n    "):
        _same(a + sep + b)


@pytest.mark.parametrize(
    "markdown",
    [
        "[ ![](https://x.test/a&amp;b.jpg)](https://x.test/p&#33;) c",
        "[![a *b*](https://x.test/a.jpg)](https://x.test/p) *c*",
        "Title\n  ===\n[ ![](https://x.test/a.jpg)](https://x.test/p) c",
        "> Title\n> ---\n[ ![](https://x.test/a.jpg)](https://x.test/p) c",
        "- a\n\n  b\n  ---",
        "- #",
        "- * * *",
        "1. > - ```\n   x",
        "[ ![](https://x.test/a((1)).jpg)](https://x.test/p) c",
        '[ ![](https://x.test/a.jpg "t")](https://x.test/p) c',
        "[ ![](https://x.test/a.jpg)](https://x.test/p) c  \nnext line",
        "a\r# b\r[ ![](https://x.test/a.jpg)](https://x.test/p) c",
        # Headings that end a paragraph, a reference definition or a block quote, and
        # headings after blank lines (where the heading rule is left off the terminators).
        "# T\n\n[ ![](https://x.test/a.jpg)](https://x.test/p) c\n# b\nd",
        "# T\n\n> a\n# b",
        "# T\n\n[r]: https://x.test/r.jpg\n# b\n![r]",
        "# T\n\n- a\n  # b\n- c",
        "# T\n\na\n\n# b\nc\n\n  ## d",
        "# T\n\n[ ![](https://x.test/a.jpg)](https://x.test/p#f) c #tag\n#nohead",
    ],
)
def test_known_edges_fast_equals_markdown_it(markdown: str) -> None:
    _same(markdown)


def test_seed_lines_take_the_fast_path() -> None:
    """Not a vacuous oracle: the lines real pages are made of are the fast path's."""
    body = SEED.read_text("utf-8").split("+++", 2)[2].strip()
    assert fast_inline(body) is not None
    assert fast_inline("Plain words, 100% | Site.com…") is not None
    assert fast_inline("[ ![](https://x.test/a_(1).jpg)](https://x.test/p?a=1&b=*) caption") is not None
    # Outside the grammar: emphasis, an entity in a URL, a hard break, an escape.
    for line in ("*em*", "[ ![](https://x.test/a&amp;b)](l) c", "text  \nmore", "a\\*b"):
        assert fast_inline(line) is None


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.md")), ids=lambda p: p.name)
def test_example_pages_fast_equals_markdown_it(path: Path) -> None:
    _same(path.read_text("utf-8"))


def test_markdown_it_debug_records_are_not_built() -> None:
    """Scrapy leaves the root logger at NOTSET; markdown-it's per-line DEBUG calls must
    stop at the level check instead of building records the handler then drops."""
    assert not logging.getLogger("markdown_it.rules_block.list").isEnabledFor(logging.DEBUG)


def test_stamped_page_is_the_item_as_asdict_made_it_and_leaves_the_item_alone() -> None:
    """stamped_page's shallow copy (issue 19: less work per item between the spider and
    the writer) gives what ItemAdapter.asdict() gave, and stamps only its own fetch."""
    from itemadapter import ItemAdapter

    from pipeline.items import PageItem
    from pipeline.parsing import parse_page
    from pipeline.pipelines import stamped_page

    page = parse_page(SEED.resolve().as_uri(), SEED.read_bytes())
    item = PageItem(url=page.url, title=page.title, images=page.images, fetch={"start": "s", "size": 1})
    before = ItemAdapter(item).asdict()
    stamped = stamped_page(item)
    assert stamped["fetch"].pop("last_seen")
    assert stamped == before
    assert item.fetch == {"start": "s", "size": 1}
    assert stamped_page({"url": "u", "images": []})["fetch"]["last_seen"]
