"""Markdown body → plain text and image references. Pure: no Scrapy, no Whoosh.

A real CommonMark parser (markdown-it-py) finds the images, so URLs with balanced
parentheses, ``<...>``-wrapped URLs, reference-style images and images inside code
blocks are handled the way every Markdown renderer handles them. Two extensions ride on
the same parser: HTML ``<img>``/``<figure>`` and static-site-generator figure shortcodes
(Hugo ``{{< figure ... >}}`` / ``{{% figure ... %}}``, Zola ``{{ figure(...) }}``).

>>> refs, text = extract("[ ![](https://x.test/a(1).jpg)](https://x.test/p) A caption")
>>> refs[0].src, refs[0].link, refs[0].caption
('https://x.test/a(1).jpg', 'https://x.test/p', 'A caption')
>>> text
'A caption'
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import NamedTuple

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

__all__ = ["Body", "ImageRef", "extract", "extract_body"]


@dataclass(slots=True)
class ImageRef:
    src: str
    alt: str = ""
    title: str = ""
    link: str | None = None
    caption: str = ""


# Hugo: {{< figure src="a.jpg" caption="x" >}} and {{% figure ... %}}; the escaped form
# used to *show* a shortcode ({{</* figure */>}}) deliberately does not match.
_HUGO = re.compile(r"\{\{(?:<|(%))\s*(?:figure|img|image)\b(?P<args>.*?)\s*(?(1)%|>)\}\}", re.S)
# Zola: {{ figure(src="a.jpg", caption="x") }} and the common image/resize_image variants.
_ZOLA = re.compile(r"\{\{\s*(figure|image|img|resize_image)\s*\((?P<args>.*?)\)\s*\}\}", re.S)
_ARG = re.compile(r"""(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s,"']+))""", re.S)


def _shortcode_args(args: str) -> dict[str, str]:
    out = {}
    for m in _ARG.finditer(args):
        value = m.group(2) if m.group(2) is not None else (m.group(3) or m.group(4) or "")
        out[m.group(1).lower()] = value.replace('\\"', '"')
    return out


def _shortcode_rule(state: StateInline, silent: bool) -> bool:
    if state.src[state.pos] != "{" or not state.src.startswith("{{", state.pos):
        return False
    m = _HUGO.match(state.src, state.pos) or _ZOLA.match(state.src, state.pos)
    if not m:
        return False
    args = _shortcode_args(m.group("args"))
    src = args.get("src") or args.get("path") or args.get("url")
    if not src:
        return False
    if not silent:
        token = state.push("shortcode_image", "", 0)
        token.attrs = {
            "src": src,
            "alt": args.get("alt", ""),
            "title": args.get("title", ""),
            "caption": args.get("caption", ""),
            "link": args.get("link", ""),
        }
    state.pos = m.end()
    return True


# markdown-it stops parsing a container nested deeper than this (its guard against
# recursion); inside a list that is the rest of the page. CommonMark's preset says 20;
# 100 (50 levels of list) is far beyond real pages and far below Python's recursion limit.
MAX_NESTING = 100


def _make_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"maxNesting": MAX_NESTING})
    # Entities stay as written: the caption normalizer decodes them exactly once, and
    # decoding here too would turn `&amp;amp;` into `&` instead of `&amp;`.
    md.disable("entity")
    # We record URLs, we never render them: keep them as written (no percent-encoding,
    # no punycode; the domain normalizer decides) and keep `data:`/`javascript:` images
    # so they are counted as bad URLs instead of vanishing.
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.inline.ruler.before("text", "shortcode_image", _shortcode_rule)
    return md


_MD = _make_parser()


