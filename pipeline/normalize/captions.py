"""Caption repair and structure (headline, site, board, tags). Pure functions.

``repair`` fixes the text and removes no words (inline Markdown becomes the text a
renderer shows); ``normalize_caption`` then splits off a
publisher suffix (only with evidence), a Pinterest board prefix, hashtags and Pinterest
tag trails.

>>> repair("Chair therabandâ„¢ Upper  Back &amp; Arms")
'Chair theraband™ Upper Back & Arms'
>>> repair("_Credit: Alexandre Diniz/Prefeitura de São Paulo_")
'Credit: Alexandre Diniz/Prefeitura de São Paulo'
>>> c = normalize_caption("Chair yoga for the neck -  YouTube", image_domain="youtube.com")
>>> c.headline, c.site
('Chair yoga for the neck', 'YouTube')
>>> normalize_caption("Pin on Fitness", image_domain="pinterest.com").board
'Fitness'
>>> normalize_caption("The Best Upper Back Stretch - Thoracic Stretch").site is None
True
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import ftfy
from ftfy.badness import is_bad
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.rules_inline.state_inline import Delimiter
from markdown_it.token import Token

from pipeline.normalize.data import load_table
from pipeline.normalize.domains import PLATFORMS

__all__ = ["CaptionInfo", "normalize_caption", "plain_inline", "repair"]

_FTFY = ftfy.TextFixerConfig(
    unescape_html=False,  # done exactly once, before ftfy
    uncurl_quotes=False,  # curly quotes are the author's
    fix_latin_ligatures=False,
    fix_character_width=False,  # full-width text is correct text
    normalization="NFC",
    explain=False,
)


# Mojibake ftfy leaves behind: UTF-8 bytes shown as Windows-1252/Latin-1 characters,
# e.g. `â„¢` for `™`. A lead character (bytes C2–F4) followed by the right number of
# continuation characters (bytes 80–BF) is re-encoded and decoded as UTF-8, but only
# where the evidence is unambiguous (see _redecode): when ftfy declines a text, it is
# usually because the text is right.
def _cp1252_char(b: int) -> str:
    try:
        return bytes([b]).decode("cp1252")
    except UnicodeDecodeError:
        return bytes([b]).decode("latin-1")


_CHAR_TO_BYTE = {_cp1252_char(b): b for b in range(0x80, 0x100)}
_CONT = "".join(re.escape(_cp1252_char(b)) for b in range(0x80, 0xC0))
_LEAD2 = "".join(re.escape(_cp1252_char(b)) for b in range(0xC2, 0xE0))
_LEAD3 = "".join(re.escape(_cp1252_char(b)) for b in range(0xE0, 0xF0))
_LEAD4 = "".join(re.escape(_cp1252_char(b)) for b in range(0xF0, 0xF5))
_SEQ = f"[{_LEAD2}][{_CONT}]|[{_LEAD3}][{_CONT}]{{2}}|[{_LEAD4}][{_CONT}]{{3}}"
_MOJIBAKE = re.compile(f"(?:{_SEQ})+")
# `â` + two Windows-1252 symbols is how UTF-8 punctuation and symbols (U+2000–U+2BFF:
# quotes, dashes, `…`, `™`, `€`, arrows, math) look as mojibake; no language writes
# `â„¢` or `â€™`. Any other lead (`Ã’s`, `Brontë…”`, `lá´´`, `DrÃ¥ber`) is a letter
# followed by punctuation in correct text often enough that it is left to ftfy.
_TRUSTED_RANGE = range(0x2000, 0x2C00)
# `â€` + the byte 9D (undefined in cp1252, so usually lost) was a closing double quote.
_LOST_RDQUO = re.compile("â€(?=\\s|$)")
# `Â` + NBSP whose NBSP became a plain space, right after a digit or a closing
# punctuation mark (`Price:Â 10`, `10Â km`); elsewhere it may be the letter.
_LOST_NBSP = re.compile(r"(?<=[\d:;,.!?)%])Â(?= )")
# A capital `Â`/`Ã` standing alone before a space or the end is a word (`Ã and Â`), or
# mojibake whose NBSP byte was lost (`jusqu'Ã nos jours`): alone, one character is no
# evidence, but ftfy would decode it (`Â is` → `is`). Unless the text shows Latin-1
# mojibake elsewhere (`rÃ©flexion`), it is hidden from ftfy behind private-use
# stand-ins, then put back.
_LONE_LEAD = re.compile(r"(?<![^\W\d_])[ÂÃ](?= |$)")
# (Not counting the punctuation that follows a capital in correct text: `“Ã”`, `Ã’s`.)
_LATIN1_MOJIBAKE = re.compile(
    "[ÂÃ][" + "".join(sorted({_cp1252_char(b) for b in range(0x80, 0xC0)} - set("’”“‘…»›™®°´¨·•–—\xa0"))) + "]"
)
_HIDE = {"Â": "\uf8f0", "Ã": "\uf8f1"}
_SHOW = {ord(v): k for k, v in _HIDE.items()}

# Well-formed character references only, with their `;`: `&not html`, `&copy2020` and
# `&#20x6;` are text, although HTML5's legacy rules would decode some of them.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# Terminal control sequences (ECMA-48): CSI (`ESC [ 36;44 m`), OSC (`ESC ] 0;title BEL`)
# and two-character escapes, removed whole so that no parameter text is left behind.
# Character classes are disjoint, so matching stays linear.
_TERMINAL = re.compile(
    "\x1b\\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b\x9c]*(?:\x07|\x1b\\\\|\x9c)|\x1b[ -/]*[0-Z\\\\-~]"
)

# Zero-width characters that carry no meaning in a caption. ZWJ/ZWNJ are kept: emoji
# sequences and several scripts (Persian, Indic) need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u200e\u200f\u00ad\u180e"), None)


def _redecode(match: re.Match[str]) -> str:
    s = match.group(0)
    try:
        fixed = bytes(_CHAR_TO_BYTE[c] for c in s).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return s
    if s[0] == "â" and all(ord(c) in _TRUSTED_RANGE for c in fixed):
        return fixed
    return s


def _unescape(s: str) -> str:
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), s) if "&" in s else s


# ftfy rescans the whole text after each fix it makes, which is quadratic on one long line
# full of mojibake (12 KB of `Ã™™` took 7 s). Captions are short; a long one is handed
# over in pieces that end after a space (ftfy itself works line by line), so the cost
# stays linear. A piece cut without a space can split one mojibake sequence: only junk
# has thousands of characters without one.
_FTFY_PIECE = 256


def _pieces(s: str) -> list[str]:
    pieces = []
    start = 0
    while len(s) - start > 2 * _FTFY_PIECE:
        space = s.find(" ", start + _FTFY_PIECE, start + 2 * _FTFY_PIECE)
        cut = space + 1 if space >= 0 else start + _FTFY_PIECE
        pieces.append(s[start:cut])
        start = cut
    pieces.append(s[start:])
    return pieces


def _ftfy(s: str) -> str:
    if len(s) > 2 * _FTFY_PIECE:
        return "".join(_ftfy_piece(piece) for piece in _pieces(s))
    return _ftfy_piece(s)


def _ftfy_piece(s: str) -> str:
    hide = (
        _LONE_LEAD.search(s) is not None
        and _LATIN1_MOJIBAKE.search(s) is None
        and "\uf8f0" not in s
        and "\uf8f1" not in s
    )
    if not hide:
        return ftfy.fix_text(s, _FTFY)
    return ftfy.fix_text(_LONE_LEAD.sub(lambda m: _HIDE[m.group(0)], s), _FTFY).translate(_SHOW)


# -- inline Markdown → text ----------------------------------------------------------------
#
# Captions reach us as Markdown wherever the page's generator renders them so: a Hugo
# `figure` shortcode's caption (`markdownify`), an image title, a figcaption. A renderer
# shows `_Credit: A. Diniz_` as the words, so that is what is stored and indexed. Read by
# markdown-it (the body's parser) with only the inline rules a caption uses: emphasis,
# code spans, links, images, autolinks, and escapes (kept as written, so that an escaped
# `\\*` never becomes a delimiter). HTML, entities (decoded once, by repair) and
# everything block-level stay text.
#
# Captions are not always Markdown, so emphasis is stricter than CommonMark's: a
# delimiter run opens only at a word start and closes only at a word end (after it:
# whitespace, the end, or closing punctuation that is itself followed by one of those).
# `2*3*4`, `snake_case_name`, `__init__.py` and `file_name_v2.jpg` stay as written;
# `**Note**: x`, `(_Credit_)` and `_x_.` are reduced.
_OPEN_BEFORE = frozenset("([{\"'“‘«¿¡")
_CLOSE_AFTER = frozenset(".,;:!?)]}\"'”’»…")
_MARKDOWN_CHARS = frozenset("*_`[<")


def _word_start(src: str, pos: int) -> bool:
    """Whether ``src[pos]`` follows whitespace, the start, or opening punctuation that does."""
    while pos > 0 and src[pos - 1] in _OPEN_BEFORE:
        pos -= 1
    return pos == 0 or src[pos - 1].isspace()


def _word_end(src: str, pos: int) -> bool:
    """Whether ``src[pos:]`` starts with whitespace, the end, or closing punctuation then one of those."""
    end = len(src)
    while pos < end and src[pos] in _CLOSE_AFTER:
        pos += 1
    return pos == end or src[pos].isspace()


def _emphasis(state: StateInline, silent: bool) -> bool:
    """markdown-it's emphasis tokenizer with the word-boundary rule above."""
    start = state.pos
    marker = state.src[start]
    if silent or marker not in "_*":
        return False
    scanned = state.scanDelims(start, False)
    end = start + scanned.length
    # Runs of the same marker are scanned whole, so each position is looked at once.
    can_open = scanned.can_open and _word_start(state.src, start)
    can_close = scanned.can_close and _word_end(state.src, end)
    for _ in range(scanned.length):
        token = state.push("text", "", 0)
        token.content = marker
        state.delimiters.append(Delimiter(ord(marker), scanned.length, len(state.tokens) - 1, -1, can_open, can_close))
    state.pos = end
    return True


