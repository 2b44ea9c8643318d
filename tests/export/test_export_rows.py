from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest

from bot.export import COLUMNS, ExportFilters, ReadOnlyStore, deletion_log_rows, export_to_file, render, verify_manifest
from bot.export.writers import manifest_path
from scenario import TRICKY_TEXT, build
from scripted import T0, minutes
from bot.store.deletion_log import EventFilter


@pytest.fixture
def scenario(store, tmp_path):
    return build(store, tmp_path)


def by_event(rows, kind, post_id):
    return next(r for r in rows if r["kind"] == kind and r["post_id"] == post_id)


def test_columns_are_documented_and_stable():
    import bot.export.rows as rows_module

    assert COLUMNS == (
        "event_id", "kind", "scope", "platform", "account", "post_id", "post_url", "post_text", "posted_at",
        "first_seen", "last_seen_alive", "detected_at", "lifetime_seconds", "media_sha256", "media_archive_paths",
        "known_matches", "raw_sha256", "details",
    )
    source = open(rows_module.__file__, encoding="utf-8").read()
    for column in COLUMNS:
        assert f"#: {column} " in source, f"column {column} is not documented"


def test_deleted_row_every_column(store, scenario):
    rows = deletion_log_rows(store)
    assert [(r["kind"], r["post_id"]) for r in rows] == [
        ("edited", "101"), ("deleted", "300"), ("author_suspended", "200"), ("deleted", "100"), ("restored", "300")
    ]  # detection order
    r = by_event(rows, "deleted", "100")
    post = scenario.posts["100"]
    event = next(e for e in store.list_events(EventFilter(kinds=["deleted"])) if e.post_id == "100")
    assert set(r) == set(COLUMNS)
    assert r["event_id"] == event.id
    assert r["scope"] == "post"
    assert r["platform"] == "x"
    assert r["account"] == "MinistryOfInfo"
    assert r["post_url"] == "https://x.com/MinistryOfInfo/status/100"
    assert r["post_text"] == TRICKY_TEXT
    assert r["posted_at"] == "2026-03-01T12:00:00Z"
    assert r["first_seen"] == "2026-03-01T12:00:40Z"
    assert r["last_seen_alive"] == "2026-03-01T12:05:00Z"  # 2m and 5m alive, 15m deleted, 16m confirmed
    assert r["detected_at"] == "2026-03-01T12:16:00Z"
    assert r["lifetime_seconds"] == 300
    assert r["media_sha256"] == [scenario.shas["img100"]]
    assert r["media_archive_paths"] == [scenario.paths["img100"]]
    assert [(m["media_sha256"], m["label"], m["kind"], m["method"], m["distance"]) for m in r["known_matches"]] == [
        (scenario.shas["img100"], "Stock photo, 2019 flood (AP)", "match", "sha256", 0)
    ]
    assert r["known_matches"][0]["known_archive_path"] == scenario.paths["img100"]
    assert r["raw_sha256"] == post.raw_sha256() == hashlib.sha256(post.raw_bytes()).hexdigest()
    assert r["details"]["confirmed_at"] == "2026-03-01T12:16:00Z" and r["details"]["answers"] == 2


def test_other_kinds_rows(store, scenario):
    rows = deletion_log_rows(store)
    edited = by_event(rows, "edited", "101")
    assert edited["post_text"] == "Minister visits the flooded area (photo corrected)"
    assert edited["details"]["before"]["text"] == "Minister visits the flooded area"
    assert edited["last_seen_alive"] == edited["detected_at"] == "2026-03-01T12:06:00Z"
    assert edited["raw_sha256"] == edited["details"]["after"]["raw_sha256"]
    susp = by_event(rows, "author_suspended", "200")
    assert susp["scope"] == "account" and susp["media_sha256"] == [] and susp["known_matches"] == []
    assert susp["details"]["platform_said"] == "User has been suspended."
    deleted300 = by_event(rows, "deleted", "300")
    assert deleted300["platform"] == "mastodon" and deleted300["lifetime_seconds"] == 120
    restored = by_event(rows, "restored", "300")
    assert restored["details"]["previous"] == "deleted"


def test_perceptual_match_from_alerts(store, tmp_path):
    sc = build(store, tmp_path)
    r = by_event(deletion_log_rows(store), "deleted", "300")
    assert [(m["label"], m["method"], m["distance"], m["known_sha256"]) for m in r["known_matches"]] == [
        ("Arma 3 gameplay frame", "pdq", 18, sc.shas["game"])
    ]


