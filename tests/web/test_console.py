"""The console's security rules through Flask's test client on a real SQLite store (the browser flows are in
``tests/e2e/test_web_console.py``): untrusted text escaped and never a live link, login throttling, sessions
ended by a password change, roles, archive paths, security headers."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from bot.store.review import Case, CaseEvent
from bot.users import add_user
from bot.web.auth import MAX_FAILURES

from .conftest import make_app

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HOSTILE = '<img src=x onerror="alert(1)"> @channel'


@pytest.fixture
def app(tmp_path):
    app, store = make_app(tmp_path)
    yield app
    store.close()


URL = "https://review.example.org"


def login(client, name: str, password: str):
    return client.post("/login", data={"name": name, "password": password}, base_url=URL)


def signed_in(app, name: str, password: str):
    """A test client of ``app`` logged in as ``name``."""
    client = app.test_client()
    login(client, name, password)
    return client


def hostile_case(store) -> Case:
    payload = {"platform": "x", "account": "gov", "post_id": "1", "post_url": "javascript:alert(1)", "text": HOSTILE,
               "known": {"id": "k1", "label": HOSTILE, "source": "javascript:alert(2)"}, "tier": "match",
               "signal": "pdq", "distance": 4, "inliers": None, "media_sha256": "a" * 64}
    case, _ = store.open_case(Case("match", "match", "x", "gov", "1", "a" * 64, "k1", payload, T0,
                                   history=(CaseEvent(T0, "afterimage", "opened"),)))
    return case


def test_post_text_labels_and_links_are_escaped_and_never_live(app):
    case = hostile_case(app.extensions["afterimage"]["store"])
    client = app.test_client()
    assert login(client, "ana", "ana-password-1").status_code == 302
    for path in ("/queue", f"/cases/{case.id}", "/cases", "/"):
        page = client.get(path, base_url=URL).get_data(as_text=True)
        assert "<img src=x" not in page and 'href="javascript:' not in page, path
    page = client.get(f"/cases/{case.id}", base_url=URL).get_data(as_text=True)
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; @channel" in page


def test_session_cookie_flags_and_security_headers(app):
    client = app.test_client()
    answer = login(client, "ana", "ana-password-1")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    page = client.get("/", base_url=URL)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"


def test_login_is_throttled_after_repeated_failures_even_with_the_right_password(app):
    client = app.test_client()
    for _ in range(MAX_FAILURES):
        assert login(client, "ana", "wrong-password").status_code == 401
    assert login(client, "ana", "ana-password-1").status_code == 429
    assert login(client, "vic", "vic-password-1").status_code == 429  # same client address


def test_changing_a_password_ends_the_users_sessions(app):
    client = signed_in(app, "ana", "ana-password-1")
    assert client.get("/queue", base_url=URL).status_code == 200
    add_user(app.extensions["afterimage"]["store"], "ana", "reviewer", "a-new-password-2", replace_existing=True)
    answer = client.get("/queue", base_url=URL)
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_viewer_is_refused_decisions_and_known_media_changes(app):
    case = hostile_case(app.extensions["afterimage"]["store"])
    client = signed_in(app, "vic", "vic-password-1")
    assert client.post(f"/cases/{case.id}/confirm", base_url=URL).status_code == 403
    assert client.post("/known/k1/remove", base_url=URL).status_code == 403
    assert client.post("/known/upload", base_url=URL).status_code == 403
    assert app.extensions["afterimage"]["store"].get_case(case.id).status == "open"


def test_archive_paths_cannot_leave_the_archive_and_login_redirects_stay_on_site(app):
    client = signed_in(app, "ana", "ana-password-1")
    assert client.get("/media/../../state.db", base_url=URL).status_code == 404
    assert client.get("/media/%2e%2e/state.db", base_url=URL).status_code == 404
    other = app.test_client()
    answer = other.post("/login?next=//evil.example/x", data={"name": "ana", "password": "ana-password-1"}, base_url=URL)
    assert answer.headers["Location"] == "/"


def test_unknown_case_and_bad_filters_are_clear_errors(app):
    client = signed_in(app, "ana", "ana-password-1")
    assert client.get("/cases/nope", base_url=URL).status_code == 404
    assert client.get("/cases?status=closed", base_url=URL).status_code == 400
    assert client.get("/deletions?since=yesterday", base_url=URL).status_code == 400


def test_admin_uploads_edits_and_removes_a_known_item_and_checks_an_image(app):
    import io

    from bot.demo.scene import trailer_frames
    from bot.store.records import KnownKind

    store = app.extensions["afterimage"]["store"]
    add_user(store, "root", "admin", "root-password-1")
    client = signed_in(app, "root", "root-password-1")
    png = io.BytesIO()
    trailer_frames()[30].save(png, "PNG")
    answer = client.post("/known/upload", base_url=URL, content_type="multipart/form-data",
                         data={"files": (io.BytesIO(png.getvalue()), "frame 30.png"), "label": "", "source": ""})
    assert answer.status_code == 302
    [entry] = store.list_known(KnownKind.KNOWN)
    assert entry.label == "frame_30.png" and entry.source == "uploaded by root: frame_30.png"
    page = client.get("/known", base_url=URL).get_data(as_text=True)
    assert page.count('class="edit"') == 1
    client.post(f"/known/{entry.item}/edit", base_url=URL, data={"label": "Trailer <2015>", "source": "https://e.org/t", "note": ""})
    assert store.get_known(entry.id).label == "Trailer <2015>"
    check = client.post("/check", base_url=URL, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(png.getvalue()), "q.png")}).get_data(as_text=True)
    assert "MATCH" in check and "Trailer &lt;2015&gt;" in check
    client.post(f"/known/{entry.item}/remove", base_url=URL)
    assert store.count_known(KnownKind.KNOWN) == 0


def test_admin_manages_users_and_a_reviewer_cannot(app):
    store = app.extensions["afterimage"]["store"]
    add_user(store, "root", "admin", "root-password-1")
    reviewer = app.test_client()
    login(reviewer, "ana", "ana-password-1")
    assert reviewer.get("/users", base_url=URL).status_code == 403
    assert reviewer.post("/users/add", base_url=URL, data={"name": "eve", "role": "admin", "password": "x" * 12}).status_code == 403
    admin = app.test_client()
    login(admin, "root", "root-password-1")
    admin.post("/users/add", base_url=URL, data={"name": "bo", "role": "viewer", "password": "bo-password-1"})
    assert store.get_user("bo").role == "viewer"
    page = admin.post("/users/add", base_url=URL, data={"name": "cy", "role": "viewer", "password": "short"},
                      follow_redirects=True).get_data(as_text=True)
    assert "at least 10 characters" in page and store.get_user("cy") is None
    admin.post("/users/ana/remove", base_url=URL)
    assert store.get_user("ana") is None
    assert reviewer.get("/queue", base_url=URL).status_code == 302  # the removed user's session ended
