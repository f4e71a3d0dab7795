"""Domain normalization: URL hygiene, proxies, platform CDNs, the Public Suffix List."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SEED, fuzz
from pipeline.normalize.domains import PLATFORMS, normalize_image_url, platform_for
from pipeline.parsing import parse_page

SEED_HOSTS = [
    ("cdn-img.health.com", "health.com"),
    ("blog.paleohacks.com", "paleohacks.com"),
    ("i.pinimg.com", "pinterest.com"),
    ("hips.hearstapps.com", "hearstapps.com"),
    ("i.ytimg.com", "youtube.com"),
    ("lookaside.fbsbx.com", "facebook.com"),
    ("res.cloudinary.com", "cloudinary.com"),
    ("backintelligence.com", "backintelligence.com"),
    ("images.indianexpress.com", "indianexpress.com"),
    ("post.greatist.com", "greatist.com"),
    ("www.wikihow.com", "wikihow.com"),
    ("static.toiimg.com", "indiatimes.com"),
    ("www.summitmedicalgroup.com", "summitmedicalgroup.com"),
    ("californiamobility.com", "californiamobility.com"),
    ("stretch22.com", "stretch22.com"),
    ("post.healthline.com", "healthline.com"),
    ("i0.wp.com", "publicreleases.com"),
    ("assets.nhs.uk", "assets.nhs.uk"),
    ("back-in-balance.weebly.com", "weebly.com"),
    ("alliancewellness.ca", "alliancewellness.ca"),
    ("goodbackguide.files.wordpress.com", "wordpress.com"),
    ("www.helpguide.org", "helpguide.org"),
    ("assets.bupa.co.uk", "bupa.co.uk"),
    ("www.stretching-exercises-guide.com", "stretching-exercises-guide.com"),
    ("redefiningstrength.com", "redefiningstrength.com"),
    ("www.silversneakers.com", "silversneakers.com"),
    ("imagesvc.meredithcorp.io", "onecms.io"),
    ("www.franklinma.gov", "franklinma.gov"),
    ("qph.fs.quoracdn.net", "quora.com"),
    ("static.onecms.io", "onecms.io"),
    ("live24x7.news", "live24x7.news"),
    ("www.verywellfit.com", "verywellfit.com"),
    ("www.workingmother.com", "workingmother.com"),
    ("pranayoga.co.in", "pranayoga.co.in"),
    ("cdn2.coachmag.co.uk", "coachmag.co.uk"),
    ("www.thehealthsciencejournal.com", "thehealthsciencejournal.com"),
    ("www.bodybalancechiropractic.com", "bodybalancechiropractic.com"),
    ("blog.mapmyrun.com", "mapmyrun.com"),
    ("cdn.prod.openfit.com", "openfit.com"),
    ("img.yumpu.com", "yumpu.com"),
    ("eldergym.com", "eldergym.com"),
    ("enabled.in", "enabled.in"),
    ("image.boxrox.com", "boxrox.com"),
    ("images.saymedia-content.com", "saymedia-content.com"),
    ("thefitnesstribe.com", "thefitnesstribe.com"),
    ("www.theatreartlife.com", "theatreartlife.com"),
    ("test.jefit.com", "jefit.com"),
    ("www.snacknation.com", "snacknation.com"),
]


def test_every_seed_host_has_its_expected_domain():
    page = parse_page("file:///seed.md", SEED.read_bytes())
    got: dict[str, str | None] = {}
    for image in page.images:
        info = normalize_image_url(image["image_url"], page.url)
        assert not info.bad_url
        assert info.image_url == image["image_url"]  # seed URLs are already clean
        got.setdefault(info.image_host, info.domain)
    assert len(got) == 48
    assert got == dict(SEED_HOSTS)


CASES = [
    # URL hygiene
    ("  <https://Example.COM/a.jpg>  ", None, "https://example.com/a.jpg", "example.com", "example.com"),
    (
        "HTTPS://WWW.Example.com:443/A.JPG?X=Y",
        None,
        "https://www.example.com/A.JPG?X=Y",
        "www.example.com",
        "example.com",
    ),
    ("http://example.com:80/a", None, "http://example.com/a", "example.com", "example.com"),
    ("http://example.com:8080/a", None, "http://example.com:8080/a", "example.com", "example.com"),
    ("https://user:pass@example.com/a", None, "https://example.com/a", "example.com", "example.com"),
    ("https://example.com./a", None, "https://example.com/a", "example.com", "example.com"),
    ("https://bücher.de/a.jpg", None, "https://xn--bcher-kva.de/a.jpg", "xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("https://ÉCOLE.fr/x", None, "https://xn--cole-9oa.fr/x", "xn--cole-9oa.fr", "xn--cole-9oa.fr"),
    (
        "img/a.jpg",
        "https://blog.example.org/post/",
        "https://blog.example.org/post/img/a.jpg",
        "blog.example.org",
        "example.org",
    ),
    ("/a.jpg", "https://blog.example.org/post/", "https://blog.example.org/a.jpg", "blog.example.org", "example.org"),
    (
        "//cdn.example.net/a.jpg",
        "https://example.org/",
        "https://cdn.example.net/a.jpg",
        "cdn.example.net",
        "example.net",
    ),
    ("https://x.test/a%20b.jpg?w=1&h=2", None, "https://x.test/a%20b.jpg?w=1&h=2", "x.test", "x.test"),
    (
        "https://cdn.example.com/i.jpg?q=(1)",
        None,
        "https://cdn.example.com/i.jpg?q=(1)",
        "cdn.example.com",
        "example.com",
    ),
    # Public Suffix List, ICANN section
    ("https://cdn2.coachmag.co.uk/x.jpg", None, None, "cdn2.coachmag.co.uk", "coachmag.co.uk"),
    ("https://assets.nhs.uk/x.jpg", None, None, "assets.nhs.uk", "assets.nhs.uk"),
    ("https://pranayoga.co.in/x.jpg", None, None, "pranayoga.co.in", "pranayoga.co.in"),
    ("https://a.b.example.com.au/x.jpg", None, None, "a.b.example.com.au", "example.com.au"),
    ("https://foo.github.io/x.jpg", None, None, "foo.github.io", "github.io"),  # private section ignored
    ("https://s3.amazonaws.com/bucket/x.jpg", None, None, "s3.amazonaws.com", "amazonaws.com"),
    ("https://d1.cloudfront.net/x.jpg", None, None, "d1.cloudfront.net", "cloudfront.net"),
    ("https://x.akamaized.net/x.jpg", None, None, "x.akamaized.net", "akamaized.net"),
    ("https://hips.hearstapps.com/x.jpg", None, None, "hips.hearstapps.com", "hearstapps.com"),
    ("https://res.cloudinary.com/demo/image/upload/w_300/x.jpg", None, None, "res.cloudinary.com", "cloudinary.com"),
    # IPs and localhost
    ("http://127.0.0.1:8000/x.jpg", None, None, "127.0.0.1", "127.0.0.1"),
    ("http://[2001:DB8::1]/x.jpg", None, "http://[2001:db8::1]/x.jpg", "2001:db8::1", "2001:db8::1"),
    ("http://localhost/x.jpg", None, None, "localhost", "localhost"),
    # proxies
    ("https://i0.wp.com/cdn-prod.medicalnewstoday.com/a.jpg?w=1", None, None, "i0.wp.com", "medicalnewstoday.com"),
    ("https://i2.wp.com/www.example.co.uk/a.jpg", None, None, "i2.wp.com", "example.co.uk"),
    ("https://i3.wp.com/i.pinimg.com/a.jpg", None, None, "i3.wp.com", "pinterest.com"),
    (
        "https://imagesvc.meredithcorp.io/v3/mm/image?url=https%3A%2F%2Fstatic.onecms.io%2Fx.jpg&w=400",
        None,
        None,
        "imagesvc.meredithcorp.io",
        "onecms.io",
    ),
    (
        "https://images.weserv.nl/?url=www.verywellfit.com/x.jpg&w=600",
        None,
        None,
        "images.weserv.nl",
        "verywellfit.com",
    ),
    ("https://wsrv.nl/?url=https://cdn.shopify.com/s/x.jpg", None, None, "wsrv.nl", "shopify.com"),
    ("/_next/image?url=%2Fimages%2Fa.png&w=640", "https://www.site.dev/p", None, "www.site.dev", "site.dev"),
    (
        "https://shop.example.com/_next/image?url=https%3A%2F%2Fimages.ctfassets.net%2Fx.png&w=64",
        None,
        None,
        "shop.example.com",
        "ctfassets.net",
    ),
    (
        "https://res.cloudinary.com/demo/image/fetch/w_300,f_auto/https://upload.wikimedia.org/a.jpg",
        None,
        None,
        "res.cloudinary.com",
        "wikimedia.org",
    ),
    # platform CDNs
    ("https://i.pinimg.com/736x/a.jpg", None, None, "i.pinimg.com", "pinterest.com"),
    ("https://s-media-cache-ak0.pinimg.com/a.jpg", None, None, "s-media-cache-ak0.pinimg.com", "pinterest.com"),
    ("https://yt3.ggpht.com/a.jpg", None, None, "yt3.ggpht.com", "youtube.com"),
    ("https://scontent-lax3-1.xx.fbcdn.net/a.jpg", None, None, "scontent-lax3-1.xx.fbcdn.net", "facebook.com"),
    ("https://pbs.twimg.com/media/a.jpg", None, None, "pbs.twimg.com", "x.com"),
    ("https://i.redd.it/a.jpg", None, None, "i.redd.it", "reddit.com"),
    ("https://m.media-amazon.com/images/a.jpg", None, None, "m.media-amazon.com", "amazon.com"),
    ("https://1.bp.blogspot.com/a.jpg", None, None, "1.bp.blogspot.com", "blogger.com"),
    ("https://static.wixstatic.com/media/a.jpg", None, None, "static.wixstatic.com", "wix.com"),
]


@pytest.mark.parametrize("raw, base, url, host, domain", CASES)
def test_rules(raw, base, url, host, domain):
    info = normalize_image_url(raw, base)
    assert (info.image_host, info.domain, info.bad_url) == (host, domain, False)
    if url is not None:
        assert info.image_url == url


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "http://a b.com/x.jpg",
        "https://",
        "http://[::1/x",
        "mailto:x@y.z",
        "http://exa<mple.com/x",
    ],
)
def test_bad_urls_keep_the_url_and_null_the_rest(raw):
    info = normalize_image_url(raw, "https://example.com/page")
    assert info.bad_url
    assert info.image_host is None and info.domain is None
    assert info.image_url == raw


def test_relative_image_on_a_local_page_is_not_bad():
    info = normalize_image_url("img/a.jpg", "file:///site/post.md")
    assert (info.image_url, info.image_host, info.bad_url) == ("file:///site/img/a.jpg", None, False)


@pytest.mark.parametrize("suffix, entry", sorted(PLATFORMS.items()))
def test_every_platform_map_entry_resolves_as_stated(suffix, entry):
    assert platform_for(suffix) == entry
    assert platform_for(f"cdn1.{suffix}") == entry
    info = normalize_image_url(f"https://img.{suffix}/a.jpg")
    assert (info.domain, info.site_hint) == (entry["domain"], entry["name"])


def test_no_network_fetch_for_the_suffix_list(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert normalize_image_url("https://a.brand-new-host.co.uk/x").domain == "brand-new-host.co.uk"


@settings(max_examples=fuzz(500), deadline=None)
@given(st.text(max_size=200), st.sampled_from([None, "https://example.com/p/", "file:///x/y.md"]))
def test_never_raises_and_is_idempotent(raw, base):
    info = normalize_image_url(raw, base)
    again = normalize_image_url(info.image_url, base)
    assert again == info or (info.bad_url and again.bad_url)


@settings(max_examples=fuzz(300), deadline=None)
@given(st.from_regex(r"https?://[a-zA-Z0-9.\-]{1,30}(:[0-9]{1,5})?/[ -~]{0,40}", fullmatch=True))
def test_url_like_strings_are_idempotent(raw):
    info = normalize_image_url(raw)
    assert normalize_image_url(info.image_url) == info
