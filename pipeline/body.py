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
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import NamedTuple

from markdown_it import MarkdownIt, rules_block
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from pipeline.normalize.captions import plain_inline

__all__ = ["Body", "ImageRef", "Shortcode", "extract", "extract_body", "fast_inline", "scan_shortcode"]


@dataclass(slots=True)
class ImageRef:
    src: str
    alt: str = ""
    title: str = ""
    link: str | None = None
    caption: str = ""


# Static-site-generator figure shortcodes, read by a small lexer that follows Hugo's own
# (gohugoio/hugo parser/pageparser/pagelexer_shortcode.go): `{{< name params >}}` and
# `{{% name params %}}`, whitespace (spaces, tabs, newlines) anywhere between tokens and
# around `=`, values in double quotes (with `\"`), backticks (raw, may span lines) or
# bare, and positional parameters. Single quotes are accepted too (Hugo keeps them as part
# of a bare value). The commented form that *shows* a shortcode, `{{</* figure */>}}`, is
# not one. Zola's `{{ figure(src="a.jpg", caption="x") }}` is read by the same scanner.
# Each scan stops at the first character its grammar does not allow, so scans started at
# every `{{` of a hostile page cost linear time in total (a regex with `.*?` up to the
# closing delimiter was quadratic).
_SHORTCODE_NAMES = frozenset({"figure", "img", "image"})
_ZOLA_NAMES = frozenset({"figure", "image", "img", "resize_image"})
_SPACE = " \t\r\n"


class _Scanner:
    __slots__ = ("pos", "src")

    def __init__(self, src: str, pos: int) -> None:
        self.src = src
        self.pos = pos

    def skip_space(self, chars: str = _SPACE) -> None:
        src, pos = self.src, self.pos
        while pos < len(src) and src[pos] in chars:
            pos += 1
        self.pos = pos

    def word(self) -> str:
        """Letters, digits, `_`, `-`, `.` and `/` (Hugo's names and bare parameters)."""
        src, start = self.src, self.pos
        pos = start
        while pos < len(src) and (src[pos].isalnum() or src[pos] in "_-./"):
            pos += 1
        self.pos = pos
        return src[start:pos]

    def quoted(self) -> str | None:
        """A "double" (backslash escapes the quote), 'single' or `raw` string, or None."""
        src, quote = self.src, self.src[self.pos]
        out = []
        pos = self.pos + 1
        while True:
            end = src.find(quote, pos)
            if end < 0:
                return None
            if quote == '"' and src[end - 1] == "\\" and end - 1 >= pos:
                out.append(src[pos : end - 1] + '"')
                pos = end + 1
                continue
            out.append(src[pos:end])
            self.pos = end + 1
            return "".join(out)

    def bare(self, stops: str) -> str:
        """A bare value: up to whitespace, a closing delimiter or a `{{` (where the next
        shortcode starts: a bare value running into it would make scans quadratic)."""
        src, start = self.src, self.pos
        pos = start
        while pos < len(src) and src[pos] not in _SPACE and src[pos] not in stops:
            if src.startswith("{{", pos):
                break
            pos += 1
        self.pos = pos
        return src[start:pos]

    def value(self, stops: str) -> str | None:
        if self.pos < len(self.src) and self.src[self.pos] in "\"'`":
            return self.quoted()
        return self.bare(stops)


class Shortcode(NamedTuple):
    end: int
    name: str
    args: dict[str, str]
    positional: list[str]


def _scan_hugo(src: str, start: int) -> Shortcode | None:
    """The Hugo shortcode at ``src[start:]`` (which starts with `{{<` or `{{%`)."""
    close = ">}}" if src[start + 2] == "<" else "%}}"
    sc = _Scanner(src, start + 3)
    if src.startswith("/*", sc.pos):
        return None
    sc.skip_space()
    name = sc.word()
    if not name or not name[0].isalnum():
        return None
    args: dict[str, str] = {}
    positional: list[str] = []
    while True:
        sc.skip_space()
        if src.startswith(close, sc.pos):
            return Shortcode(sc.pos + 3, name, args, positional)
        if src.startswith("/" + close, sc.pos):  # self-closing `{{< figure ... />}}`
            return Shortcode(sc.pos + 4, name, args, positional)
        if sc.pos >= len(src):
            return None
        c = src[sc.pos]
        if c in "\"'`":
            value = sc.quoted()
            if value is None:
                return None
            positional.append(value)
            continue
        token_start = sc.pos
        key = sc.word()
        sc.skip_space()
        if key and sc.pos < len(src) and src[sc.pos] == "=":
            sc.pos += 1
            sc.skip_space(" \t")
            value = sc.value(close[0])
            if value is None:
                return None
            args[key.lower()] = value
        else:
            # A bare positional value, up to whitespace (`/a.jpg`, `https://…`; Hugo
            # itself wants those quoted); quotes or `=` inside mean a parameter we misread.
            sc.pos = token_start
            value = sc.bare(close[0])
            if not value or any(c in value for c in "\"'`="):
                return None
            positional.append(value)


