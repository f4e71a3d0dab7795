"""Page bytes → :class:`Page`. Pure: no Scrapy, no Whoosh.

Front matter is split and loaded through python-frontmatter's handler interface (TOML
between ``+++``, YAML between ``---`` with safe loading, JSON object at the top); the
body goes to :mod:`pipeline.body`. Anything that makes a page unusable raises
:class:`PageError` with a short machine-readable ``reason`` that the crawl counts.

>>> page = parse_page("file:///p.md", b'+++\\ntitle = "Hi"\\n+++\\n![](a.jpg) A')
>>> page.format, page.title, page.images[0]["image_url"], page.images[0]["caption_raw"]
('toml', 'Hi', 'a.jpg', 'A')
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.utils
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import yaml
from frontmatter.default_handlers import BaseHandler, JSONHandler, YAMLHandler

from index.model.contract import ImageRecord
from pipeline.body import extract_body
from pipeline.items import PageContent

__all__ = ["Page", "PageError", "decode", "parse_page"]

# Front matter bigger than this is not metadata any more; it is refused rather than
# handed to a YAML/TOML parser that could be made to spend unbounded time on it.
MAX_FRONT_MATTER_CHARS = 256 * 1024
# Bound on the JSON-safe copy of the metadata: YAML aliases can make a 1 KB document
# expand into billions of nodes ("billion laughs").
MAX_FRONT_MATTER_NODES = 100_000
# Metadata nested deeper than this is refused (`front_matter_too_deep`), and so is a YAML
# alias that contains itself (`a: &x [*x]`, infinitely deep): walking either would
# exhaust Python's stack far from the page-error path.
MAX_FRONT_MATTER_DEPTH = 64


class PageError(ValueError):
    """A page that cannot become an item; ``reason`` is a short stats-friendly slug."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Page(PageContent):
    """A parsed page: its content (the item's fields) and what the crawl counts."""

    # Kept, but not whole: slugs the crawl counts as pages/notes/<slug> (see body.Body).
    notes: list[str] = field(default_factory=list)


