from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import bot.store
from bot.cli import main
from bot.export import COLUMNS, verify_manifest
from scenario import build


@pytest.fixture
def cli_env(store, tmp_path, monkeypatch):
    sc = build(store, tmp_path)
    monkeypatch.setattr(bot.store, "open_store", lambda url, **_: store)
    monkeypatch.setattr(type(store), "close", lambda self: None)  # the fixture closes it
    cfg = tmp_path / "afterimage.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\narchive_dir: {sc.archive_root}\n")
    return cfg, tmp_path


def test_export_csv_to_file_with_manifest(cli_env):
    cfg, tmp = cli_env
    out = tmp / "log.csv"
    result = CliRunner().invoke(main, ["deletions", "export", "-c", str(cfg), "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 5
    assert verify_manifest(tmp / "log.csv.manifest.json") == []
    assert "manifest:" in result.output


def test_export_jsonl_stdout_with_filters(cli_env):
    cfg, _ = cli_env
    result = CliRunner().invoke(
        main,
        ["deletions", "export", "-c", str(cfg), "--format", "jsonl", "--platform", "x", "--account", "MinistryOfInfo",
         "--since", "2026-03-01T12:10:00Z", "--until", "2026-03-02"],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["kind"], r["post_id"]) for r in lines] == [("deleted", "100")]


def test_export_html_and_bad_time(cli_env):
    cfg, tmp = cli_env
    out = tmp / "report.html"
    result = CliRunner().invoke(main, ["deletions", "export", "-c", str(cfg), "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "data:image/jpeg;base64," in out.read_text(encoding="utf-8")
    bad = CliRunner().invoke(main, ["deletions", "export", "-c", str(cfg), "--format", "csv", "--since", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output


def test_list(cli_env):
    cfg, _ = cli_env
    result = CliRunner().invoke(main, ["deletions", "list", "-c", str(cfg), "--kind", "deleted"])
    assert result.exit_code == 0, result.output
    assert "deleted" in result.output and "lifetime 5m 0s" in result.output and "2 event(s)" in result.output


def test_list_filters_are_validated_and_handles_compared_as_the_platform_does(cli_env):
    cfg, _ = cli_env
    run = lambda *args: CliRunner().invoke(main, ["deletions", "list", "-c", str(cfg), *args])  # noqa: E731
    bad_kind = run("--kind", "delete")
    assert bad_kind.exit_code == 2 and "'delete' is not one of 'deleted', 'author_suspended'" in bad_kind.output
    bad_platform = run("--platform", "twitter")
    assert bad_platform.exit_code == 2 and "'twitter' is not one of" in bad_platform.output
    assert "'rss'" in bad_platform.output and "'x'" in bad_platform.output
    exact = run("--account", "MinistryOfInfo")
    assert exact.exit_code == 0 and "0 event(s)" not in exact.output
    for spelling in ("ministryofinfo", "MINISTRYOFINFO", "@MinistryOfInfo"):  # X handles ignore case
        other = run("--platform", "X", "--account", spelling)
        assert other.exit_code == 0, other.output
        assert other.output.replace("--platform", "") == exact.output
    mastodon = run("--account", "GOV@social.example")
    assert mastodon.exit_code == 0 and "mastodon/gov@social.example" in mastodon.output


def test_export_to_a_missing_folder_is_refused_and_creates_nothing(cli_env, tmp_path):
    cfg, _ = cli_env
    target = tmp_path / "no" / "such" / "dir" / "x.csv"
    result = CliRunner().invoke(main, ["deletions", "export", "-c", str(cfg), "--format", "csv", "-o", str(target)])
    assert result.exit_code == 2
    assert f"the folder {target.parent} does not exist (nothing was written" in result.output
    assert not (tmp_path / "no").exists()


def test_cli_export_leaves_the_sqlite_file_untouched(tmp_path):
    sqlite = pytest.importorskip("bot.store.sqlite")
    import hashlib

    db = tmp_path / "state.db"
    store = sqlite.SqliteStore(str(db))
    sc = build(store, tmp_path)
    store.close()
    cfg = tmp_path / "afterimage.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\narchive_dir: {sc.archive_root}\nstore: sqlite:///{db}\n")

    def snapshot():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.glob("state.db*"))}

    before = snapshot()
    for fmt in ("csv", "jsonl", "html"):
        result = CliRunner().invoke(main, ["deletions", "export", "-c", str(cfg), "--format", fmt, "-o", str(tmp_path / f"o.{fmt}")])
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / f"o.{fmt}.manifest.json").read_text())["rows"] == 5
    assert snapshot() == before