def _inline_parser() -> MarkdownIt:
    md = MarkdownIt("zero")
    md.enable(["escape", "backticks", "emphasis", "link", "image", "autolink"])
    md.inline.ruler.at("emphasis", _emphasis)
    md.disable("text_join")  # it would turn escapes into their bare character
    # Never rendered: a link's or autolink's URL is dropped, whatever its scheme.
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    md.normalizeLinkText = lambda url: url  # type: ignore[method-assign]
    return md


_INLINE = _inline_parser()


def _inline_text(tokens: list[Token], out: list[str]) -> None:
    for token in tokens:
        t = token.type
        if t == "text" or t == "code_inline":
            out.append(token.content)
        elif t == "text_special":
            out.append(token.markup)  # an escape, as written
        elif t == "image":
            _inline_text(token.children or [], out)  # its alt text
        elif t in ("softbreak", "hardbreak"):
            out.append(" ")


def _reduce_markdown(text: str) -> str:
    out: list[str] = []
    for block in _INLINE.parseInline(text):
        _inline_text(block.children or [], out)
    return " ".join("".join(out).split())


def plain_inline(text: str) -> str:
    """Inline Markdown reduced to the text a renderer shows: emphasis, code spans, links
    and images (by their alt text). Emphasis only at word boundaries (see above).

    A reduction whose result would itself read as Markdown again (the code span
    `` `*x*` ``, unmatched delimiters that pair up once the others are gone) is not
    made: the text is kept as written, so that the function is idempotent.

    >>> plain_inline("_Credit: Alexandre Diniz/Prefeitura de São Paulo_")
    'Credit: Alexandre Diniz/Prefeitura de São Paulo'
    >>> plain_inline("**Run** `pip install` – see [the docs](https://x.test/d)")
    'Run pip install – see the docs'
    >>> plain_inline("2*3*4 and snake_case_name in __init__.py")
    '2*3*4 and snake_case_name in __init__.py'
    """
    if _MARKDOWN_CHARS.isdisjoint(text):
        return text
    reduced = _reduce_markdown(text)
    if reduced == text or (not _MARKDOWN_CHARS.isdisjoint(reduced) and _reduce_markdown(reduced) != reduced):
        return text
    return reduced


