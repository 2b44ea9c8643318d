"""The published HTML report in a real browser (headless Chromium through chromedriver): at 1280 px and at a
phone's 400 px nothing overflows sideways, timeline labels are whole and tell feeds apart, long URLs stay
inside their cards; printed to PDF it keeps every section. Screenshots and the PDF's pages are saved under
``AFTERIMAGE_TEST_ARTIFACTS`` (default: the test's tmp folder) for a person to look at."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from scenario import archive_media, build, jpeg

from bot.archive import Archive
from bot.config import RecheckConfig
from bot.deletions import RecheckTracker
from bot.evidence.ledger import EvidenceLedger
from bot.evidence.stamper import Stamper
from bot.evidence.tsa import TsaClient
from bot.export import export_to_file
from bot.models import Post, PostStatus
from bot.store.records import OutboxAlert, PostMediaLink
from scripted import T0, ScriptedWatcher, make_post, minutes
from tests.evidence.local_tsa import start_tsa
from tests.evidence.raw_versions import archive_raw_versions
from bot.store.posts import AccountPoll

FEED = "https://www.gov.uk/government/organisations/ministry-of-defence.atom"
LONG_URL = "https://www.gov.uk/government/news/" + "defence-secretary-statement-on-the-convoy-" * 4 + "final"


def _browser_or_skip() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None or not shutil.which("chromedriver"):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium/chromedriver not installed: CI must check the report in a real browser")
        pytest.skip("chromium and chromedriver not installed")
    return browser


def _deletions(store, platform: str, account: str, post_ids: list[str]) -> None:
    """Posts of one account deleted, confirmed by the real tracker."""
    tracker = RecheckTracker(store, {platform: RecheckConfig()})
    answers = {}
    for n, post_id in enumerate(post_ids):
        post = Post(platform, account, post_id, LONG_URL + f"-{n}", f"MinistryOfDefence update {n + 1}: {LONG_URL}",
                    T0 + minutes(5 + n), raw={"author": "Ministry of Defence", "id": post_id})
        store.record_poll(AccountPoll(platform, account, [post], None, at=post.created_at + timedelta(seconds=30)))
        tracker.schedule_new(post, post.created_at + timedelta(seconds=30))
        answers[post_id] = [PostStatus.alive(post), PostStatus.deleted(), PostStatus.deleted()]
    watcher = ScriptedWatcher(answers)
    until = T0 + timedelta(hours=3)
    while due := store.due_rechecks(platform, until, limit=1):
        tracker.run(platform, watcher, due[0].due_at)


@pytest.fixture
def report(store, tmp_path, httpserver):
    sc = build(store, tmp_path)
    # three items of one long-named feed: their timeline labels must differ; a long handle with an X-sized id
    # (19 digits) must not be clipped
    _deletions(store, "rss", FEED, [f"https://www.gov.uk/government/news/ministry-of-defence-update-{n}" for n in (1, 2, 3)])
    _deletions(store, "x", "WWWMinistryOfDefenceUKOfficial", ["1864213497851904512"])
    # a matched post that is still online and in no event: the "matches" section
    post = make_post("400", account="MinistryOfInfo", text=f"Convoy footage, full story: {LONG_URL}", media=("m400",),
                     created_at=T0 + minutes(4))
    store.record_poll(AccountPoll("x", "MinistryOfInfo", [post], None, at=post.created_at))
    rec = archive_media(store, Archive(sc.archive_root), "img400", jpeg("#117a65", "img400"), post.media[0].url)
    store.link_post_media(PostMediaLink("x", "400", 0, post.media[0].url, rec.sha256))
    # matched twice (a game frame and a stock photo): three pictures in a row, the last one wraps at 1280 px
    for known in store.list_known()[-2:]:
        store.enqueue_alert(OutboxAlert(
            key=f"match:x:400:{rec.sha256}:{known.id}", kind="match",
            payload={"platform": "x", "post_id": "400", "media_sha256": rec.sha256,
                     "known_id": known.id, "label": known.label, "signal": "pdq", "distance": 22},
            created_at=T0 + minutes(4)))
    tsa = start_tsa(httpserver, tmp_path / "pki")
    ledger = EvidenceLedger(tmp_path / "evidence")
    archive = Archive(sc.archive_root, on_new=lambda f: ledger.enqueue_file(f.sha256, f.relpath))
    stamper = Stamper(ledger, TsaClient([tsa.url], tsa.pki["ca"]), store, archive)
    archive_raw_versions(store, archive)
    stamper.sweep_archive()
    assert stamper.run().error is None
    out = tmp_path / "report.html"
    export_to_file("html", store, out, archive_root=sc.archive_root, evidence_dir=ledger.folder,
                   title="Deleted posts of government accounts, March 2026", organisation="Example Fact-Check Desk")
    return out


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("AFTERIMAGE_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                 "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


LAYOUT_JS = """
const vw = document.documentElement.clientWidth;
const scrollers = [...document.querySelectorAll('.scroll, .timeline')];
const inScroller = el => scrollers.some(s => s.contains(el) && s !== el);
const over = [];
for (const el of document.body.querySelectorAll('*')) {
  if (inScroller(el)) continue;
  const r = el.getBoundingClientRect();
  if (r.width && (r.right > vw + 0.5 || r.left < -0.5)) over.push(el.tagName + '.' + el.className + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
}
const svg = document.querySelector('#timeline svg');
const labelW = svg ? Number(svg.querySelector('text.label').getAttribute('x')) + 8 : 0;
const labels = svg ? [...svg.querySelectorAll('text.label')].map(t => { const b = t.getBBox(); return [t.textContent, b.x, b.x + b.width]; }) : [];
const accounts = [...document.querySelectorAll('table.summary td.account')].map(td => {
  const range = document.createRange(); range.selectNodeContents(td);
  const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
  return [td.textContent, lines, Math.round(td.getBoundingClientRect().width)];
});
// each "≈" sign beside (or, on a phone, just above) the known picture it introduces, never left behind at
// the end of a line when that picture wraps
const signs = [...document.querySelectorAll('.vs')].map(s => {
  const a = s.getBoundingClientRect(), b = s.nextElementSibling.getBoundingClientRect();
  return (a.right <= b.left + 0.5 && b.left - a.right < 30 && a.top >= b.top && a.bottom <= b.bottom)
      || (a.bottom <= b.top + 0.5 && b.top - a.bottom < 30 && a.left >= b.left - 0.5);
});
return {signs: signs, scrollWidth: document.documentElement.scrollWidth, clientWidth: vw, overflowing: over.slice(0, 20),
        labels: labels, labelW: labelW, height: document.documentElement.scrollHeight, accounts: accounts};
"""


def _layout_and_screenshot(driver, url: str, width: int, png: Path) -> dict:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
    driver.get(url)
    layout = driver.execute_script(LAYOUT_JS)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png.write_bytes(base64.b64decode(shot["data"]))
    return layout


def test_report_fits_1280_and_400_px_with_whole_distinct_labels(report, tmp_path):
    _browser_or_skip()
    html = report.read_text()
    assert "Deleted posts of government accounts, March 2026" in html and "Example Fact-Check Desk" in html
    assert 'id="methodology"' in html and "openssl ts -verify" in html and "afterimage verify" in html
    assert html.count('class="matchcard"') == 1 and "Convoy footage, full story" in html  # post 400: matched, online
    assert html.count("data:image/png;base64,") >= 6  # post cards (edits: before and after)
    assert "not timestamped" not in html  # every hash in the report has its proof
    artifacts = _artifacts(tmp_path)
    driver = _driver()
    try:
        for width in (1280, 400):
            layout = _layout_and_screenshot(driver, report.as_uri(), width, artifacts / f"report-{width}px.png")
            assert layout["scrollWidth"] <= layout["clientWidth"], (width, layout["overflowing"])
            assert layout["overflowing"] == [], (width, layout["overflowing"])
            assert layout["signs"] and all(layout["signs"]), (width, layout["signs"])
            # account names wrap between their words, never letter by letter: the feed URL in at most two lines
            # (three on a phone), every handle on one
            accounts = {text: lines for text, lines, _ in layout["accounts"]}
            assert len(accounts) == 5, layout["accounts"]
            for text, lines in accounts.items():
                assert lines <= ((2 if width > 600 else 3) if "://" in text else 1), (width, text, lines)
            labels = layout["labels"]
            assert len(labels) == 9
            for text, left, right in labels:
                assert left >= 0 and right <= layout["labelW"], (width, text, left, right)
            feed_labels = [t for t, _, _ in labels if "gov.uk" in t]
            assert len(feed_labels) == 3 and len(set(feed_labels)) == 3, feed_labels  # three feed items, told apart
            assert all(t.startswith("gov.uk/…/ministry-of-defence · …") for t in feed_labels), feed_labels
            assert any(t.startswith("WWWMinistryOf") and t.endswith("51904512") for t, _, _ in labels), labels
    finally:
        driver.quit()


def test_report_prints_to_pdf_with_every_section(report, tmp_path):
    browser = _browser_or_skip()
    pdfium = pytest.importorskip("pypdfium2")
    artifacts = _artifacts(tmp_path)
    shutil.copy(report, artifacts / "report.html")  # what the screenshots show, to open by hand
    pdf = artifacts / "report.pdf"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
                        "--no-pdf-header-footer", f"--print-to-pdf={pdf}", report.as_uri()],
                       check=True, capture_output=True, timeout=120)
    doc = pdfium.PdfDocument(str(pdf))
    assert 3 <= len(doc) <= 40
    text = "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    for expected in ("Deleted posts of government accounts", "Example Fact-Check Desk", "Summary", "Timeline", "Events",
                     "Matches on posts still online", "Methodology and verification", "openssl ts -verify",
                     "Trusted timestamp"):
        assert expected in text, expected
    for i in range(len(doc)):
        page = doc[i]
        image = page.render(scale=1.2).to_pil()
        image.save(artifacts / f"report-print-page{i + 1:02d}.png")
        width = page.get_width()
        # nothing printed past the right margin: every text box ends inside the page
        textpage = page.get_textpage()
        for n in range(textpage.count_rects()):
            left, _, right, _ = textpage.get_rect(n)
            assert right <= width + 1, (i + 1, right, width)
