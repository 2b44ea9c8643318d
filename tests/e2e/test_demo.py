"""``afterimage demo`` replays the 2017 case offline through the real daemon, and writes only into --out."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.store import open_store

pytestmark = pytest.mark.slow


def files_under(path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_demo_alerts_logs_the_deletion_and_exports_the_report(tmp_path, monkeypatch):
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "out"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("AFTERIMAGE_DATA", raising=False)
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)

    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "chat received: Known image" in result.output
    assert "deletion of x/930405181311074304 confirmed" in result.output

    # nothing outside the output folder
    assert files_under(home) == set() and files_under(cwd) == set()

    rows = list(csv.DictReader((out / "deletions.csv").open(newline="", encoding="utf-8")))
    [deleted] = [r for r in rows if r["kind"] == "deleted"]
    assert deleted["platform"] == "x" and deleted["post_id"] == "930405181311074304"
    assert int(deleted["lifetime_seconds"]) >= 0 and deleted["media_sha256"]
    matches = json.loads(deleted["known_matches"])
    assert any("game trailer (2015)" in m["label"] and m["kind"] == "match" for m in matches)

    html = (out / "deletion-report.html").read_text(encoding="utf-8")
    assert "Irrefutable evidence" in html and "data:image/" in html
    assert "game trailer (2015)" in html and deleted["media_sha256"] in html
    jsonl = [json.loads(line) for line in (out / "deletions.jsonl").read_text().splitlines()]
    assert [r["event_id"] for r in jsonl] == [r["event_id"] for r in rows]
    for name in ("deletion-report.html", "deletions.csv", "deletions.jsonl"):
        assert (out / f"{name}.manifest.json").exists()
    # the deletion alert reached the chat before the demo ended: nothing is left undelivered
    assert "chat received: Post deleted: x/MinistryOfDefence" in result.output
    assert outbox_and_event_kinds(out) == (0, ["deleted"])

    # a second run in the same folder is a fresh replay: no "restored" event that never happened, the match
    # alerts again, and again nothing left undelivered (the old store described another fake world)
    again = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "Post restored" not in again.output and "chat received: Known image" in again.output
    assert outbox_and_event_kinds(out) == (0, ["deleted"])
    assert [r["kind"] for r in csv.DictReader((out / "deletions.csv").open(newline="", encoding="utf-8"))] == ["deleted"]


def outbox_and_event_kinds(out) -> tuple[int, list[str]]:
    with open_store(f"sqlite:///{out / 'data' / 'state.db'}") as store:
        return store.outbox_size(), [e.kind for e in store.list_events()]


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own file")
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 2
    assert "not empty and was not written by `afterimage demo`" in result.output
    assert files_under(out) == {"notes.txt"}
