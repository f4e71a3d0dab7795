"""Image URL → clean URL, serving host and registrable origin domain. Pure functions.

The rules, in order: URL hygiene (resolve, trim, lowercase scheme/host, drop default
port/userinfo/trailing dot, IDNA), unwrap known image proxies to the origin they serve,
map platform CDNs to their platform, then the registrable domain from the Public Suffix
List (ICANN section, the copy shipped in the `publicsuffixlist` wheel: never a network
fetch; `make psl-age` tells its date).

>>> normalize_image_url("https://i.pinimg.com/originals/7e/x.png").domain
'pinterest.com'
>>> info = normalize_image_url("https://i0.wp.com/cdn-prod.medicalnewstoday.com/a.jpg?w=1")
>>> info.image_host, info.domain
('i0.wp.com', 'medicalnewstoday.com')
>>> normalize_image_url("//Assets.NHS.uk./x.jpg", base="https://www.nhs.uk/p").image_url
'https://assets.nhs.uk/x.jpg'
>>> registrable_domain("img.b.example.example")  # unknown TLD: the PSL's default `*` rule
'example.example'
>>> normalize_image_url("https://.example.com/x.jpg").bad_url  # empty label
True
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import idna
import publicsuffixlist

from pipeline.normalize.data import load_table

__all__ = [
    "PLATFORMS",
    "DomainInfo",
    "host_of",
    "normalize_image_url",
    "platform_for",
    "public_registrable",
    "registrable_domain",
    "suffix_list_age",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters no valid hostname contains; their presence marks a URL we cannot trust.
_BAD_HOST_CHARS = frozenset(" \t\n\r<>\"'{}|\\^`%")
# DNS bounds (RFC 1035): a name of at most 253 characters, labels of at most 63. Longer
# input is not a host, and bounding it keeps every per-label step cheap.
MAX_HOST_CHARS = 253
MAX_LABEL_CHARS = 63


@dataclass(frozen=True, slots=True)
class DomainInfo:
    image_url: str
    image_host: str | None
    domain: str | None
    site_hint: str | None
    bad_url: bool


PLATFORMS: dict[str, dict[str, str]] = load_table("platforms.json")
_PROXIES: list[dict[str, Any]] = load_table("proxies.json")["proxies"]
_PROXY_BY_HOST = {h: p for p in _PROXIES for h in p.get("hosts", ())}
_PROXY_BY_PATH = [p for p in _PROXIES if "path_prefix" in p]

# The list shipped in the wheel (publicsuffixlist reads only its own file unless given
# another; its `update` module is never imported). ICANN section only: `github.io` is a
# registrable domain here, not a suffix. Unknown TLDs follow the PSL's default `*` rule.
_PSL = publicsuffixlist.PublicSuffixList(only_icann=True, accept_unknown=True)


# Letters, digits, `-` and `_` (not allowed by RFC 952 but served by real CDNs) in
# labels of 1-63 characters: anything else (`![`, `a..b`) cannot be looked up.
_DNS_NAME = re.compile(rf"[a-z0-9_-]{{1,{MAX_LABEL_CHARS}}}(?:\.[a-z0-9_-]{{1,{MAX_LABEL_CHARS}}})*")


def _valid_dns_name(host: str) -> bool:
    return len(host) <= MAX_HOST_CHARS and _DNS_NAME.fullmatch(host) is not None


@lru_cache(maxsize=65536)
def _idna_host(host: str) -> str | None:
    host = host.strip().lower()
    # One trailing dot is the root (`example.com.`); more, a leading dot or `..` leave
    # an empty label, which no host has.
    host = host.removesuffix(".")
    # Checked before the IDNA encoder, which costs far more than the bound on long input.
    if not host or len(host) > 4 * MAX_HOST_CHARS or any(c in _BAD_HOST_CHARS for c in host):
        return None
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
    return host if _valid_dns_name(host) else None


def _split_host(netloc: str) -> tuple[str, str]:
    """netloc → (host, port) with userinfo dropped; IPv6 brackets kept."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        return hostport[: end + 1], hostport[end + 2 :] if end >= 0 else ""
    host, _, port = hostport.partition(":")
    return host, port


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
# Authorities longer than this are worked out each time instead of cached: hostile input
# must not fill the cache with megabytes of keys.
_CACHED_AUTHORITY_CHARS = 4 * MAX_HOST_CHARS + 16


