"""``afterimage alerts test / parked / retry`` as a desk runs them (click's CliRunner, a config file in tmp)."""

from __future__ import annotations

import socket

import pytest
from alert_helpers import T0
from click.testing import CliRunner

from bot.cli import main


@pytest.fixture
def config_file(tmp_path, store_url):
    """A config whose store is the test store and whose one chat target is ``$CHAT_URL`` (console off)."""

    def make(console: bool = False) -> str:
        path = tmp_path / "afterimage.yaml"
        path.write_text(
            f"data_dir: {tmp_path}\nstore: ${{STORE_URL}}\n"
            f"alerts:\n  targets:\n    - ${{CHAT_URL}}\n  console: {str(console).lower()}\n"
        )
        return str(path)

    return make


def invoke(args: list[str], store_url: str, chat_url: str = "json://127.0.0.1:9/unused"):
    return CliRunner().invoke(main, args, env={"STORE_URL": store_url, "CHAT_URL": chat_url})


def dead_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alerts_test_reports_an_accepting_webhook(httpserver, receiver, config_file, store_url):
    hook = receiver("/hook")
    result = invoke(["alerts", "test", "-c", config_file()], store_url, f"json://127.0.0.1:{httpserver.port}/hook")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == ["alerts.targets.0 json://***: accepted"]
    (message,) = hook.received
    assert message["title"] == "afterimage test message" and "afterimage alerts test" in message["message"]


def test_alerts_test_names_the_failing_target_without_its_secret(config_file, store_url):
    token, password = "deadHookToken7391", "s3cretPassw0rd"
    url = f"json://desk:{password}@127.0.0.1:{dead_port()}/hooks/{token}"
    result = invoke(["alerts", "test", "-c", config_file(console=True)], store_url, url)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if ": accepted" in line or ": FAILED" in line]
    assert lines[0] == "console: accepted"
    assert lines[1].startswith("alerts.targets.0 json://***: FAILED: ") and ": FAILED: " in lines[1] and len(lines) == 2
    assert token not in result.output and password not in result.output


def test_alerts_test_says_why_a_target_refused(httpserver, config_file, store_url):
    """A 404, a closed port and a TLS mismatch are told apart (not one "not accepted (FAILURE)"), tokens masked."""
    token = "hookToken55210"
    httpserver.expect_request(f"/hooks/{token}").respond_with_data("no such hook", status=404)
    cases = {
        f"json://127.0.0.1:{httpserver.port}/hooks/{token}": "FAILED: not accepted: HTTP 404",
        f"json://127.0.0.1:{dead_port()}/hooks/{token}": "FAILED: not accepted: connection refused",
        f"jsons://127.0.0.1:{httpserver.port}/hooks/{token}": "FAILED: not accepted: TLS error: WRONG_VERSION_NUMBER",
    }
    for url, expected in cases.items():
        result = invoke(["alerts", "test", "-c", config_file()], store_url, url)
        assert result.exit_code == 1, result.output
        [line] = [line for line in result.output.splitlines() if line.startswith("alerts.targets.0")]
        assert line.startswith(f"alerts.targets.0 json{'s' if url.startswith('jsons') else ''}://***: {expected}"), line
        assert token not in result.output


def test_parked_alerts_are_listed_then_requeued(config_file, store_url, store, make_alert):
    keys = [make_alert(post_id=str(i)).key for i in range(3)]
    store.mark_alert_failed(keys[1], "[delivered: console] fake-chat: not accepted (400)", T0)
    assert store.park_alert(keys[1], "[delivered: console] fake-chat: not accepted (400)")
    cfg = config_file()

    listed = invoke(["alerts", "parked", "-c", cfg], store_url)
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if line.startswith(keys[1]))
    assert "match" in line and "created 2026-11-24T12:00:00Z" in line and "1 attempt(s)" in line
    assert line.endswith("fake-chat: not accepted (400)") and "[delivered" not in line
    assert "1 parked alert(s)" in listed.output

    assert invoke(["alerts", "retry", "-c", cfg], store_url).exit_code == 2  # neither KEYs nor --all
    retried = invoke(["alerts", "retry", "-c", cfg, keys[1]], store_url)
    assert retried.exit_code == 0 and f"requeued {keys[1]}" in retried.output
    assert store.parked_alerts() == [] and [a.key for a in store.due_alerts(T0)] == keys  # back at its place
    again = invoke(["alerts", "retry", "-c", cfg, keys[1]], store_url)
    assert again.exit_code == 1 and "not a parked alert" in again.output
    assert "0 parked alert(s)" in invoke(["alerts", "parked", "-c", cfg], store_url).output


def test_retry_all_requeues_every_parked_alert(config_file, store_url, store, make_alert):
    keys = [make_alert(post_id=str(i)).key for i in range(3)]
    store.park_alert(keys[0], "400")
    store.park_alert(keys[2], "400")
    result = invoke(["alerts", "retry", "--all", "-c", config_file()], store_url)
    assert result.exit_code == 0, result.output
    assert result.output.count("requeued") == 2 and store.outbox_size() == 3 and store.parked_alerts() == []
