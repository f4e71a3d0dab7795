"""Image URL → clean URL, serving host and registrable origin domain. Pure functions.

The rules, in order: URL hygiene (resolve, trim, lowercase scheme/host, drop default
port/userinfo/trailing dot, IDNA), unwrap known image proxies to the origin they serve,
map platform CDNs to their platform, then the registrable domain from the Public Suffix
List (ICANN section, tldextract's bundled snapshot: never a network fetch).

>>> normalize_image_url("https://i.pinimg.com/originals/7e/x.png").domain
'pinterest.com'
>>> info = normalize_image_url("https://i0.wp.com/cdn-prod.medicalnewstoday.com/a.jpg?w=1")
>>> info.image_host, info.domain
('i0.wp.com', 'medicalnewstoday.com')
>>> normalize_image_url("//Assets.NHS.uk./x.jpg", base="https://www.nhs.uk/p").image_url
'https://assets.nhs.uk/x.jpg'
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import idna
import tldextract

from pipeline.normalize.data import load_table

__all__ = ["PLATFORMS", "DomainInfo", "host_of", "normalize_image_url", "platform_for", "registrable_domain"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters no valid hostname contains; their presence marks a URL we cannot trust.
_BAD_HOST_CHARS = frozenset(" \t\n\r<>\"'{}|\\^`%")


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

# The bundled snapshot only: no suffix-list download, no cache directory written.
_EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), include_psl_private_domains=False)


@lru_cache(maxsize=65536)
def _idna_host(host: str) -> str | None:
    host = host.strip().rstrip(".").lower()
    if not host or any(c in _BAD_HOST_CHARS for c in host):
        return None
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError:
            return None


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


def clean_url(raw: str, base: str | None = None) -> tuple[str, str | None]:
    """Return (url, host). host is None when the URL has no usable http(s) host.

    Only the scheme and the authority are rewritten; path, query and fragment stay
    exactly as written (CDN parameters matter, and `?`/`;` must survive a second pass)."""
    url = raw.strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1].strip()
    if any(c in url for c in "\t\r\n"):
        url = url.replace("\t", "").replace("\r", "").replace("\n", "")
    if not url:
        return raw, None
    if base and not _SCHEME.match(url):
        try:
            url = urljoin(base, url).strip()
        except ValueError:
            return url, None
    m = _AUTHORITY.match(url)
    if m is None:
        return url, None
    scheme = m.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        return url, None
    host, port = _split_host(m.group(2))
    ascii_host = _idna_host(host)
    if ascii_host is None:
        return url, None
    if port:
        if not port.isdigit():
            return url, None
        if int(port) == _DEFAULT_PORTS[scheme]:
            port = ""
    netloc = f"{ascii_host}:{port}" if port else ascii_host
    return f"{scheme}://{netloc}{url[m.end() :]}", ascii_host


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str:
    """Registrable domain of an ASCII host (ICANN suffixes); IPs and single labels are their own."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    result = _EXTRACT(host)
    return result.top_domain_under_public_suffix or host


@lru_cache(maxsize=65536)
def platform_for(host: str) -> dict[str, str] | None:
    """The platform entry whose host suffix matches (longest suffix wins)."""
    labels = host.split(".")
    for i in range(len(labels)):
        entry = PLATFORMS.get(".".join(labels[i:]))
        if entry is not None:
            return entry
    return None


def _origin_url(url: str, host: str) -> str | None:
    """The URL an image proxy is serving, or None if `url` is not a known proxy URL."""
    parts = urlsplit(url)
    proxy = _PROXY_BY_HOST.get(host)
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
        origin = _origin_url(current, origin_host)
        if origin is None:
            break
        origin_url, unwrapped = clean_url(origin)
        if unwrapped is None or unwrapped == origin_host:
            break
        current, origin_host = origin_url, unwrapped
    domain, site_hint = _host_facts(origin_host)
    return DomainInfo(url, host.strip("[]"), domain, site_hint, False)