def _scan_zola(src: str, start: int) -> Shortcode | None:
    """The Zola shortcode call at ``src[start:]`` (which starts with `{{`)."""
    sc = _Scanner(src, start + 2)
    sc.skip_space()
    name = sc.word()
    sc.skip_space()
    if name not in _ZOLA_NAMES or not src.startswith("(", sc.pos):
        return None
    sc.pos += 1
    args: dict[str, str] = {}
    while True:
        sc.skip_space()
        if src.startswith(")", sc.pos):
            sc.pos += 1
            sc.skip_space()
            return Shortcode(sc.pos + 2, name, args, []) if src.startswith("}}", sc.pos) else None
        key = sc.word()
        sc.skip_space()
        if not key or not src.startswith("=", sc.pos):
            return None
        sc.pos += 1
        sc.skip_space()
        value = sc.value("),")
        if value is None:
            return None
        args[key.lower()] = value
        sc.skip_space()
        if src.startswith(",", sc.pos):
            sc.pos += 1


def scan_shortcode(src: str, start: int) -> Shortcode | None:
    """The figure shortcode starting at ``src[start]``, or None.

    >>> scan_shortcode('{{< figure\\n\\tsrc= "/img/x.png" >}}', 0).args
    {'src': '/img/x.png'}
    """
    if not src.startswith("{{", start):
        return None
    if src.startswith(("{{<", "{{%"), start):
        found = _scan_hugo(src, start)
        return found if found is not None and found.name in _SHORTCODE_NAMES else None
    return _scan_zola(src, start)


def _join_multiline_shortcodes(markdown: str) -> str:
    """Put every multi-line figure shortcode on one line before Markdown parsing.

    Hugo replaces shortcodes before Markdown sees the page; here Markdown comes first, and
    a parameter line such as `>}}` or `  - x` would be read as a block quote or a list and
    split the shortcode. Only spans that scan as a complete shortcode are joined."""
    if "{{" not in markdown:
        return markdown
    out: list[str] = []
    last = 0
    pos = markdown.find("{{")
    while pos >= 0:
        found = scan_shortcode(markdown, pos)
        if found is None:
            pos = markdown.find("{{", pos + 2)
            continue
        span = markdown[pos : found.end]
        if "\n" in span or "\r" in span:
            out.append(markdown[last:pos])
            out.append(span.replace("\r\n", " ").replace("\r", " ").replace("\n", " "))
            last = found.end
        pos = markdown.find("{{", found.end)
    out.append(markdown[last:])
    return "".join(out)


def _shortcode_rule(state: StateInline, silent: bool) -> bool:
    if state.src[state.pos] != "{" or not state.src.startswith("{{", state.pos):
        return False
    found = scan_shortcode(state.src, state.pos)
    if found is None:
        return False
    args = found.args
    # Hugo's `figure` reads `src`; image shortcodes of themes often take it first, by position.
    src = args.get("src") or args.get("path") or args.get("url") or (found.positional or [""])[0]
    if not src:
        return False
    if not silent:
        token = state.push("shortcode_image", "", 0)
        token.attrs = {
            "src": src,
            # Markdown alt text is flattened by the parser (_alt_text); a shortcode's is
            # a plain string that themes pass through markdownify, so it is flattened here.
            "alt": plain_inline(args.get("alt", "")),
            "title": args.get("title", ""),
            "caption": args.get("caption", ""),
            "link": args.get("link", ""),
        }
    state.pos = found.end
    return True


# markdown-it stops parsing a container nested deeper than this (its guard against
# recursion); inside a list that is the rest of the page. CommonMark's preset says 20;
# 100 (50 levels of list) is far beyond real pages and far below Python's recursion limit.
MAX_NESTING = 100


# markdown-it's block rules log each attempt at DEBUG, several records per line of every
# paragraph. Scrapy sets the root logger to NOTSET and filters in its handler, so each of
# those records was built (caller lookup included) and then dropped: a third of the crawl
# side's time (issue 19). Nothing of markdown-it's below INFO is worth that.
logging.getLogger("markdown_it").setLevel(logging.INFO)