def _repair_once(s: str) -> str:
    if "\x1b" in s or "\x9b" in s:
        s = _TERMINAL.sub("", s)
    if not s.isascii():
        plain = _ftfy(s)
        # Before ftfy, which would read `â€ ` as the bytes of a dagger.
        quoted = _LOST_RDQUO.sub("\u201d", s)
        ours = _ftfy(quoted) if quoted != s else plain
        ours = _LOST_NBSP.sub(" ", _MOJIBAKE.sub(_redecode, ours))
        # Our own steps are kept only when ftfy finds nothing wrong with what they
        # made: a hopeless garble stays as ftfy leaves it instead of becoming another.
        s = ours if ours == plain or not is_bad(ours) else plain
        s = s.translate(_INVISIBLE)
        s = unicodedata.normalize("NFC", s)
    if not s.isprintable():
        # Control characters become spaces so that words they separated stay apart.
        s = "".join(" " if unicodedata.category(c) == "Cc" else c for c in s)
    return plain_inline(" ".join(s.split()))


@lru_cache(maxsize=8192)
def repair(text: str) -> str:
    """Repair a caption: well-formed entities decoded once, mojibake fixed, NFC,
    terminal escapes, invisible and control characters removed, whitespace collapsed,
    inline Markdown reduced to its text (:func:`plain_inline`). Nothing else is removed,
    and text without a mojibake signature or Markdown is left as it is.

    >>> repair("Fish &amp; chips &not html, AT&T &copy2020")
    'Fish & chips &not html, AT&T &copy2020'
    >>> repair("\x1b[36;44mblue\x1b[0m text")
    'blue text'
    >>> repair("Charlotte Brontë…” and SÃO PAULO")
    'Charlotte Brontë…” and SÃO PAULO'
    """
    s = _unescape(text)
    # Text encoded twice needs two rounds (and one fix can expose another); repeat to a
    # fixed point so that repair(repair(x)) == repair(x). The bound keeps junk cheap.
    for _ in range(6):
        fixed = _repair_once(s)
        if fixed == s:
            break
        s = fixed
    return s