def _authority(scheme: str, netloc: str) -> tuple[str, str] | None:
    """(``scheme://netloc`` as written back, ASCII host) for a URL's scheme and
    authority, or None when they make no usable http(s) URL."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    host, port = _split_host(netloc)
    ascii_host = _idna_host(host)
    if ascii_host is None:
        return None
    if port:
        if not port.isdigit():
            return None
        if int(port) == _DEFAULT_PORTS[scheme]:
            port = ""
    netloc = f"{ascii_host}:{port}" if port else ascii_host
    return f"{scheme}://{netloc}", ascii_host


# A page's images come from a few hosts: each scheme and authority is worked out once.
_cached_authority = lru_cache(maxsize=65536)(_authority)


def clean_url(raw: str, base: str | None = None) -> tuple[str, str | None]:
    """Return (url, host). host is None when the URL has no usable http(s) host.

    Only the scheme and the authority are rewritten; path, query and fragment stay
    exactly as written (CDN parameters matter, and `?`/`;` must survive a second pass)."""
    url = raw.strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1].strip()
    if "\t" in url or "\r" in url or "\n" in url:
        url = url.replace("\t", "").replace("\r", "").replace("\n", "")
    if not url:
        return raw, None
    # An absolute URL (the usual image) matches _AUTHORITY, and then _SCHEME too: only
    # one of the two patterns is tried for it.
    m = _AUTHORITY.match(url)
    if m is None and base and not _SCHEME.match(url):
        try:
            url = urljoin(base, url).strip()
        except ValueError:
            return url, None
        m = _AUTHORITY.match(url)
    if m is None:
        return url, None
    scheme, netloc = m.groups()
    facts = _cached_authority(scheme, netloc) if len(netloc) <= _CACHED_AUTHORITY_CHARS else _authority(scheme, netloc)
    if facts is None:
        return url, None
    return f"{facts[0]}{url[m.end() :]}", facts[1]


@lru_cache(maxsize=65536)
def public_registrable(host: str) -> str | None:
    """The Public Suffix List's answer for an ASCII host: its registrable domain (one
    label more than its public suffix, ICANN rules, default rule `*`), or None when the
    host is itself a public suffix or not a DNS name (empty label, too long).

    >>> public_registrable("www.city.kobe.jp"), public_registrable("c.kobe.jp")
    ('city.kobe.jp', None)
    """
    host = host.lower()
    if not _valid_dns_name(host):
        return None
    return _PSL.privatesuffix(host)


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str:
    """Registrable domain of an ASCII host (ICANN suffixes); IPs, single labels and
    hosts that are themselves a public suffix are their own."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    return public_registrable(host) or host


@lru_cache(maxsize=65536)
def platform_for(host: str) -> dict[str, str] | None:
    """The platform entry whose host suffix matches (longest suffix wins)."""
    if len(host) > MAX_HOST_CHARS:
        return None
    start = 0
    while True:
        entry = PLATFORMS.get(host[start:])
        if entry is not None:
            return entry
        dot = host.find(".", start)
        if dot < 0:
            return None
        start = dot + 1


def suffix_list_age(today: dt.date | None = None) -> tuple[str, int]:
    """(VERSION line of the bundled Public Suffix List, its age in days)."""
    with open(publicsuffixlist.PSLFILE, encoding="utf-8") as f:
        head = [next(f, "") for _ in range(20)]
    version = next((line.split(":", 1)[1].strip() for line in head if line.startswith("// VERSION:")), "unknown")
    try:
        released = dt.date.fromisoformat(version[:10])
    except ValueError:
        return version, -1
    return version, ((today or dt.datetime.now(dt.UTC).date()) - released).days


def _origin_url(url: str, host: str) -> str | None:
    """The URL an image proxy is serving, or None if `url` is not a known proxy URL."""
    proxy = _PROXY_BY_HOST.get(host)
    # A path starts with a prefix only if the URL holds it: most URLs are not split at all.
    if proxy is None and not any(p["path_prefix"] in url for p in _PROXY_BY_PATH):
        return None
    parts = urlsplit(url)
    if proxy is None:
        proxy = next((p for p in _PROXY_BY_PATH if parts.path.startswith(p["path_prefix"])), None)
    if proxy is None:
        return None
    kind = proxy["kind"]
    if kind == "path_host":
        origin = parts.path.lstrip("/")
        return f"https://{origin}" if origin else None
    if kind == "query":
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == proxy["param"] and value:
                value = value.strip()
                if value.startswith("/"):
                    return urljoin(url, value)
                return value if "://" in value else f"https://{value}"
        return None
    if kind == "cloudinary_fetch":
        path = unquote(parts.path)
        marker = "/image/fetch/"
        at = path.find(marker)
        if at < 0:
            return None
        rest = path[at + len(marker) :]
        start = max(rest.find("https://"), -1)
        if start < 0:
            start = rest.find("http://")
        return rest[start:] if start >= 0 else None
    return None


@lru_cache(maxsize=65536)
def _host_facts(host: str) -> tuple[str, str | None]:
    platform = platform_for(host)
    if platform is not None:
        return platform["domain"], platform.get("name")
    return registrable_domain(host), None


def host_of(url: str) -> str | None:
    """ASCII host of a URL, or None."""
    return clean_url(url)[1]


def normalize_image_url(raw: str, base: str | None = None) -> DomainInfo:
    """Clean one image URL and derive ``image_host``, ``domain`` and a ``site`` hint.

    Never raises: any string comes back as a DomainInfo, with nulls for what cannot be
    derived and ``bad_url`` set when the URL is not a usable http(s) URL."""
    try:
        url, host = clean_url(raw, base)
    except Exception:  # noqa: BLE001 - a URL string must never stop a crawl
        return DomainInfo(raw, None, None, None, True)
    if host is None:
        # A relative image on a local page is a local file, not a bad URL.
        local = url.startswith("file:")
        return DomainInfo(url if local else raw, None, None, None, not local)
    current, origin_host = url, host
    for _ in range(3):  # proxies may wrap proxies; a bound keeps it finite
        try:
            origin = _origin_url(current, origin_host)
            origin_url, unwrapped = clean_url(origin) if origin is not None else (None, None)
        except ValueError:  # urllib refuses some strings (`[` without `]`): no origin
            break
        if unwrapped is None or unwrapped == origin_host:
            break
        current, origin_host = origin_url, unwrapped
    domain, site_hint = _host_facts(origin_host)
    return DomainInfo(url, host.strip("[]"), domain, site_hint, False)


if __name__ == "__main__":  # `make psl-age`
    version, days = suffix_list_age()
    print(f"Public Suffix List {version} (publicsuffixlist {publicsuffixlist.__version__}): {days} days old")
