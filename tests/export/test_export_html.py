from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile

import pytest
from PIL import Image

from bot.export import ExportFilters, export_to_file, render
from bot.export.html import human_duration, summarize
from bot.export.rows import deletion_log_rows
from scenario import build
from scripted import T0


@pytest.fixture
def scenario(store, tmp_path):
    return build(store, tmp_path)


def test_html_is_self_contained_and_escapes_post_text(store, scenario):
    html, count = render("html", store, archive_root=scenario.archive_root, now=T0)
    assert count == 5
    assert "<script" not in html  # the post's <script> is text, and the report has none of its own
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # no remote resource: every src is a data: URI (links to the posts are fine)
    assert re.findall(r'src="(?!data:)', html) == []
    assert "url(" not in html.split("<style>")[1].split("</style>")[0]
    thumbs = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(thumbs) == 7  # attachments on 4 cards (post 300 twice), the stock photo, the game frame twice
    for b64 in thumbs:
        import base64

        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "JPEG" and max(img.size) <= 320
    assert html.count('class="card"') == 5
    # exact copy of the stock photo (post 100), pdq match alert of the game frame (both post 300 cards)
    assert html.count('figure class="known"') == 3
    for sha in scenario.shas.values():
        assert sha in html
    assert "Stock photo, 2019 flood (AP)" in html


def test_known_match_side_by_side_from_alerts(store, tmp_path):
    sc = build(store, tmp_path)
    html, _ = render("html", store, archive_root=sc.archive_root)
    assert html.count('figure class="known"') == 3  # stock photo on post 100, game frame on both post 300 cards
    assert "Arma 3 gameplay frame" in html and "distance 18" in html


def test_summary_counts_and_median_lifetime(store, scenario):
    s = summarize(deletion_log_rows(store))
    assert s["total"] == 5 and s["deletions"] == 2
    assert s["median_lifetime_seconds"] == 210  # deletions stood 300 s and 120 s
    assert s["median_lifetime"] == "3m 30s"
    accounts = {(a["platform"], a["account"]): (a["total"], a["median_lifetime"]) for a in s["accounts"]}
    assert accounts == {
        ("mastodon", "gov@social.example"): (2, "2m 0s"),
        ("x", "MinistryOfInfo"): (2, "5m 0s"),
        ("x", "PressOffice"): (1, "—"),
    }
    assert [k["kind"] for k in s["kinds"]] == ["deleted", "author_suspended", "edited", "restored"]


def test_missing_or_corrupt_archive_file_is_reported_not_hidden(store, scenario):
    path = scenario.archive_root / scenario.paths["img101"]
    path.write_bytes(b"tampered")
    html, _ = render("html", store, archive_root=scenario.archive_root)
    assert "is corrupt: its content hashes to" in html
    html, _ = render("html", store, archive_root=None)
    assert "archive folder not given" in html


def test_empty_report(store, tmp_path):
    html, count = render("html", store, ExportFilters(platform="nothing"))
    assert count == 0 and "No events" in html


@pytest.mark.parametrize("seconds,text", [(None, "—"), (45, "45s"), (303, "5m 3s"), (8040, "2h 14m"), (273600, "3d 4h")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_html_report_in_headless_chromium(store, tmp_path):
    """Render the report in a real browser: thumbnails decode and show, the post text stays text."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: CI must run the HTML report test in a real browser")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    sc = build(store, tmp_path)
    out = tmp_path / "report.html"
    export_to_file("html", store, out, archive_root=sc.archive_root)
    png = tmp_path / "shot.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ]
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, *flags, f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,3800", out.as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [browser, *flags, f"--user-data-dir={profile}", "--dump-dom", out.as_uri()],
            check=True, capture_output=True, timeout=120, text=True,
        ).stdout
    assert dom.count('class="card"') == 5
    assert "<script" not in dom and '&lt;script&gt;alert("x")&lt;/script&gt;' in dom
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 3800)
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # not a blank page

    def count_near(rgb, tol=12):
        return sum(n for n, c in colors if all(abs(a - b) <= tol for a, b in zip(c, rgb)))

    # the archived photos (thumbnails decoded from data: URIs) are on screen: red, blue, green, purple fills
    for rgb in ((0xB0, 0x3A, 0x2E), (0x1F, 0x61, 0x8D), (0x19, 0x6F, 0x3D), (0x7D, 0x3C, 0x98)):
        assert count_near(rgb) > 20000, rgb