# The ASCII characters str.isalnum() refuses (bytes.translate deletes them fastest).
_ASCII_NOT_ALNUM = bytes(b for b in range(128) if not chr(b).isalnum())


def _key(s: str) -> str:
    """Letters and digits only, case-folded and without accents: `ELDERGYM®` → `eldergym`."""
    if s.isascii():
        # Most segments: casefold is lower() and NFKD changes nothing on ASCII.
        return s.lower().encode().translate(None, _ASCII_NOT_ALNUM).decode()
    folded = unicodedata.normalize("NFKD", s.casefold())
    return "".join(c for c in folded if c.isalnum())


_KNOWN_SITES: frozenset[str] = frozenset(
    {_key(name) for name in load_table("publishers.json")} | {_key(v["name"]) for v in PLATFORMS.values()}
)
# Labels too generic to be evidence of a publisher on their own.
_GENERIC_LABELS = frozenset(
    {"com", "org", "net", "gov", "edu", "www", "cdn", "img", "image", "images", "static", "assets", "blog"}
    | {"post", "media", "files", "news"}
)

_SEPARATORS = re.compile(r" (?:\||-|–|—|·|::) ")
_BOARD = re.compile(
    r"^(?:pin (?:on|auf|en|di|op|em|su|på|na|no|från)|[eé]pingl[eé] (?:sur|dans)) (?P<board>.+)$",
    re.IGNORECASE,
)
_HASHTAG = re.compile(r"(?<![\w&/#])#(\w[\w-]*(?:…|\.\.\.)?)")
# A word made only of hashtags (`#yoga`, `#a#b`, `#desk…`). Matched word by word from
# the end: a pattern anchored at `$` with a repeated group backtracks quadratically.
_TAG_WORD = re.compile(r"(?:#\w[\w-]*(?:…|\.\.\.)?)+")
_TRUNCATED = ("…", "...")


