"""parse_page: front matter formats, Markdown images, bad input."""

from __future__ import annotations

import codecs
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SEED, fuzz
from pipeline.parsing import PageError, parse_page

PAREN_URLS = [
    "https://www.verywellfit.com/thmb/nSEVgn0avHx8NWkVGKchzZSocII=/1500x1000/filters:no_upscale():max_bytes(150000):strip_icc()/UpperBackStretch_annotated-144aae9084f2441e80ca9c5212cfd7e7.jpg",
    "https://www.verywellfit.com/thmb/WK1bjBtxoWa5_QtrFWzpr6v7dDA=/1333x1000/smart/filters:no_upscale()/ChestStretch_annotated-a38011b9efb6464d8eaab1b087435177.jpg",
    "https://www.verywellfit.com/thmb/-XzqyIGwTKdJDsFP1xQMwdZTeWA=/1500x1000/filters:no_upscale():max_bytes(150000):strip_icc()/UpperBackStretch_annotated-52313a903ccd42dfa4bf8f75c5958c04.jpg",
    "https://www.verywellfit.com/thmb/GGIifg8r8bv5MhxAOcAk7z0BlG8=/1500x1000/filters:no_upscale():max_bytes(150000):strip_icc()/InnerThighStretch_annotated-66ce1a599ccc47ac93e4468d20c44bf4.jpg",
]


def parse(text: str, url: str = "file:///t.md"):
    return parse_page(url, text.encode("utf-8"))


# -- the seed page -----------------------------------------------------------------------


def test_seed_page_metadata_and_88_images_in_order():
    page = parse_page("file:///seed.md", SEED.read_bytes())
    assert page.format == "toml"
    assert page.title == "Chair Exercises For Upper Back"
    assert page.author == "Our Writers"
    assert page.date == "2020-11-09T06:14:50.636078"  # naive stays naive
    assert len(page.images) == 88
    assert [im["position"] for im in page.images] == list(range(88))
    first = page.images[0]
    assert first["image_url"] == "https://cdn-img.health.com/sites/default/files/1491596988/chair-yoga-back-pain.jpg"
    assert first["link_url"] == first["image_url"]
    assert first["alt"] == ""
    assert first["caption_raw"] == "The Best Chair Yoga Moves to Combat Back Pain | Health.com"
    assert page.images[87]["caption_raw"] == "25 Office Exercises: Easy Desk-Friendly Ways to Get Fit in 2020"
    assert len(page.content_hash) == 64


def test_seed_parenthesised_urls_are_intact():
    page = parse_page("file:///seed.md", SEED.read_bytes())
    urls = [im["image_url"] for im in page.images if "(" in im["image_url"]]
    assert urls == PAREN_URLS


def test_seed_caption_raw_keeps_mojibake_and_double_spaces():
    page = parse_page("file:///seed.md", SEED.read_bytes())
    raw = page.images[3]["caption_raw"]
    assert "therabandâ„¢ Upper Body Exercises  Back Shoulders & Arms the Goa…" in raw


def test_seed_body_text_has_no_markdown():
    page = parse_page("file:///seed.md", SEED.read_bytes())
    assert "![" not in page.body_text and "](" not in page.body_text
    assert "Pin on Fitness" in page.body_text


# -- front matter formats ----------------------------------------------------------------


def test_yaml_front_matter_with_dates_lists_and_zone():
    page = parse(
        "---\ntitle: Hi\nauthor: [A, B]\ndate: 2021-03-14T09:30:00+01:00\ntags: [x, y]\ncategories: z\n---\nBody"
    )
    assert page.format == "yaml"
    assert (page.title, page.author, page.date) == ("Hi", "A, B", "2021-03-14T09:30:00+01:00")
    assert page.tags == ["x", "y", "z"]
    assert page.body_text == "Body"


def test_json_front_matter_nested_with_tabs():
    text = '{\n\t"title": "J",\n\t"meta": {"a": {"b": 1}},\n\t"date": "2022-06-01"\n}\n\n![](a.jpg) cap'
    page = parse(text)
    assert page.format == "json"
    assert page.title == "J"
    assert page.front_matter["meta"] == {"a": {"b": 1}}
    assert page.date == "2022-06-01"
    assert page.images[0]["caption_raw"] == "cap"