# The fast path for the inline pass. Most lines of real pages are either plain prose or
# the seed's `[ ![alt](image)](link) caption`; for those, markdown-it's inline pass (which
# reads the link label twice and the destinations character by character) can only yield
# one token stream, built here directly. A line with any character that could start other
# inline syntax (escapes, code, emphasis, brackets, HTML/autolinks, shortcodes), with
# surrounding whitespace (hard breaks), or with an entity in a URL (markdown-it decodes
# those) sends its whole paragraph through markdown-it, so constructs that span lines are
# still read by it. tests/test_parse_fastpath.py checks both paths agree.
_PLAIN = r"[^\\`*_\[\]<>{}\x00-\x1f\x7f]"
_URL_CHAR = r"[^\s()<>\\\[\]`\x00-\x1f\x7f]"
# Parentheses balanced one level deep, as in `filters:no_upscale()/a.jpg`.
# (Unrolled: a per-character alternation made this the fast path's slowest part.)
_URL = rf"(?!\)){_URL_CHAR}*(?:\({_URL_CHAR}*\){_URL_CHAR}*)*"
_PLAIN_LINE = re.compile(rf"{_PLAIN}*")
_IMAGE_LINE = re.compile(
    rf"\[(?P<space> ?)!\[(?P<alt>{_PLAIN}*)\]\((?P<src>{_URL})\)\]\((?P<link>{_URL})\)(?P<caption>{_PLAIN}*)"
)
_ENTITY = re.compile(r"&(?:#\d|#[xX][0-9a-fA-F]|[A-Za-z][A-Za-z0-9]*;)")


class _ImageLine(NamedTuple):
    """One `[ ![alt](src)](link) caption` line, as markdown-it's inline pass would read it:
    link_open, a text " " when ``space``, the image, link_close, the caption's text."""

    space: str
    alt: str
    src: str
    link: str
    caption: str


class FastLines(list[str | _ImageLine]):
    """A paragraph's (or heading's) lines read by the fast path, in the place of its
    inline tokens: plain text lines as str, image lines as _ImageLine; lines are joined by
    soft breaks. _Paragraph.walk_fast reads them as walk reads the tokens."""

    __slots__ = ()


def _fast_line(line: str) -> str | _ImageLine | None:
    """``line`` as a FastLines entry, or None when it is outside the fast path's grammar."""
    m = _IMAGE_LINE.fullmatch(line)
    if m is None:
        if _PLAIN_LINE.fullmatch(line) is None or line != line.strip():
            return None
        return line
    image = _ImageLine(*m.groups())
    src, link, caption = image.src, image.link, image.caption
    if caption != caption.rstrip() or ("&" in src and _ENTITY.search(src)) or ("&" in link and _ENTITY.search(link)):
        return None
    return image


def fast_inline(content: str) -> FastLines | None:
    """The lines of one paragraph's (or heading's) content when every line of it is in
    the fast path's grammar, else None."""
    out = FastLines()
    for line in content.split("\n"):
        read = _fast_line(line)
        if read is None:
            return None
        out.append(read)
    return out


def _inline_rule(state: StateCore) -> None:
    """markdown-it's core `inline` rule, trying the fast path first for each block."""
    parse = state.md.inline.parse
    for token in state.tokens:
        if token.type == "inline":
            fast = fast_inline(token.content)
            if fast is None:
                children = token.children if token.children is not None else []
                parse(token.content, state.md, state.env, children)
                token.children = children
            else:
                token.children = fast  # type: ignore[assignment]  # read only by _Paragraph.walk_fast


def _normalize_rule(state: StateCore) -> None:
    """markdown-it's core `normalize` rule (CR and CRLF to LF, NUL to U+FFFD) with str
    methods, and only when there is something to change: its regex rewrote every line
    end of every page."""
    src = state.src
    if "\r" in src:
        src = src.replace("\r\n", "\n").replace("\r", "\n")
    if "\0" in src:
        src = src.replace("\0", "\ufffd")
    state.src = src


def _make_parser(fast_path: bool = True) -> MarkdownIt:
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
    if fast_path:
        md.core.ruler.at("normalize", _normalize_rule)
        md.core.ruler.at("inline", _inline_rule)
        # text_join only turns escapes (`text_special`) into text and merges neighbours;
        # the walk reads both kinds alike and joins text itself.
        md.disable("text_join")
    return md


# markdown-it alone, no fast path: the oracle the fast path is tested against.
_MD_FULL = _make_parser(fast_path=False)

# Every line of a paragraph is offered to each block rule that can interrupt one, and
# `lheading` reads the whole paragraph once more before `paragraph` does. Those rules can
# only start at a line whose first character (after indentation and `>` markers) is one of
# these, so a page without such a line is parsed with them switched off: same tokens,
# less work.
_BLOCK_STARTS = {
    "fence": "`~",
    "hr": "*-_",
    "list": "*-+0123456789",
    "html_block": "<",
    "heading": "#",
}
# A setext underline, inside any container: `===` or `---` alone on its line. (Matched
# line by line: a MULTILINE `^` pattern searched over the page tried every position.)
_SETEXT_UNDERLINE = re.compile(r"[ \t>]*(?:=+|-+)[ \t]*")
_PARSERS: dict[tuple[frozenset[str], bool], MarkdownIt] = {}
_LIST_MARKER = re.compile(r"(?:[-*+]|[0-9]{1,9}[.)])(?=[ \t]|$)")


