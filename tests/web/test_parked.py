"""The console's Parked work page through Flask's test client on a real SQLite store: failed posts (the work
queue's, whether their processing raised or killed its worker) and parked alerts (the outbox's), listed with
their errors redacted, retried one by one or all at once by a reviewer, behind login, roles and CSRF."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from bot.redact import register_secret
from bot.store import open_work_queue
from bot.store.queue import POSTS
from bot.store.records import OutboxAlert

from .conftest import URL, make_app

SECRET = "hook-token-PARKED-5512"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def park_work(store) -> None:
    """Two failed posts (one raised, one killed its worker) and two parked alerts, one error with a secret."""
    register_secret(SECRET)
    queue = open_work_queue(store, lease_seconds=60)
    queue.put(POSTS, ["x:1:100", "x:1:200"])
    (raised,) = queue.claim(POSTS, "host:1:a/w0")
    assert queue.fail(raised, f"ValueError: <b>bad</b> payload from https://api.example/{SECRET}", max_attempts=1)
    queue.claim(POSTS, "host:2:dead/w0")
    queue.expire_claims(POSTS, "host:2:dead/w0")
    assert queue.claim(POSTS, "host:3:b/w0", max_deliveries=1) == []  # its worker died once: parked
    for n in (1, 2):
        alert = OutboxAlert(f"match:x:{n}:{'ab' * 32}:k{n}", "match", {"platform": "x", "post_id": str(n)}, T0)
        assert store.enqueue_alert(alert)
        assert store.park_alert(alert.key, f"[delivered: console] json://hooks.example/{SECRET}: not accepted (400)")


@pytest.fixture
def app(tmp_path):
    app, store = make_app(tmp_path, csrf=False)
    park_work(store)
    yield app
    store.close()


def login(client, name: str, password: str):
    return client.post("/login", data={"name": name, "password": password}, base_url=URL)


def test_the_page_lists_failed_posts_and_parked_alerts_redacted_and_is_linked_from_the_navigation(app):
    client = app.test_client()
    assert client.get("/parked", base_url=URL).status_code == 302  # login first
    login(client, "ana", "ana-password-1")
    home = client.get("/", base_url=URL).get_data(as_text=True)
    assert 'href="/parked"' in home and "Parked work" in home
    assert "match x/1: json://hooks.example/***: not accepted (400)" in home  # the dashboard's list: redacted too
    assert SECRET not in home and "[delivered" not in home
    page = client.get("/parked", base_url=URL).get_data(as_text=True)
    assert "x:1:100" in page and "x:1:200" in page
    assert "the worker processing it died 1 time(s); last taken over from host:2:dead/w0" in page
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt; payload" in page and "<b>bad</b>" not in page  # escaped
    assert page.count("not accepted (400)") == 2 and "[delivered" not in page
    assert SECRET not in page and "***" in page
    assert 'name="key"' not in page  # forms carry a digest of the key, never the key
    assert page.count(">Retry</button>") == 4 and page.count("Retry all 2") == 2
    assert 'href="/posts/x/100"' in page and 'href="/posts/x/1"' in page


def test_a_reviewer_retries_one_post_then_every_alert(app):
    store = app.extensions["afterimage"]["store"]
    queue = open_work_queue(store)
    client = app.test_client()
    login(client, "ana", "ana-password-1")
    page = client.get("/parked", base_url=URL).get_data(as_text=True)
    refs = re.findall(r'action="/parked/posts/retry">\s*<input[^>]*>\s*<input type="hidden" name="ref" value="([0-9a-f]+)"', page)
    assert len(refs) == 2
    answer = client.post("/parked/posts/retry", data={"ref": refs[0]}, base_url=URL, follow_redirects=True)
    assert answer.status_code == 200 and "1 failed post(s) queued" in answer.get_data(as_text=True)
    assert [f.item for f in queue.failed(POSTS)] == ["x:1:200"]
    (claim,) = queue.claim(POSTS, "w")  # queued again, with its count reset
    assert (claim.item, claim.deliveries) == ("x:1:100", 1)
    again = client.post("/parked/posts/retry", data={"ref": refs[0]}, base_url=URL, follow_redirects=True)
    assert "no longer parked" in again.get_data(as_text=True)

    done = client.post("/parked/alerts/retry", data={"all": "1"}, base_url=URL, follow_redirects=True)
    assert "2 parked alert(s) requeued" in done.get_data(as_text=True)
    assert store.parked_alerts() == [] and store.outbox_size() == 2
    assert client.post("/parked/nothing/retry", data={"all": "1"}, base_url=URL).status_code == 404
    assert client.post("/parked/posts/retry", data={}, base_url=URL).status_code == 400


def test_a_viewer_sees_the_list_but_cannot_retry(app):
    store = app.extensions["afterimage"]["store"]
    client = app.test_client()
    login(client, "vic", "vic-password-1")
    page = client.get("/parked", base_url=URL).get_data(as_text=True)
    assert "x:1:100" in page and ">Retry</button>" not in page and "Retry all" not in page
    assert client.post("/parked/alerts/retry", data={"all": "1"}, base_url=URL).status_code == 403
    assert len(store.parked_alerts()) == 2
    anonymous = app.test_client()
    assert anonymous.post("/parked/alerts/retry", data={"all": "1"}, base_url=URL).status_code in (302, 401)
    assert len(store.parked_alerts()) == 2


def test_a_retry_without_the_forms_csrf_token_is_refused(tmp_path):
    app, store = make_app(tmp_path, csrf=True)
    park_work(store)
    same_site = {"Referer": f"{URL}/parked"}  # over https, Flask-WTF also checks the referrer
    try:
        client = app.test_client()
        page = client.get("/login", base_url=URL).get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        logged_in = client.post("/login", data={"name": "ana", "password": "ana-password-1", "csrf_token": token},
                                base_url=URL, headers=same_site)
        assert logged_in.status_code == 302
        refused = client.post("/parked/alerts/retry", data={"all": "1"}, base_url=URL, headers=same_site)
        assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
        assert len(store.parked_alerts()) == 2
        page = client.get("/parked", base_url=URL).get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        answer = client.post("/parked/alerts/retry", data={"all": "1", "csrf_token": token}, base_url=URL, headers=same_site)
        assert answer.status_code == 302 and store.parked_alerts() == []
    finally:
        store.close()