class _HTMLImages(HTMLParser):
    """Collects <img> tags and <figcaption> text from an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.images: list[ImageRef] = []
        self.text: list[str] = []
        self._figure_start: int | None = None
        self._in_caption = False
        self._caption: list[str] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "img" and a.get("src"):
            self.images.append(ImageRef(src=a["src"], alt=a.get("alt", ""), title=a.get("title", ""), link=self._href))
        elif tag == "a":
            self._href = a.get("href") or None
        elif tag == "figure":
            self._figure_start = len(self.images)
        elif tag == "figcaption":
            self._in_caption, self._caption = True, []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None
        elif tag == "figcaption":
            self._in_caption = False
            caption = " ".join("".join(self._caption).split())
            start = self._figure_start if self._figure_start is not None else len(self.images) - 1
            for ref in self.images[max(start, 0) :]:
                if not ref.caption:
                    ref.caption = caption
        elif tag == "figure":
            self._figure_start = None

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self._caption.append(data)
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.handle_data(f"&#{name};")


def _parse_html(fragment: str) -> _HTMLImages:
    parser = _HTMLImages()
    parser.feed(fragment)
    parser.close()
    return parser


def _alt_text(token: Token) -> str:
    # markdown-it renders alt from the image's children (emphasis etc. flattened).
    return "".join(c.content for c in token.children or () if c.type in ("text", "code_inline"))


class _Paragraph:
    """Walks one inline token stream, attaching following text to the last image."""

    def __init__(self, refs: list[ImageRef], text: list[str]) -> None:
        self.refs = refs
        self.text = text
        self.pending: ImageRef | None = None
        self.caption: list[str] = []
        self.link: str | None = None

    def add_image(self, ref: ImageRef) -> None:
        self.flush()
        if ref.link is None:
            ref.link = self.link
        self.refs.append(ref)
        self.pending = ref

    def add_text(self, s: str) -> None:
        self.text.append(s)
        if self.pending is not None:
            self.caption.append(s)

    def line_break(self) -> None:
        self.text.append("\n")
        # The seed style is "image, caption" on one line; an image alone on its line
        # takes the next line as its caption instead.
        if self.pending is not None and "".join(self.caption).strip():
            self.flush()

    def flush(self) -> None:
        if self.pending is not None:
            caption = "".join(self.caption).strip()
            if caption:
                self.pending.caption = caption
            self.pending, self.caption = None, []

    def walk(self, children: list[Token]) -> None:
        for tok in children:
            t = tok.type
            if t == "text" or t == "code_inline":
                self.add_text(tok.content)
            elif t == "image":
                self.add_image(
                    ImageRef(
                        src=str(tok.attrs.get("src", "")),
                        alt=_alt_text(tok),
                        title=str(tok.attrs.get("title", "") or ""),
                    )
                )
            elif t == "shortcode_image":
                a = {k: str(v) for k, v in tok.attrs.items()}
                ref = ImageRef(src=a["src"], alt=a["alt"], title=a["title"], link=a["link"] or None)
                self.add_image(ref)
                if a["caption"]:
                    ref.caption = a["caption"]
                    self.text.append(a["caption"])
                    self.pending = None
            elif t == "link_open":
                self.link = str(tok.attrs.get("href", "")) or None
            elif t == "link_close":
                self.link = None
            elif t in ("softbreak", "hardbreak"):
                self.line_break()
            elif t == "html_inline":
                found = _parse_html(tok.content)
                for ref in found.images:
                    self.add_image(ref)
        self.flush()


class Body(NamedTuple):
    images: list[ImageRef]
    text: str
    # True when markdown-it gave up on nesting deeper than MAX_NESTING: what followed
    # inside that container (for a list, the rest of the page) was not read.
    nesting_limited: bool


def extract(markdown: str) -> tuple[list[ImageRef], str]:
    """Return the images of a Markdown body in page order, and its plain text."""
    body = extract_body(markdown)
    return body.images, body.text


def extract_body(markdown: str) -> Body:
    refs: list[ImageRef] = []
    blocks: list[str] = []
    deepest = 0
    for tok in _MD.parse(markdown):
        deepest = max(deepest, tok.level)
        if tok.type == "inline":
            text: list[str] = []
            _Paragraph(refs, text).walk(tok.children or [])
            blocks.append("\n".join(line.strip() for line in "".join(text).split("\n")))
        elif tok.type in ("code_block", "fence"):
            blocks.append(tok.content.rstrip("\n"))
        elif tok.type == "html_block":
            found = _parse_html(tok.content)
            for ref in found.images:
                if not ref.caption and ref.title:
                    ref.caption = ref.title
            refs.extend(found.images)
            blocks.append("".join(found.text).strip())
    for ref in refs:
        if not ref.caption and ref.title:
            ref.caption = ref.title
    body = "\n\n".join(b for b in blocks if b.strip())
    return Body(refs, html.unescape(body), deepest >= MAX_NESTING - 1)