def test_no_front_matter_is_valid():
    page = parse("# Title\n\n![x](a.png) caption")
    assert page.format == "none"
    assert page.title is None and page.front_matter == {}
    assert page.images[0]["alt"] == "x"


def test_shortcode_at_start_is_not_json():
    page = parse('{{< figure src="a.jpg" caption="c" >}}\n')
    assert page.format == "none"
    assert page.images[0]["image_url"] == "a.jpg"


@pytest.mark.parametrize(
    "prefix, encoding",
    [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")],
)
def test_bom_encodings(prefix, encoding):
    body = prefix + '+++\ntitle = "Ünïcode"\n+++\n![](a.jpg) c'.encode(encoding)
    page = parse_page("file:///b.md", body)
    assert page.title == "Ünïcode" and page.format == "toml"


def test_crlf_cr_blank_lines_and_whitespace_lines_in_front_matter():
    text = '\r\n\r\n+++\r\n   \r\ntitle = "T"\r\n\t\r\n+++\r\n![](a.jpg) c\r\n![](b.jpg) d'
    page = parse(text)
    assert page.title == "T"
    assert [im["caption_raw"] for im in page.images] == ["c", "d"]
    page = parse(text.replace("\r\n", "\r"))
    assert page.title == "T" and len(page.images) == 2


def test_windows_1252_page_is_read():
    body = b'---\ntitle: "Caf\xe9 \x93quotes\x94"\n---\ntext'
    assert parse_page("file:///w.md", body).title == "Café “quotes”"


def test_non_string_title_and_dates():
    assert parse("+++\ntitle = 42\n+++\n").title == "42"
    assert parse("---\ntitle: {a: 1}\ndate: 2020-01-02\n---\n").title is None
    assert parse("---\ndate: 2020-01-02\n---\n").date == "2020-01-02"
    assert parse('---\ndate: "Mon, 09 Nov 2020 06:14:50 +0000"\n---\n').date == "2020-11-09T06:14:50+00:00"
    assert parse('---\ndate: "not a date"\n---\n').date is None
    fm = parse("+++\nd = 1979-05-27T07:32:00Z\n+++\n").front_matter
    assert fm == {"d": "1979-05-27T07:32:00+00:00"}
    json.dumps(fm)


# -- Markdown images ------------------------------------------------------------------------


def test_inline_reference_html_and_figure_images():
    text = """
![inline *alt*](https://x.test/1.jpg "T1") after inline

![ref][r] after ref

<figure>
  <img src="https://x.test/3.jpg" alt="fig alt">
  <figcaption>Fig &amp; caption</figcaption>
</figure>

Text <img src="https://x.test/4.jpg" title="t4"> inline html caption

[r]: https://x.test/2.jpg
"""
    page = parse(text)
    got = [(im["image_url"], im["alt"], im["caption_raw"]) for im in page.images]
    assert got == [
        ("https://x.test/1.jpg", "inline alt", "after inline"),
        ("https://x.test/2.jpg", "ref", "after ref"),
        ("https://x.test/3.jpg", "fig alt", "Fig &amp; caption"),
        ("https://x.test/4.jpg", "", "inline html caption"),
    ]


def test_title_attribute_is_the_caption_of_last_resort():
    page = parse('![a](https://x.test/a.jpg "The title")')
    assert page.images[0]["caption_raw"] == "The title"


def test_image_alone_on_its_line_takes_next_line_as_caption():
    page = parse("![](a.jpg)\nCaption below\n![](b.jpg) c2")
    assert [im["caption_raw"] for im in page.images] == ["Caption below", "c2"]


def test_hugo_and_zola_shortcodes_multiline_and_escaped():
    text = """
{{< figure src="/img/a.jpg" alt="A"
    caption="Hugo caption" >}}

{{% figure src="b.png" title="B title" %}}

{{ figure(src="c.jpg", caption="Zola caption") }}

Escaped example: {{</* figure src="nope.jpg" */>}}

```
{{< figure src="in-code.jpg" >}}
![](in-code.jpg)
```

    ![](indented-code.jpg)

`![](code-span.jpg)`
"""
    page = parse(text)
    got = [(im["image_url"], im["caption_raw"], im["alt"]) for im in page.images]
    assert got == [("/img/a.jpg", "Hugo caption", "A"), ("b.png", "B title", ""), ("c.jpg", "Zola caption", "")]


def test_angle_brackets_parentheses_and_display_options():
    text = "![](<https://x.test/a b.jpg>) one\n![](https://x.test/f(1)/g(2).jpg) two\n![](x.gif?classes=shadow,border) three"
    page = parse(text)
    assert [im["image_url"] for im in page.images] == [
        "https://x.test/a b.jpg",
        "https://x.test/f(1)/g(2).jpg",
        "x.gif?classes=shadow,border",
    ]


def test_entities_are_left_for_the_caption_normalizer():
    page = parse("![](a.jpg) Fish &amp;amp; chips")
    assert page.images[0]["caption_raw"] == "Fish &amp;amp; chips"


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'+++\ntitle = "x"\nno closing', "unclosed_front_matter"),
        (b"---\ntitle: x\n", "unclosed_front_matter"),
        (b"+++\ntitle = \n+++\n", "invalid_toml"),
        (b"+++\nd = 2020-13-45\n+++\n", "invalid_toml"),
        (b"---\ntitle: [unclosed\n---\n", "invalid_yaml"),
        (b"---\n!!python/object/apply:os.system ['echo hi']\n---\n", "invalid_yaml"),
        (b'{"title": "x",\n', "invalid_json"),
        (b"---\n- a list\n---\n", "front_matter_not_mapping"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary"),
    ],
)
def test_malformed_pages_raise_page_error_with_reason(body, reason):
    with pytest.raises(PageError) as info:
        parse_page("file:///bad.md", body)
    assert info.value.reason == reason


