"""The local search page: API and template through Starlette's test client, then a real
headless Chromium (selenium) over the bundled sample pages and a hostile page."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from conftest import FIXTURES, HIT_KEYS, ROOT, crawl_in_process
from helpers import served_app
from index.cli import run_search
from index.serve.web import CSP, create_app, marked, safe_href

EXAMPLES = ROOT / "examples" / "pages"
HOSTILE = FIXTURES / "hostile"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("web") / "index"
    assert crawl_in_process(index, str(EXAMPLES), str(HOSTILE)).returncode == 0
    return index


@pytest.fixture(scope="module")
def client(index) -> TestClient:
    return TestClient(create_app(index), base_url="http://127.0.0.1:8000")


def cli_json(index: Path, *query: str, **options) -> list[dict]:
    opts = {"limit": 10, "page": 1, "json": True, "sort": "relevance", "facet": "", "collapse": True}
    opts |= {"domain": None, "site": None, "author": None, "board": None, "since": None, "until": None}
    out = io.StringIO()
    run_search(Namespace(query=list(query), **(opts | options)), str(index), out=out, err=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- API -------------------------------------------------------------------------------


def test_api_returns_the_cli_json_objects_plus_facets(client, index):
    body = client.get("/api/search", params={"q": "stretch", "limit": 5, "facet": "domain,site"}).json()
    cli = cli_json(index, "stretch", limit=5, facet="domain,site")
    hits, summary = cli[:-1], cli[-1]
    drop_score = [{k: v for k, v in h.items() if k != "score"} for h in hits]
    assert [{k: v for k, v in h.items() if k != "score"} for h in body["hits"]] == drop_score
    assert all(set(h) == HIT_KEYS for h in body["hits"])
    assert body["facets"] == summary["facets"] and set(body["facets"]) == {"domain", "site"}
    assert body["total"] == summary["total"] and body["total_exact"] is True
    assert body["page"] == 1 and body["limit"] == 5 and body["elapsed_ms"] >= 0


def test_api_filters_paging_and_errors(client):
    pinterest = client.get("/api/search", params={"q": "fitness", "domain": "pinterest.com", "limit": 200}).json()
    assert pinterest["hits"] and {h["domain"] for h in pinterest["hits"]} == {"pinterest.com"}
    first = client.get("/api/search", params={"q": "stretch", "limit": 2}).json()["hits"]
    second = client.get("/api/search", params={"q": "stretch", "limit": 2, "page": 2}).json()["hits"]
    assert len(first) == len(second) == 2 and not {h["image_url"] for h in first} & {h["image_url"] for h in second}
    bad = client.get("/api/search", params={"q": "title:("})
    assert bad.status_code == 400 and bad.json() == {"error": "unbalanced '()' in query"}
    assert client.get("/api/search").status_code == 400
    assert client.get("/api/search", params={"q": "x", "since": "soon"}).status_code == 400


def test_missing_index_names_the_crawl_command(tmp_path):
    client = TestClient(create_app(tmp_path / "nowhere"), base_url="http://localhost")
    api = client.get("/api/search", params={"q": "chair"})
    assert api.status_code == 503 and "scrapy crawl pages -a start=" in api.json()["hint"]
    page = client.get("/", params={"q": "chair"})
    assert page.status_code == 503 and "scrapy crawl pages -a start=" in page.text


# --- page ------------------------------------------------------------------------------


def test_page_shows_a_grid_with_highlights_facets_and_bookmarkable_links(client):
    response = client.get("/", params={"q": "chair yoga"})
    assert response.status_code == 200
    html = response.text
    assert html.count('<li class="card"') == 7
    assert 'loading="lazy" referrerpolicy="no-referrer"' in html
    assert "<mark>Chair</mark> <mark>yoga</mark> practice for the neck and upper back" in html
    assert '<p class="summary" id="summary">7 results in ' in html
    for facet in ("domain", "site", "author"):
        assert f'data-facet-group="{facet}"' in html
    assert 'data-facet-group="board"' in client.get("/", params={"q": "fitness"}).text
    # A facet link is a bookmarkable URL that adds the filter to the same query.
    assert 'href="/?q=chair+yoga&amp;domain=youtube.com"' in html
    filtered = client.get("/", params={"q": "chair yoga", "domain": "youtube.com"}).text
    assert filtered.count('<li class="card"') == filtered.count('data-domain="youtube.com"') >= 1
    # ... and clicking it again (the active filter) removes it.
    assert 'href="/?q=chair+yoga"' in filtered


def test_page_paginates_and_reports_errors_in_place(client):
    html = client.get("/", params={"q": "stretch", "limit": 3}).text
    assert html.count('<li class="card"') == 3 and 'rel="next" href="/?q=stretch&amp;limit=3&amp;page=2"' in html
    page2 = client.get("/", params={"q": "stretch", "limit": 3, "page": 2}).text
    assert 'rel="prev"' in page2 and "page 2 of" in page2
    bad = client.get("/", params={"q": "date:[x to"})
    assert bad.status_code == 400 and 'class="error"' in bad.text
    assert client.get("/").status_code == 200  # the empty search box


def test_security_headers_on_every_response(client):
    for path in ("/", "/?q=chair", "/api/search?q=chair"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in CSP and "img-src *" in CSP and "unsafe-inline" not in CSP
    assert client.get("/static/app.js").status_code == 200


def test_hostile_page_text_is_escaped_and_script_urls_are_not_links(client):
    html = client.get("/", params={"q": "hostile"}).text
    assert html.count('<li class="card"') == 3
    assert "&lt;script&gt;window.pwned=4&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=window.pwned=6&gt;" in html
    assert 'alt="x&#34; onerror=&#34;window.pwned=5"' in html
    assert "<script>window" not in html and "<img src=x" not in html and "javascript:" not in html


def test_marked_and_safe_href_units():
    assert marked("a <b>\ue000c\ue001") == "a &lt;b&gt;<mark>c</mark>"
    assert safe_href("https://x.org/a") == "https://x.org/a"
    assert safe_href("file:///tmp/a.md") == "file:///tmp/a.md"
    for bad in ("javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x", "vbscript:x", None, ""):
        assert safe_href(bad) is None


def test_new_commits_show_up_without_a_restart(tmp_path):
    index = tmp_path / "index"
    folder = tmp_path / "pages"
    folder.mkdir()
    shutil.copy(EXAMPLES / "chair-exercises-upper-back.md", folder)
    assert crawl_in_process(index, str(folder)).returncode == 0
    client = TestClient(create_app(index), base_url="http://localhost")
    assert client.get("/api/search", params={"q": "hostile"}).json()["hits"] == []
    shutil.copy(HOSTILE / "hostile.md", folder)
    assert crawl_in_process(index, str(folder)).returncode == 0
    assert len(client.get("/api/search", params={"q": "hostile"}).json()["hits"]) == 3


# --- a real browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(index) -> Iterator[str]:
    with served_app(create_app(index)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (os.path.exists(chromium) and os.path.exists(driver_path)):
        missing = "Debian chromium + chromium-driver not installed (.ci/run installs them)"
        if os.environ.get("REQUIRE_SYSTEM_PACKAGES"):
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # The machine's network is closed: without these, Chromium keeps calling home.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        # Every other host fails to resolve at once, as on a closed network whose resolver
        # answers (Chromium's own lookups otherwise take seconds to give up per image).
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_browser_search_grid_facet_click_and_hostile_captions(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(server + "/")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("chair yoga", Keys.ENTER)
    wait.until(EC.presence_of_element_located((By.ID, "grid")))
    assert parse_qs(urlsplit(browser.current_url).query)["q"] == ["chair yoga"]
    cards = browser.find_elements(By.CSS_SELECTOR, "#grid .card")
    assert len(cards) == 7
    assert browser.find_elements(By.CSS_SELECTOR, "#grid mark")
    assert "7 results in" in browser.find_element(By.ID, "summary").text
    # The images point at hosts this closed network cannot reach: every one must fall
    # back to the placeholder naming its domain, not the broken-image icon.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid .frame.broken")) == 7)
    placeholder = browser.find_element(By.CSS_SELECTOR, "#grid .frame.broken .placeholder")
    assert placeholder.is_displayed() and placeholder.text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page.png"))

    facet = browser.find_element(By.CSS_SELECTOR, 'a.facet[data-facet="domain"][data-value="youtube.com"]')
    count = int(facet.find_element(By.CSS_SELECTOR, ".count").text)
    facet.click()
    wait.until(EC.url_contains("domain=youtube.com"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#grid .card")
    assert len(cards) == count and {c.get_attribute("data-domain") for c in cards} == {"youtube.com"}
    browser.find_element(By.CSS_SELECTOR, 'a.facet.on[data-facet="domain"]').click()
    wait.until(lambda d: "domain=" not in d.current_url)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#grid .card")) == 7

    browser.get(server + "/?q=hostile")
    wait.until(EC.presence_of_element_located((By.ID, "grid")))
    headlines = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#grid .headline")]
    assert "Stretch <script>window.pwned=4</script> hostile" in headlines
    assert "Stretch <img src=x onerror=window.pwned=6> hostile" in headlines
    time.sleep(0.5)  # give any injected handler the chance it must not have
    assert browser.execute_script("return window.pwned === undefined")
    browser.save_screenshot(str(ARTIFACTS / "hostile-page.png"))


# --- Host header (DNS rebinding) -----------------------------------------------------------


def test_only_the_bound_host_names_are_served(index):
    app = create_app(index)
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1234", "[::1]:8000"):
        assert TestClient(app, base_url=f"http://{host}").get("/api/search", params={"q": "chair"}).status_code == 200
    evil = TestClient(app, base_url="http://attacker.example")
    for path in ("/", "/api/search?q=chair", "/static/app.js", "/api/search/"):
        response = evil.get(path, follow_redirects=False)
        assert response.status_code == 400, path
        assert response.headers["content-security-policy"] == CSP
        assert "attacker.example" not in response.headers.get("location", "")
    named = TestClient(create_app(index, hosts=["search.internal"]), base_url="http://search.internal")
    assert named.get("/api/search", params={"q": "chair"}).status_code == 200


def test_a_trailing_slash_is_not_redirected_to_the_callers_host(client):
    response = client.get("/api/search/?q=chair", follow_redirects=False, headers={"host": "localhost"})
    assert response.status_code == 404 and "location" not in response.headers


def test_serve_allows_loopback_names_and_the_bound_and_added_names():
    from index.serve.web import allowed_hosts

    assert {"127.0.0.1", "localhost", "[::1]"} <= set(allowed_hosts("127.0.0.1"))
    assert "[2001:db8::1]" in allowed_hosts("2001:db8::1")
    assert "attacker.example" not in allowed_hosts("127.0.0.1")
    assert set(allowed_hosts("192.0.2.7", ["pages.lan"])) == {"192.0.2.7", "pages.lan"}


def test_browser_answers_as_you_type_and_follows_the_url(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(server + "/")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")  # `/` focuses the box
    box = browser.switch_to.active_element
    assert box.get_attribute("name") == "q"
    for letter in "wheelchiar":  # misspelled, letter by letter, no Enter
        box.send_keys(letter)
        time.sleep(0.03)
    wait.until(lambda d: parse_qs(urlsplit(d.current_url).query).get("q") == ["wheelchiar"])
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .card"))
    headlines = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#grid .headline")]
    assert headlines and all("Wheelchair" in h for h in headlines), headlines
    assert "wheelchair" in browser.find_element(By.ID, "corrections").text
    # The facets came with the results, and no older answer (`w`, `wh`, ...) is left.
    assert browser.find_elements(By.CSS_SELECTOR, '#facets a.facet[data-facet="domain"]')
    wait.until(lambda d: d.find_element(By.ID, "summary").text.endswith(" ms"))
    # A word start, then back to the misspelling with the back button.
    box.clear()
    time.sleep(2)  # a pause: the next search is a new history entry
    box.send_keys("thorac")
    wait.until(lambda d: parse_qs(urlsplit(d.current_url).query).get("q") == ["thorac"])
    wait.until(lambda d: any("Thoracic" in e.text for e in d.find_elements(By.CSS_SELECTOR, "#grid .headline")))
    browser.back()
    wait.until(lambda d: parse_qs(urlsplit(d.current_url).query).get("q") == ["wheelchiar"])
    wait.until(lambda d: all("Wheelchair" in e.text for e in d.find_elements(By.CSS_SELECTOR, "#grid .headline")))
    assert browser.execute_script("return window.pwned === undefined")


def test_browser_start_page_shows_the_index_with_links(browser, server, index):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from index.serve.overview import overview

    known = overview(index)
    wait = WebDriverWait(browser, 15)
    browser.get(server + "/")
    totals = wait.until(EC.presence_of_element_located((By.ID, "totals")))
    count = {e.get_attribute("data-count"): e.text for e in totals.find_elements(By.CSS_SELECTOR, "b[data-count]")}
    assert count["images"] == f"{known.images:,}" and count["pages"] == f"{known.pages:,}"
    assert count["domains"] == f"{known.domains:,}" and known.pages > 1
    assert "Index updated" in browser.find_element(By.ID, "updated").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#newest .card")) == len(known.newest) > 0
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#newest .frame.broken")) == len(known.newest))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "start-page.png"))
    # A top domain is a link to its search: every result is of that domain.
    domain, images = known.top["domain"][0]
    browser.find_element(By.CSS_SELECTOR, f'#tops a[data-top="domain"][data-value="{domain}"]').click()
    wait.until(lambda d: parse_qs(urlsplit(d.current_url).query).get("q") == [f'domain:"{domain}"'])
    cards = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .card"))
    assert 0 < len(cards) <= images and {c.get_attribute("data-domain") for c in cards} == {domain}
    # Emptying the box brings the start page back, as you type.
    box = browser.find_element(By.NAME, "q")
    box.clear()
    box.send_keys(" ")
    wait.until(lambda d: d.find_elements(By.ID, "totals"))


def test_browser_shows_the_error_instead_of_the_previous_results(browser, server):
    """Issue 30 #6: a query the server cannot answer (nested 330 deep: once a plain-text
    500) replaced nothing, and the previous results stayed under the new words."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(server + "/?q=chair")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .card"))
    box = browser.find_element(By.NAME, "q")
    deep = "-(" * 330 + "chair" + ")" * 330  # 995 characters: under the length cap
    browser.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", box, deep
    )
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#main .error"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#grid .card")
    assert "nested" in browser.find_element(By.CSS_SELECTOR, "#main .error").text