def test_filters(store, scenario):
    def ids(**kw):
        return [(r["kind"], r["post_id"]) for r in deletion_log_rows(store, ExportFilters(**kw))]

    assert ids(platform="mastodon") == [("deleted", "300"), ("restored", "300")]
    assert ids(account="PressOffice") == [("author_suspended", "200")]
    assert ids(since=T0 + minutes(9), until=T0 + minutes(17)) == [("author_suspended", "200"), ("deleted", "100")]
    assert ids(until=T0 + minutes(9)) == [("edited", "101"), ("deleted", "300")]  # until is exclusive
    assert ids(kinds=("deleted",)) == [("deleted", "300"), ("deleted", "100")]
    assert ids(since=T0 + timedelta(days=1)) == []


def test_csv_is_rfc4180_with_every_column(store, scenario):
    text, count = render("csv", store)
    assert count == 5
    assert text.startswith(",".join(COLUMNS) + "\r\n")
    assert text.endswith("\r\n") and text.count("\r\n") == 6  # CRLF after the header and each record
    assert text.replace("\r\n", "").count("\n") == 1  # the only other line break is inside the quoted post text
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == list(COLUMNS) and len(parsed) == 6
    records = [dict(zip(COLUMNS, row)) for row in parsed[1:]]
    rows = deletion_log_rows(store)
    for rec, row in zip(records, rows):
        for column in COLUMNS:
            value = row[column]
            if column in ("media_sha256", "media_archive_paths"):
                assert rec[column] == " ".join(value)
            elif column in ("known_matches", "details"):
                assert json.loads(rec[column]) == value
            elif value is None:
                assert rec[column] == ""
            else:
                assert rec[column] == str(value), column
    deleted = next(r for r in records if r["kind"] == "deleted" and r["post_id"] == "100")
    assert deleted["post_text"] == TRICKY_TEXT  # comma, quotes and a line break survive the round trip
    assert '"Relief convoy arrived, ""as promised""' in text  # quotes doubled inside a quoted field


def test_jsonl_every_column(store, scenario):
    text, count = render("jsonl", store)
    lines = text.splitlines()
    assert count == len(lines) == 5 and text.endswith("\n")
    rows = deletion_log_rows(store)
    for line, row in zip(lines, rows):
        obj = json.loads(line)
        assert list(obj) == list(COLUMNS)
        assert obj == json.loads(json.dumps(row))
    susp = json.loads(lines[2])
    assert susp["media_sha256"] == [] and susp["known_matches"] == [] and isinstance(susp["lifetime_seconds"], int)


def test_times_are_utc_iso_with_z(store, scenario):
    for row in deletion_log_rows(store):
        for column in ("posted_at", "first_seen", "last_seen_alive", "detected_at"):
            assert row[column].endswith("Z") and row[column][10] == "T", (column, row[column])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "html"])
def test_manifest_lists_sha256_and_detects_tampering(store, scenario, tmp_path, fmt):
    out = tmp_path / "out" / f"report.{fmt}"
    manifest = export_to_file(fmt, store, out, ExportFilters(), archive_root=scenario.archive_root, now=T0)
    data = out.read_bytes()
    saved = json.loads(manifest_path(out).read_text())
    assert saved == manifest
    assert saved["files"] == [{"name": out.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}]
    assert saved["rows"] == 5 and saved["format"] == fmt and saved["columns"] == list(COLUMNS)
    assert saved["generated_at"] == "2026-03-01T12:00:00Z"
    assert verify_manifest(manifest_path(out)) == []
    out.write_bytes(data + b" ")
    assert "differs from the manifest" in verify_manifest(manifest_path(out))[0]


def test_export_never_modifies_the_store(store, scenario, tmp_path):
    class Trap:
        """Every call other than a read fails the test."""

        def __init__(self, inner):
            self.inner = inner
            self.calls = []

        def __getattr__(self, name):
            attr = getattr(self.inner, name)
            if callable(attr) and not (name.startswith(("get_", "list_", "iter_", "count_", "find_")) or name in ("due_rechecks", "alerts_between")):
                raise AssertionError(f"export called store.{name}")
            self.calls.append(name)
            return attr

    trap = Trap(store)
    before = [e.to_dict() for e in store.list_events()], store.outbox_size(), store.count_rechecks()
    for fmt in ("csv", "jsonl", "html"):
        export_to_file(fmt, trap, tmp_path / f"r.{fmt}", archive_root=scenario.archive_root)
    assert [e.to_dict() for e in store.list_events()], store.outbox_size() == before[:2]
    assert store.count_rechecks() == before[2]
    if hasattr(store, "writes"):
        writes = store.writes
        render("html", store, archive_root=scenario.archive_root)
        assert store.writes == writes
    ro = ReadOnlyStore(store)
    for name in ("record_event", "set_post_status", "enqueue_alert", "schedule_recheck", "put_media", "close"):
        with pytest.raises(AttributeError):
            getattr(ro, name)