class TOMLHandler(BaseHandler):
    """TOML via the standard library's tomllib (python-frontmatter's own needs `toml`)."""

    FM_BOUNDARY = re.compile(r"^\+{3,}[ \t]*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        return tomllib.loads(fm)


class StrictYAMLHandler(YAMLHandler):
    # python-frontmatter's pattern allows trailing whitespace to swallow newlines.
    FM_BOUNDARY = re.compile(r"^-{3,}[ \t]*$", re.MULTILINE)


class ObjectJSONHandler(JSONHandler):
    """A JSON object at the top of the page, however it is laid out (nested braces,
    tabs, one line): the decoder finds where it ends, not a line pattern."""

    def split(self, text: str) -> tuple[str, str]:
        _, end = json.JSONDecoder(strict=False).raw_decode(text)
        return text[:end], text[end:]

    def load(self, fm: str, **kwargs: object) -> Any:
        return json.loads(fm, strict=False)


_HANDLERS: dict[str, tuple[BaseHandler, type[Exception]]] = {
    "toml": (TOMLHandler(), tomllib.TOMLDecodeError),
    "yaml": (StrictYAMLHandler(), yaml.YAMLError),
    "json": (ObjectJSONHandler(), json.JSONDecodeError),
}

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode(body: bytes) -> str:
    """Bytes → text: BOM if any, else UTF-8, else Windows-1252 (what legacy pages use).

    NUL bytes in what should be text mean a binary file: refused."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            try:
                text = body.decode(encoding)
            except UnicodeDecodeError as exc:
                raise PageError("undecodable", str(exc)) from None
            break
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("cp1252", errors="replace")
    if "\x00" in text:
        raise PageError("binary", "NUL bytes in page")
    return text


def _detect(text: str) -> str:
    first = text.split("\n", 1)[0].rstrip()
    if first and set(first) == {"+"} and len(first) >= 3:
        return "toml"
    if first and set(first) == {"-"} and len(first) >= 3:
        return "yaml"
    # `{{< figure >}}` or `{ some prose` must stay Markdown: JSON needs `{` then `"` or `}`.
    if re.match(r"\{\s*[\"}]", text):
        return "json"
    return "none"


def _split(fmt: str, text: str) -> tuple[dict[str, Any], str]:
    handler, error = _HANDLERS[fmt]
    try:
        fm, content = handler.split(text)
    except RecursionError:
        # The JSON decoder finds the end of the object by parsing it.
        raise PageError("front_matter_too_deep", "nested beyond the parser's stack") from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise PageError("invalid_json", str(exc)) from None
        raise PageError("unclosed_front_matter", f"no closing {handler.END_DELIMITER}") from None
    if len(fm) > MAX_FRONT_MATTER_CHARS:
        raise PageError("front_matter_too_large", f"{len(fm)} characters")
    try:
        meta = handler.load(fm)
    except RecursionError:
        raise PageError("front_matter_too_deep", "nested beyond the parser's stack") from None
    except (error, ValueError) as exc:
        raise PageError(f"invalid_{fmt}", " ".join(str(exc).split())[:200]) from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise PageError("front_matter_not_mapping", type(meta).__name__)
    return meta, content


def _json_safe(value: Any, budget: list[int], depth: int = 0) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise PageError("front_matter_too_large", f"more than {MAX_FRONT_MATTER_NODES} values")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple, set)) and depth >= MAX_FRONT_MATTER_DEPTH:
        raise PageError("front_matter_too_deep", f"nested deeper than {MAX_FRONT_MATTER_DEPTH} levels")
    if isinstance(value, dict):
        return {str(k): _json_safe(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v, budget, depth + 1) for v in value]
    return str(value)


def _scalar_text(value: Any) -> str | None:
    """Title/author as a string: scalars as text, lists of scalars joined, else null."""
    if isinstance(value, list):
        parts = [_scalar_text(v) for v in value]
        joined = ", ".join(p for p in parts if p)
        return joined or None
    if value is None or isinstance(value, (dict, bool)):
        return None
    text = " ".join(str(value).split())
    return text or None


def _iso_date(value: Any) -> str | None:
    """A date as ISO 8601; a value without a zone stays naive (no zone is invented)."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip()
    try:
        # A date stays a date: datetime.fromisoformat would invent a midnight.
        return dt.date.fromisoformat(s).isoformat()
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s).isoformat()
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(s).isoformat()
    except (TypeError, ValueError, IndexError):
        return None


_DATE_KEYS = ("date", "publishdate", "published", "pubdate", "created")
_TAG_KEYS = ("tags", "categories", "keywords")


def _first(meta: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {k.lower(): v for k, v in meta.items() if isinstance(k, str)}
    for key in keys:
        if lowered.get(key) is not None:
            return lowered[key]
    return None


def _tags(meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    lowered = {k.lower(): v for k, v in meta.items() if isinstance(k, str)}
    for key in _TAG_KEYS:
        value = lowered.get(key)
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
        for item in items:
            text = _scalar_text(item) if not isinstance(item, list) else None
            if text and text not in out:
                out.append(text)
    return out


def parse_page(url: str, body: bytes) -> Page:
    """Parse one page. Raises :class:`PageError` when the page cannot be used."""
    text = decode(body)
    # CRLF and CR-only files: one line model for the front matter patterns and Markdown.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Real sites put blank lines before the opening delimiter.
    stripped = text.lstrip(" \t\n\ufeff")
    fmt = _detect(stripped)
    if fmt == "none":
        meta, content = {}, text
    else:
        meta, content = _split(fmt, stripped)
    front_matter = _json_safe(meta, [MAX_FRONT_MATTER_NODES])
    refs, body_text, nesting_limited = extract_body(content)
    images: list[ImageRecord] = [
        {
            "position": i,
            "image_url": ref.src,
            "link_url": ref.link,
            "alt": ref.alt,
            "caption_raw": ref.caption,
        }
        for i, ref in enumerate(refs)
    ]
    return Page(
        url=url,
        format=fmt,
        front_matter=front_matter,
        title=_scalar_text(_first(meta, ("title",))),
        author=_scalar_text(_first(meta, ("author", "authors"))),
        date=_iso_date(_first(meta, _DATE_KEYS)),
        tags=_tags(meta),
        body_text=body_text,
        content_hash=hashlib.sha256(body).hexdigest(),
        images=images,
        notes=["nesting_limited"] if nesting_limited else [],
    )
