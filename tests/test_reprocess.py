"""``afterimage reprocess``: media refused once (a host missing from media.trusted_hosts) is fetched again after
the config is fixed, matched and alerted once; running it again changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from click.testing import CliRunner
from werkzeug import Response

from bot.archive import Archive
from bot.cli import main
from bot.config import MatchingConfig, MediaConfig, RecheckConfig
from bot.demo.scene import ministry_evidence, trailer_frames
from bot.deletions.tracker import RecheckTracker
from bot.known import AddOptions, add_paths
from bot.matching.matcher import Matcher
from bot.media.fetch import MediaFetcher
from bot.pipeline import Pipeline
from bot.store.sqlite import SqliteStore
from tests.test_pipeline import NOW, make_post
from watchers.base import PollResult


@pytest.fixture
def refused(tmp_path, httpserver):
    """Two posts processed while media.trusted_hosts lacked the media host: their attachment is not_https."""
    frame = tmp_path / "trailer-frame-30.png"
    trailer_frames()[30].save(frame)
    httpserver.expect_request("/media/a.jpg").respond_with_response(
        Response(ministry_evidence(30), content_type="image/jpeg")
    )
    store = SqliteStore(str(tmp_path / "data" / "state.db"))
    archive = Archive(tmp_path / "data" / "archive")
    add_paths(store, archive, [frame], AddOptions("Gunship sim trailer (2015)", "https://example.org/trailer"))
    fetcher = MediaFetcher(MediaConfig(retries=0))  # no trusted host: the loopback media URL is refused
    pipeline = Pipeline(store, archive, fetcher, Matcher(store, archive, MatchingConfig()), RecheckTracker(store, {"x": RecheckConfig()}))
    old = replace(make_post(httpserver, "1"), created_at=NOW - timedelta(days=3))
    pipeline.ingest("x", "MinistryOfDefence", PollResult([old, make_post(httpserver, "2")], None))
    pipeline.process_pending()
    fetcher.close()
    assert [link.error.split(":")[0] for link in store.get_post_media("x", "2")] == ["not_https"]
    store.close()
    config = tmp_path / "afterimage.yaml"
    host = f"{httpserver.host}:{httpserver.port}"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nmedia:\n  trusted_hosts: [\"{host}\"]\n  retries: 0\n")
    return tmp_path, config


def archived_files(root) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in (root / "data" / "archive").rglob("*") if p.is_file()}


def match_alerts(root) -> list[str]:
    with SqliteStore(str(root / "data" / "state.db")) as store:
        return [a.key for pid in ("1", "2") for a in store.list_alerts("x", pid, kinds=["match"])]


def test_refused_media_is_fetched_again_after_the_config_is_fixed_once_only(refused):
    root, config = refused
    runner = CliRunner()
    assert match_alerts(root) == []

    # by account (as the platform compares handles) and publication time: only the recent post
    dry = runner.invoke(main, ["reprocess", "-c", str(config), "--account", "ministryofdefence",
                               "--since", (NOW - timedelta(hours=1)).isoformat(), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "x/MinistryOfDefence 2: attachment 0: not_https" in dry.output and " 1:" not in dry.output
    assert match_alerts(root) == []

    first = runner.invoke(main, ["reprocess", "-c", str(config), "--reason", "not_https"])
    assert first.exit_code == 0, first.output
    assert "x/MinistryOfDefence 1: attachment 0 archived" in first.output
    assert "x/MinistryOfDefence 2: attachment 0 archived" in first.output
    alerts = match_alerts(root)
    assert len(alerts) == 2  # one match alert per post, each queued once
    files = archived_files(root)

    again = runner.invoke(main, ["reprocess", "-c", str(config)])
    assert again.exit_code == 0, again.output
    assert "no post matching these filters has an attachment left to fetch" in again.output
    assert match_alerts(root) == alerts and archived_files(root) == files  # no second alert, no second write


def test_a_reason_filter_that_matches_nothing_names_the_reasons_there_are(refused):
    root, config = refused
    result = CliRunner().invoke(main, ["reprocess", "-c", str(config), "--reason", "private_address"])
    assert result.exit_code == 0, result.output
    assert "for private_address (failed attachments there: not_https (2))" in result.output
    assert match_alerts(root) == []


def test_by_post_id_only_that_post(refused):
    root, config = refused
    result = CliRunner().invoke(main, ["reprocess", "-c", str(config), "--post", "1", "--platform", "X"])
    assert result.exit_code == 0, result.output
    assert "x/MinistryOfDefence 1: attachment 0 archived" in result.output and " 2:" not in result.output
    assert len(match_alerts(root)) == 1