def _line_starts(line: str, starts: set[str]) -> None:
    """Add the characters a block could start with on ``line``: its first one after
    indentation and `>`, and again after each list marker (`- # x` is a heading in a list
    item, `- * * *` a rule)."""
    pos = 0
    while True:
        while pos < len(line) and line[pos] in " \t>":
            pos += 1
        starts.add(line[pos : pos + 1])
        marker = _LIST_MARKER.match(line, pos)
        if marker is None:
            return
        pos = marker.end()


def _heading_may_interrupt(lines: list[str]) -> bool:
    """Whether an ATX heading could start on a line that follows a non-blank line.

    The heading rule is also asked, at every line of every paragraph, whether that line
    ends the paragraph (and likewise for reference definitions and block quotes); each of
    those blocks ends at a blank line before asking. A page whose only heading is its
    title needs none of those calls."""
    for i in range(1, len(lines)):
        line = lines[i]
        if "#" in line and lines[i - 1].strip(" \t"):
            starts: set[str] = set()
            _line_starts(line, starts)
            if "#" in starts:
                return True
    return False


def _parser_for(markdown: str) -> MarkdownIt:
    """The fast-path parser with the block rules ``markdown`` cannot use switched off."""
    if "\r" in markdown:  # markdown-it reads a lone CR as a line end too
        markdown = markdown.replace("\r\n", "\n").replace("\r", "\n")
    starts: set[str] = set()
    lines = markdown.split("\n")
    for line in lines:
        _line_starts(line, starts)
    off = [rule for rule, chars in _BLOCK_STARTS.items() if starts.isdisjoint(chars)]
    if ">" not in markdown:
        off.append("blockquote")
    # An underline's first character after indentation and `>` is one of `=-`.
    if starts.isdisjoint("=-") or not any(_SETEXT_UNDERLINE.fullmatch(line) for line in lines):
        off.append("lheading")
    # The heading rule then stays on where a block starts, and off the terminator lists.
    quiet_heading = "heading" not in off and not _heading_may_interrupt(lines)
    key = (frozenset(off), quiet_heading)
    md = _PARSERS.get(key)
    if md is None:
        md = _make_parser()
        if off:
            md.disable(off)
        if quiet_heading:
            md.block.ruler.at("heading", rules_block.heading, {"alt": []})
        _PARSERS[key] = md
    return md


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
    """The alt text as CommonMark renders it: the plain text of the image's children,
    markup flattened, nested images by their own alt text (`![foo ![bar](/u)](/v)` →
    `foo bar`); the same walk as markdown-it's renderInlineAsText."""
    out: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "text_special", "code_inline", "html_inline"):
            out.append(child.content)
        elif child.type == "image":
            out.append(_alt_text(child))
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
    return "".join(out)


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

    def walk_fast(self, lines: FastLines) -> None:
        """What walk does with the tokens markdown-it's inline pass makes of ``lines``."""
        for i, line in enumerate(lines):
            if i:
                self.line_break()  # softbreak
            if type(line) is str:
                if line:
                    self.add_text(line)
                continue
            self.link = line.link or None  # link_open
            if line.space:
                self.add_text(line.space)
            self.add_image(ImageRef(src=line.src, alt=line.alt))
            self.link = None  # link_close
            if line.caption:
                self.add_text(line.caption)
        self.flush()

    def walk(self, children: list[Token]) -> None:
        for tok in children:
            t = tok.type
            if t == "text" or t == "code_inline" or t == "text_special":
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


def extract_body(markdown: str, *, fast_path: bool = True) -> Body:
    """Images, plain text and the nesting note of a Markdown body. ``fast_path=False``
    reads every line with markdown-it's own inline pass (same result, slower)."""
    refs: list[ImageRef] = []
    blocks: list[str] = []
    deepest = 0
    markdown = _join_multiline_shortcodes(markdown)
    md = _parser_for(markdown) if fast_path else _MD_FULL
    for tok in md.parse(markdown):
        deepest = max(deepest, tok.level)
        if tok.type == "inline":
            text: list[str] = []
            children = tok.children
            if type(children) is FastLines:
                _Paragraph(refs, text).walk_fast(children)
            else:
                _Paragraph(refs, text).walk(children or [])
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