def test_yaml_alias_bomb_is_refused_quickly():
    lines = ["---", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join('*' + prev for _ in range(9))}]")
    lines += ["---", "body"]
    with pytest.raises(PageError) as info:
        parse_page("file:///bomb.md", "\n".join(lines).encode())
    assert info.value.reason == "front_matter_too_large"


DEEP = 900


@pytest.mark.parametrize(
    "body",
    [
        b"---\na: &x [*x]\n---\nbody",  # an alias inside itself: infinitely deep
        b"---\na: &x {b: *x}\n---\nbody",
        b"---\nx: &x [1, [2, *x]]\ntitle: t\n---\nbody",
        b"---\na: " + b"[" * DEEP + b"]" * DEEP + b"\n---\nbody",
        b"---\na: " + b"{b: " * DEEP + b"1" + b"}" * DEEP + b"\n---\nbody",
        b"---\ntitle: " + b"[" * 400 + b"x" + b"]" * 400 + b"\n---\nbody",
        b"+++\na = " + b"[" * DEEP + b"]" * DEEP + b"\n+++\nbody",
        b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}\nbody",
        b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\nbody",
    ],
    ids=[
        "yaml-self-list",
        "yaml-self-map",
        "yaml-cycle",
        "yaml-900",
        "yaml-900-maps",
        "title-400",
        "toml-900",
        "json-900",
        "json-20000",
    ],
)
def test_recursive_and_deep_front_matter_is_a_page_error(body):
    # Issue 16, item 13: these raised RecursionError outside the page-error path, so the
    # crawl skipped the page without counting it.
    with pytest.raises(PageError) as info:
        parse_page("file:///deep.md", body)
    assert info.value.reason == "front_matter_too_deep"


def test_front_matter_nested_within_the_bound_is_kept():
    page = parse("---\ntitle: t\na: " + "[" * 60 + "1" + "]" * 60 + "\n---\nbody")
    value = page.front_matter["a"]
    for _ in range(59):
        value = value[0]
    assert value == [1]


@settings(max_examples=fuzz(300), deadline=None)
@given(st.binary(max_size=2000))
def test_parse_page_on_arbitrary_bytes_only_raises_page_error(body):
    try:
        page = parse_page("file:///fuzz.md", body)
    except PageError as exc:
        assert exc.reason
        return
    json.dumps(page.front_matter)
    assert [im["position"] for im in page.images] == list(range(len(page.images)))


@settings(max_examples=fuzz(200), deadline=None)
@given(st.text(max_size=500))
def test_parse_page_on_arbitrary_text(text):
    try:
        page = parse(text)
    except PageError:
        return
    assert isinstance(page.body_text, str)
