"""Images in Markdown, scored against outside references: the CommonMark spec's image
examples and Hugo's documented shortcode forms (as Hugo's own shortcode lexer reads them)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fuzz
from pipeline.body import extract, extract_body, scan_shortcode
from pipeline.parsing import parse_page

# CommonMark 0.31.2, section "Images", examples 572-593: (Markdown, [(src, alt, title)]).
# Titles stay as written (entities are decoded later, by the caption normalizer).
SPEC_IMAGES = [
    ('![foo](/url "title")\n', [("/url", "foo", "title")]),
    ('![foo *bar*]\n\n[foo *bar*]: train.jpg "train & tracks"\n', [("train.jpg", "foo bar", "train & tracks")]),
    ("![foo ![bar](/url)](/url2)\n", [("/url2", "foo bar", "")]),
    ("![foo [bar](/url)](/url2)\n", [("/url2", "foo bar", "")]),
    ('![foo *bar*][]\n\n[foo *bar*]: train.jpg "train & tracks"\n', [("train.jpg", "foo bar", "train & tracks")]),
    ('![foo *bar*][foobar]\n\n[FOOBAR]: train.jpg "train & tracks"\n', [("train.jpg", "foo bar", "train & tracks")]),
    ("![foo](train.jpg)\n", [("train.jpg", "foo", "")]),
    ('My ![foo bar](/path/to/train.jpg  "title"   )\n', [("/path/to/train.jpg", "foo bar", "title")]),
    ("![foo](<url>)\n", [("url", "foo", "")]),
    ("![](/url)\n", [("/url", "", "")]),
    ("![foo][bar]\n\n[bar]: /url\n", [("/url", "foo", "")]),
    ("![foo][bar]\n\n[BAR]: /url\n", [("/url", "foo", "")]),
    ('![foo][]\n\n[foo]: /url "title"\n', [("/url", "foo", "title")]),
    ('![*foo* bar][]\n\n[*foo* bar]: /url "title"\n', [("/url", "foo bar", "title")]),
    ('![Foo][]\n\n[foo]: /url "title"\n', [("/url", "Foo", "title")]),
    ('![foo] \n[]\n\n[foo]: /url "title"\n', [("/url", "foo", "title")]),
    ('![foo]\n\n[foo]: /url "title"\n', [("/url", "foo", "title")]),
    ('![*foo* bar]\n\n[*foo* bar]: /url "title"\n', [("/url", "foo bar", "title")]),
    ('![[foo]]\n\n[[foo]]: /url "title"\n', []),
    ('![Foo]\n\n[foo]: /url "title"\n', [("/url", "Foo", "title")]),
    ('!\\[foo]\n\n[foo]: /url "title"\n', []),
    ('\\![foo]\n\n[foo]: /url "title"\n', []),
]


def test_spec_table_has_every_image_example():
    assert len(SPEC_IMAGES) == 22


@pytest.mark.parametrize("markdown, expected", SPEC_IMAGES)
def test_commonmark_spec_image_examples(markdown, expected):
    refs, _ = extract(markdown)
    assert [(r.src, r.alt, r.title) for r in refs] == expected


def test_nested_alt_text_with_markup_and_line_breaks():
    refs, _ = extract("![a *b* `c` ![d **e**](/x) [f](/y)\ng](/z) caption")
    assert [(r.src, r.alt, r.caption) for r in refs] == [("/z", "a b c d e f\ng", "caption")]


# Hugo's documented shortcode forms (gohugoio/hugo docs: content-management/shortcodes,
# shortcodes/figure) and what its lexer accepts: (Markdown, [(src, caption, alt)]).
HUGO_FORMS = [
    ('{{< figure src="/images/zion.jpg" title="Zion" >}}', [("/images/zion.jpg", "Zion", "")]),
    (
        "{{< figure\n"
        '  src="/images/examples/zion-national-park.jpg"\n'
        '  alt="A photograph of Zion National Park"\n'
        '  link="https://www.nps.gov/zion/index.htm"\n'
        '  caption="Zion National Park"\n'
        '  class="ma0 w-75"\n'
        ">}}",
        [("/images/examples/zion-national-park.jpg", "Zion National Park", "A photograph of Zion National Park")],
    ),
    ('{{% figure src="/a.jpg" caption="With markup" %}}', [("/a.jpg", "With markup", "")]),
    # the real site of issue 20: a tab before each parameter, a space after `=`
    ('{{< figure\n\tsrc= "/img/blog/x.png"\n\tcaption= "Tabbed"\n>}}', [("/img/blog/x.png", "Tabbed", "")]),
    ('{{< figure src = "/a.jpg" caption = "spaced" >}}', [("/a.jpg", "spaced", "")]),
    ('{{< figure\tsrc\t=\t"/a.jpg"\t>}}', [("/a.jpg", "", "")]),
    ('{{< figure\n  src\n  = "/a.jpg"\n>}}', [("/a.jpg", "", "")]),
    ("{{< figure src=`/a.jpg` caption=`raw\nstring` >}}", [("/a.jpg", "raw string", "")]),
    ("{{< figure src=/a.jpg caption=plain >}}", [("/a.jpg", "plain", "")]),
    ('{{<figure src="/a.jpg">}}', [("/a.jpg", "", "")]),
    ('{{< figure src="/a.jpg" caption="Say \\"hi\\"" >}}', [("/a.jpg", 'Say "hi"', "")]),
    ("{{< figure src='/a.jpg' caption='single quotes' >}}", [("/a.jpg", "single quotes", "")]),
    ('{{< figure src="/a.jpg" />}}', [("/a.jpg", "", "")]),
    ('{{< figure Src="/a.jpg" ALT="upper" >}}', [("/a.jpg", "", "upper")]),
    # positional parameters (image shortcodes of themes): the first one is the image
    ('{{< img "/a.jpg" "Alt text" >}}', [("/a.jpg", "", "")]),
    ("{{< image /a.jpg >}}", [("/a.jpg", "", "")]),
    ("{{< img `/a.jpg` >}}", [("/a.jpg", "", "")]),
    ("{{< img https://x.test/a.jpg >}}", [("https://x.test/a.jpg", "", "")]),
    # shown, not used: the comment form and code
    ('{{</* figure src="/nope.jpg" */>}}', []),
    ('{{%/* figure src="/nope.jpg" */%}}', []),
    ('```\n{{< figure\n  src="/in-code.jpg"\n>}}\n```', []),
    ('`{{< figure src="/code-span.jpg" >}}`', []),
    # not figures, or not finished
    ('{{< youtube "0RKpf3rK57I" >}}', []),
    ('{{< figure src="/a.jpg"', []),
    ('{{< figure src="/a.jpg >}}', []),
    ("{{< figure src=`/a.jpg >}}", []),
    ('{{< figure :src="/a.jpg" >}}', []),
    # Zola
    ('{{ figure(src="/z.jpg", caption="Zola") }}', [("/z.jpg", "Zola", "")]),
    ('{{ resize_image(path="/z.jpg", width=600, op="fit") }}', [("/z.jpg", "", "")]),
    ('{{ figure(\n  src="/z.jpg",\n  caption="multi-line"\n) }}', [("/z.jpg", "multi-line", "")]),
]


@pytest.mark.parametrize("markdown, expected", HUGO_FORMS)
def test_hugo_shortcode_forms(markdown, expected):
    page = parse_page("file:///p.md", markdown.encode())
    assert [(im["image_url"], im["caption_raw"], im["alt"]) for im in page.images] == expected


def test_multiline_shortcodes_in_a_real_post():
    # The shape that yielded no image on a real Hugo site: several multi-line figures
    # with tabs and `= "..."`, between paragraphs, CRLF line endings.
    post = (
        "+++\r\ntitle = 'Post'\r\n+++\r\nIntro text.\r\n\r\n"
        + "".join(
            f'{{{{< figure\r\n\tsrc= "/img/blog/{i}.png"\r\n\talt= "Figure {i}"\r\n\tcaption= "Step {i}"\r\n>}}}}\r\n\r\n'
            for i in range(7)
        )
        + "- a list\r\n- after\r\n"
    )
    page = parse_page("file:///post.md", post.encode())
    assert [(im["image_url"], im["alt"], im["caption_raw"]) for im in page.images] == [
        (f"/img/blog/{i}.png", f"Figure {i}", f"Step {i}") for i in range(7)
    ]
    assert "Step 6" in page.body_text and "after" in page.body_text


def test_scan_shortcode_reports_named_and_positional_parameters():
    found = scan_shortcode('x {{< img "/a.jpg" width=600 >}} y', 2)
    assert found is not None
    assert (found.name, found.args, found.positional) == ("img", {"width": "600"}, ["/a.jpg"])
    assert found.end == len('x {{< img "/a.jpg" width=600 >}}')


SHORTCODE_SOUP = st.lists(
    st.sampled_from(
        [
            "{{<",
            "{{%",
            ">}}",
            "%}}",
            "/>}}",
            "{{",
            "}}",
            "/*",
            "*/",
            "figure",
            "img",
            "image",
            "src",
            "alt",
            "caption",
            "=",
            " ",
            "\t",
            "\n",
            "\r\n",
            '"',
            "'",
            "`",
            "\\",
            "a.jpg",
            "/x",
            "(",
            ")",
            ",",
            ">",
            "<",
            "-",
            "#",
            "![](",
            "]",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=fuzz(500), deadline=None)
@given(SHORTCODE_SOUP)
def test_arbitrary_shortcode_soup_never_raises(text):
    body = extract_body(text)
    assert isinstance(body.text, str)
    for start in range(len(text)):
        found = scan_shortcode(text, start)
        assert found is None or start < found.end <= len(text)