@dataclass(frozen=True, slots=True)
class CaptionInfo:
    caption: str
    headline: str
    site: str | None
    board: str | None
    tags: list[str] = field(default_factory=list)


@lru_cache(maxsize=16384)
def _domain_evidence(domain: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """(keys a site must equal, labels a site may end with) for a registrable domain."""
    labels = [label for label in domain.split(".") if label]
    equal = {_key(domain), *(_key(label) for label in labels if len(label) >= 3 and label not in _GENERIC_LABELS)}
    # A tuple, for one str.endswith call per segment.
    ending = tuple({_key(label) for label in labels if len(label) >= 6 and label not in _GENERIC_LABELS})
    return frozenset(k for k in equal if k), ending


def _is_site(segment: str, domains: tuple[str | None, ...]) -> bool:
    key = _key(segment)
    if len(key) < 2:
        return False
    if key in _KNOWN_SITES or (key.startswith("the") and key[3:] in _KNOWN_SITES):
        return True
    for domain in domains:
        if not domain:
            continue
        equal, ending = _domain_evidence(domain)
        if key in equal or key.endswith(ending):
            return True
    return False


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        folded = item.casefold()
        if item and folded not in seen:
            seen.add(folded)
            out.append(item)
    return out


def _split_site(caption: str, domains: tuple[str | None, ...]) -> tuple[str, str | None]:
    """Find the publisher: the right-most separator-delimited segment with evidence."""
    seps = list(_SEPARATORS.finditer(caption))
    for i in range(len(seps) - 1, -1, -1):
        end = seps[i + 1].start() if i + 1 < len(seps) else len(caption)
        segment = caption[seps[i].end() : end].strip()
        if _is_site(segment, domains):
            headline = caption[: seps[i].start()].strip()
            if headline:
                return headline, segment
    return caption, None


def _tag_trail(headline: str) -> tuple[str, list[str]]:
    """Pinterest's `Title | tag one, tag two, tag thr…` trail."""
    before, sep, trail = headline.rpartition(" | ")
    if not sep or "," not in trail or not before.strip():
        return headline, []
    tags = [t.strip() for t in trail.split(",")]
    if tags and tags[-1].endswith(_TRUNCATED):
        tags.pop()
    return before.strip(), [t for t in tags if t]


def _without_trailing_hashtags(headline: str) -> str:
    words = headline.split()
    end = len(words)
    while end and _TAG_WORD.fullmatch(words[end - 1]):
        end -= 1
    return " ".join(words[:end])


def normalize_caption(
    raw: str,
    *,
    image_domain: str | None = None,
    page_domain: str | None = None,
    site_hint: str | None = None,
) -> CaptionInfo:
    """Repair a caption and split it into headline, site, board and tags.

    ``site_hint`` is the platform name the domain step derived from the image host
    (`Pinterest`, `YouTube`); it becomes ``site`` when the caption names no publisher."""
    caption = repair(raw)
    pinterest = image_domain == "pinterest.com"
    headline, site = _split_site(caption, (image_domain, page_domain))
    board = None
    m = _BOARD.match(headline)
    if m and (pinterest or headline == caption):
        board = m.group("board").strip()
        headline, site = board, site or "Pinterest"
    tags: list[str] = []
    if pinterest and board is None:
        headline, tags = _tag_trail(headline)
    # The pattern starts with a lookbehind, which the regex engine tries at every position.
    hashtags = [t for t in _HASHTAG.findall(headline) if not t.endswith(_TRUNCATED)] if "#" in headline else []
    if hashtags:
        headline = _without_trailing_hashtags(headline) or headline
    return CaptionInfo(
        caption=caption,
        headline=headline,
        site=site or site_hint,
        board=board,
        tags=_dedup(hashtags + tags),
    )
