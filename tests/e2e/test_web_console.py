"""End to end: the review loop in a real browser against a real daemon.

``afterimage run`` (a real process, tweepy against the fake X of ``bot.demo.fakes``) finds a post with a
cropped frame of a known trailer and opens a case; ``afterimage web`` (a real process, waitress) serves the
console on the same store; headless Chromium (Debian's chromium + chromedriver, driven by Selenium) logs in,
reviews the case in the queue and dismisses it; the ministry posts the same picture again and no alert is
raised for the trailer. Also: pages need a login, a viewer cannot decide, a cross-site form post is refused,
and the JSON API contract holds against the running console. Screenshots of the queue and a case page (desktop
1280 px and phone 400 px wide) are saved in ``$AFTERIMAGE_SCREENSHOT_DIR`` (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from bot.cli import main
from bot.demo.fakes import FakePlatforms, FakeWorld
from bot.demo.scene import ministry_evidence, write_trailer
from bot.store import open_store
from tests.e2e.test_daemon import ROOT, TOKEN, alerts_of, post, start_daemon, stop, wait_for, write_config
from bot.store.review import CaseQuery

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LABEL = "Gunship sim trailer (2015)"
FIRST, SECOND = "1859000000000000101", "1859000000000000102"
PASSWORDS = {"ana": "ana-reviews-2026", "vic": "vic-only-reads-2026"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Console:
    world: FakeWorld
    config: Path
    store_url: str
    base: str
    tokens: dict[str, str]
    evidence: bytes
    shots: Path

    def store(self):
        return open_store(self.store_url)


def cli(config: Path, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, [*args, "-c", str(config)], input=stdin, env={"X_E2E_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[Console]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser tests: .ci/run installs Debian's chromium and chromium-driver")
        pytest.skip("Debian chromium and chromium-driver are needed (installed by .ci/run)")
    tmp = tmp_path_factory.mktemp("console")
    base_url = os.environ.get("AFTERIMAGE_TEST_REDIS_URL")
    store_url = f"{base_url}{'&' if '?' in base_url else '?'}prefix=web-e2e-{os.getpid()}" if base_url else f"sqlite:///{tmp / 'state.db'}"
    world = FakeWorld()
    with FakePlatforms(world) as server:
        config = write_config(tmp / "cfg.yaml", server, store_url, tmp / "data")
        # keep re-checking every few seconds after the schedule, so a deletion late in the test is seen
        config.write_text(config.read_text().replace("schedule: [2s, 4s]", "schedule: [2s, 4s]\n      then_every: 3s"))
        trailer = write_trailer(tmp / "trailer.mp4")
        cli(config, "known", "add", str(trailer), "--label", LABEL, "--source", "https://example.org/trailer")
        cli(config, "users", "add", "ana", "--role", "reviewer", "--password-stdin", stdin=PASSWORDS["ana"] + "\n")
        cli(config, "users", "add", "vic", "--role", "viewer", "--password-stdin", stdin=PASSWORDS["vic"] + "\n")
        tokens = {name: cli(config, "users", "token", name).strip() for name in PASSWORDS}
        evidence = ministry_evidence()
        post(world, FIRST, evidence)
        daemon = start_daemon(config)
        port = free_port()
        web = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "web", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
            cwd=ROOT, env={**os.environ, "X_E2E_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        base = f"http://127.0.0.1:{port}"
        shots = Path(os.environ.get("AFTERIMAGE_SCREENSHOT_DIR") or tmp / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        try:
            wait_for(lambda: _up(base), 30, "the web console")
            yield Console(world, config, store_url, base, tokens, evidence, shots)
        finally:
            stop(web)
            code, _, output = stop(daemon)
            print(output[-4000:])
            if base_url:
                from tests.redis_keys import delete_prefix

                delete_prefix(store_url)


def _up(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def browser(console) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def login(driver, console: Console, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(console.base + "/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORDS[name] + "\n")
    wait_for(lambda: "/login" not in driver.current_url, 10, "the login")


def screenshot(driver, console: Console, name: str) -> None:
    """Desktop (1280 px) and phone (400 px, mobile viewport) screenshots of the whole page."""
    import base64

    from selenium.webdriver.common.by import By

    for label, width in (("desktop", 1280), ("phone", 400)):
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(max(height, 600), 6000)})
        time.sleep(0.3)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path = console.shots / f"{name}-{label}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 10_000
        # a page's explanation is part of the page on a phone too (only keyboard hints are left out there)
        assert all(p.is_displayed() for p in driver.find_elements(By.CSS_SELECTOR, "p.intro")), f"{name}: intro hidden ({label})"
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def match_case(console: Console, post_id: str):
    with console.store() as store:
        found = [c for c in store.list_cases(CaseQuery(platform="x", post_id=post_id)) if c.kind == "match"]
    return found[0] if found else None


def test_a_page_without_login_redirects_to_the_login_form(console, browser):
    browser.delete_all_cookies()
    browser.get(console.base + "/queue")
    assert browser.current_url.startswith(console.base + "/login?next=")
    assert requests.get(console.base + "/cases", allow_redirects=False, timeout=10).status_code == 302
    assert requests.get(console.base + "/healthz", timeout=10).json() == {"status": "ok"}


def test_reviewer_dismisses_the_case_and_the_same_picture_never_alerts_again_for_that_item(console, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    wait_for(lambda: match_case(console, FIRST) is not None, 60, "the daemon's case")
    wait_for(lambda: any(LABEL in a.get("title", "") for a in alerts_of(console.world)), 30, "the match alert in the chat")
    case = match_case(console, FIRST)
    assert case.status == "open" and case.tier == "match"

    login(browser, console, "ana")
    browser.get(console.base + "/queue")
    card = browser.find_element(By.CSS_SELECTOR, f'article[data-case="{case.id}"]')
    assert "Proof #" in card.find_element(By.CSS_SELECTOR, ".post-text").text
    assert LABEL in card.text and ("pdq" in card.text or "orb" in card.text)
    wait_for(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", card.find_element(By.TAG_NAME, "img")), 20, "the comparison picture")
    screenshot(browser, console, "queue")

    browser.get(console.base + f"/cases/{case.id}")
    screenshot(browser, console, "case-open")

    # keyboard: "d" focuses the reason of the focused card's dismissal, Enter submits it
    browser.get(console.base + "/queue")
    Select(browser.find_element(By.CSS_SELECTOR, f'article[data-case="{case.id}"] select[name=scope]')).select_by_value("account")
    browser.execute_script("arguments[0].focus()", browser.find_element(By.CSS_SELECTOR, f'article[data-case="{case.id}"]'))
    browser.find_element(By.TAG_NAME, "body").send_keys("d")
    focused = browser.switch_to.active_element
    assert focused.get_attribute("name") == "note"
    focused.send_keys("only looks like the trailer <script>alert(1)</script>", Keys.ENTER)
    wait_for(lambda: "dismissed" in browser.page_source, 10, "the dismissal")
    assert browser.find_elements(By.CSS_SELECTOR, f'article[data-case="{case.id}"]') == []  # left the queue

    browser.get(console.base + f"/cases/{case.id}")
    history = browser.find_element(By.CSS_SELECTOR, ".history").text
    assert "ana dismissed (account): only looks like the trailer <script>alert(1)</script>" in history  # shown, escaped
    screenshot(browser, console, "case-dismissed")
    for name, path in (("dashboard", "/"), ("known", "/known"), ("deletions", "/deletions"), ("parked", "/parked")):
        browser.get(console.base + path)
        assert "Internal Server Error" not in browser.page_source
        screenshot(browser, console, name)
    assert browser.find_elements(By.CSS_SELECTOR, "p.intro")  # the parked page explains what it lists
    with console.store() as store:
        assert store.get_case(case.id).status == "dismissed"

    trailer_alerts = sum(LABEL in a.get("title", "") for a in alerts_of(console.world))
    post(console.world, SECOND, console.evidence, minutes_ago=1)
    wait_for(lambda: match_case(console, SECOND) is not None, 60, "the second post matched")
    with console.store() as store:
        wait_for(lambda: not store.get_post("x", SECOND).pending, 30, "the second post processed")
        assert [a for a in store.list_alerts("x", SECOND) if a.kind == "match"] == []
    silenced = match_case(console, SECOND)
    assert silenced.status == "dismissed" and silenced.history[-1].action == "suppressed"
    time.sleep(4)  # the sender runs every few seconds: nothing about the trailer may arrive
    assert sum(LABEL in a.get("title", "") for a in alerts_of(console.world)) == trailer_alerts


def test_a_viewer_cannot_decide_a_case(console, browser):
    from selenium.webdriver.common.by import By

    case = match_case(console, FIRST)
    login(browser, console, "vic")
    browser.get(console.base + f"/cases/{case.id}")
    assert browser.find_elements(By.CSS_SELECTOR, ".decide") == []  # no buttons
    # and a hand-made request with a valid session and CSRF token is refused too
    session = requests.Session()
    page = session.get(console.base + "/login", timeout=10).text
    csrf = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    session.post(console.base + "/login", data={"csrf_token": csrf, "name": "vic", "password": PASSWORDS["vic"]}, timeout=10)
    answer = session.post(console.base + f"/cases/{case.id}/reopen", data={"csrf_token": csrf}, timeout=10, allow_redirects=False)
    assert answer.status_code == 403
    with console.store() as store:
        assert store.get_case(case.id).status == "dismissed"


class _Evil(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # noqa: N802
        body = (
            f'<form id="f" method="post" action="{self.target}"><input name="back" value="case"></form>'
            '<script>document.getElementById("f").submit()</script>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_site_form_post_is_refused(console, browser):
    case = match_case(console, FIRST)
    login(browser, console, "ana")  # a logged-in reviewer visits another site that posts a form at the console
    _Evil.target = f"{console.base}/cases/{case.id}/reopen"
    evil = ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        wait_for(lambda: browser.current_url.startswith(console.base), 10, "the forged post")
        assert "CSRF" in browser.page_source
    finally:
        evil.shutdown()
    with console.store() as store:
        assert store.get_case(case.id).status == "dismissed"


def test_api_contract(console):
    api = console.base + "/api/v1"
    ana = {"Authorization": f"Bearer {console.tokens['ana']}"}
    vic = {"Authorization": f"Bearer {console.tokens['vic']}"}
    assert requests.get(api + "/cases", timeout=10).status_code == 401
    assert requests.get(api + "/cases", headers={"Authorization": "Bearer ai_wrong"}, timeout=10).status_code == 401
    assert requests.get(api + "/cases", headers={"Authorization": console.tokens["ana"]}, timeout=10).status_code == 401

    dismissed = requests.get(api + "/cases", params={"status": "dismissed", "tier": "match"}, headers=vic, timeout=10)
    assert dismissed.status_code == 200
    cases = dismissed.json()["cases"]
    first = next(c for c in cases if c["post"]["post_id"] == FIRST)
    assert set(first) >= {"id", "status", "tier", "known", "post", "media_sha256", "signal", "distance", "inliers",
                          "created_at", "history"}
    assert first["known"]["label"].startswith(LABEL) and first["known"]["source"] == "https://example.org/trailer"
    assert set(first["known"]) >= {"id", "label", "source"}
    assert set(first["post"]) >= {"platform", "account", "post_id", "url", "posted_at"}
    assert first["status"] == "dismissed" and first["history"][-1]["by"] == "ana"
    assert all(c["status"] == "dismissed" and c["tier"] == "match" for c in cases)
    assert requests.get(api + "/cases", params={"status": "closed"}, headers=vic, timeout=10).status_code == 400

    # the recycled hit of the second post is open: decide it through the API
    recycled = next(c for c in requests.get(api + "/cases", params={"status": "open"}, headers=vic, timeout=10).json()["cases"]
                    if c["post"]["post_id"] == SECOND)
    url = f"{api}/cases/{recycled['id']}"
    assert requests.post(url + "/confirm", json={"reason": "x"}, headers=vic, timeout=10).status_code == 403
    confirmed = requests.post(url + "/confirm", json={"reason": "recycled from post 101"}, headers=ana, timeout=10)
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed" and confirmed.json()["history"][-1]["note"] == "recycled from post 101"
    assert requests.post(url + "/dismiss", json={"reason": "no"}, headers=ana, timeout=10).status_code == 409
    assert requests.post(url + "/reopen", headers=ana, timeout=10).json()["status"] == "open"
    bad_scope = requests.post(url + "/dismiss", json={"reason": "no", "scope": "planet"}, headers=ana, timeout=10)
    assert bad_scope.status_code == 400 and "scope" in bad_scope.json()["error"]
    done = requests.post(url + "/dismiss", json={"reason": "same ministry, same day", "scope": "global"}, headers=ana, timeout=10)
    assert done.json()["status"] == "dismissed" and done.json()["scope"] == "global"
    assert requests.post(api + "/cases/nope/confirm", json={}, headers=ana, timeout=10).status_code == 404

    # deletions: the first post is deleted on X; the daemon confirms it; the API serves the export's rows
    with console.world.lock:
        console.world.x_posts[0].deleted = True
    wait_for(lambda: requests.get(api + "/deletions", headers=vic, timeout=10).json()["deletions"], 60, "the deletion")
    [row] = requests.get(api + "/deletions", params={"platform": "x", "kind": "deleted"}, headers=vic, timeout=10).json()["deletions"]
    assert row["post_id"] == FIRST and row["kind"] == "deleted" and row["media_sha256"]
    assert requests.get(api + "/deletions", params={"platform": "facebook"}, headers=vic, timeout=10).json() == {"deletions": []}
    assert requests.get(api + "/deletions", params={"since": "yesterday"}, headers=vic, timeout=10).status_code == 400
    assert requests.get(api + "/deletions", timeout=10).status_code == 401

    # check: the same object as `afterimage check --json`
    image = console.shots.parent / "evidence.jpg"
    image.write_bytes(console.evidence)
    cli_line = json.loads(cli(console.config, "check", "--json", str(image)).strip().splitlines()[-1])
    answer = requests.post(api + "/check", files={"file": ("evidence.jpg", console.evidence, "image/jpeg")}, headers=vic, timeout=60)
    assert answer.status_code == 200
    assert answer.json() == {**cli_line, "input": "evidence.jpg"}
    assert answer.json()["match"]["known_id"]  # the evidence is known (as the trailer frame, or as seen before)
    assert requests.post(api + "/check", headers=vic, timeout=10).status_code == 400
    assert requests.post(api + "/check", files={"file": ("e.jpg", b"x")}, timeout=10).status_code == 401
