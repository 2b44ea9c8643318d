"""``afterimage known ...`` and ``afterimage check`` as a user runs them (click's CliRunner, no config file)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import ImageOps

from bot.cli import main
from tests.images import caption, crop, encode, scene, scene_video


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AFTERIMAGE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_check_finds_cropped_captioned_mirrored_copy_and_ignores_unrelated(run, tmp_path: Path) -> None:
    known = tmp_path / "known"
    known.mkdir()
    for seed in (21, 22):
        (known / f"trailer-{seed}.png").write_bytes(encode(scene(seed, hud=True, hud_seed=3), "PNG"))
    result = run("known", "add", str(known), "--label", "Game trailer 2015", "--source", "https://example.org/t")
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output

    copy = tmp_path / "post.jpg"
    copy.write_bytes(encode(ImageOps.mirror(caption(crop(scene(22, hud=True, hud_seed=3), 0.75, 0.1, 0.9))), quality=75))
    unrelated = tmp_path / "other.jpg"
    unrelated.write_bytes(encode(scene(23, hud=True, hud_seed=3)))
    html = tmp_path / "page.jpg"
    html.write_bytes(b"<!doctype html><html><title>Error</title></html>")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(encode(scene(24))[:3000])

    result = run("check", "--json", str(copy), str(html), str(unrelated), str(truncated))
    out = lines(result.output)
    assert [o["input"] for o in out] == [str(copy), str(html), str(unrelated), str(truncated)]
    assert out[0]["match"]["label"] == "Game trailer 2015"
    assert out[0]["match"]["tier"] == "match"
    assert out[0]["match"]["source"] == "https://example.org/t"
    assert out[0]["match"]["inliers"] >= 50
    assert out[1]["match"] is None and out[1]["error"].startswith("not_an_image")
    assert out[2] == {"input": str(unrelated), "match": None}
    assert out[3]["error"].startswith("truncated")
    assert result.exit_code == 2  # some inputs could not be checked


def test_known_list_remove_and_duplicate_add(run, tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(encode(scene(31), "PNG"))
    assert "1 added" in run("known", "add", str(img)).output
    listed = lines(run("known", "list", "--json").output)
    assert len(listed) == 1 and listed[0]["label"] == "a.png" and listed[0]["file_name"] == "a.png"
    assert listed[0]["media"] == "image" and len(listed[0]["sha256"]) == 64
    again = run("known", "add", str(img))
    assert f"already known: {img} as {listed[0]['id']} \"a.png\" (image)" in again.output
    assert again.exit_code == 0
    assert run("known", "remove", listed[0]["id"]).exit_code == 0
    assert run("known", "list").output.strip() == ""
    assert run("known", "remove", "nope").exit_code == 1


def test_csv_export_import_round_trip(run, tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(encode(scene(41), "PNG"))
    run("known", "add", str(img), "--label", "stock photo", "--source", "https://stock.example/41")
    exported = tmp_path / "hashes.csv"
    missing = run("known", "export", str(tmp_path / "no-such-dir" / "hashes.csv"))  # refused, nothing created
    assert missing.exit_code == 2 and "no-such-dir does not exist (nothing was written" in missing.output
    assert not (tmp_path / "no-such-dir").exists()
    assert run("known", "export", str(exported)).exit_code == 0
    text = exported.read_text()
    header, pdq_row, phash_row = text.splitlines()
    assert header.startswith("signal_type,signal,label,source,id,group,frame_ts,note")
    assert pdq_row.startswith("pdq,") and len(pdq_row.split(",")[1]) == 64
    assert phash_row.startswith("phash,")

    # a second data folder imports the list and finds a re-encoded copy by PDQ alone
    other = tmp_path / "other"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AFTERIMAGE_DATA", str(other))
        bad = tmp_path / "te.csv"
        bad.write_text(text + "md5,abc,x,y\npdq,nothex,x,y\n")
        result = run("known", "import", str(bad))
        assert "1 entries imported, 0 already in the store, 2 rows rejected" in result.output
        assert "line 4: unknown signal type 'md5'" in result.output
        assert "line 5: the pdq hash 'nothex' has a character that is not hexadecimal ('n')" in result.output
        assert "fromhex" not in result.output
        assert result.exit_code == 1
        again = tmp_path / "again.csv"
        run("known", "export", str(again))
        assert again.read_text() == text
        query = tmp_path / "q.jpg"
        query.write_bytes(encode(scene(41), quality=60))
        out = lines(run("check", "--json", str(query)).output)
        assert out[0]["match"]["label"] == "stock photo" and out[0]["match"]["signal"] == "pdq"


def test_a_video_is_one_item_of_keyframes_shown_and_removed_whole(run, tmp_path: Path) -> None:
    video = tmp_path / "trailer.mp4"
    video.write_bytes(scene_video([51, 52, 53], seconds_each=2))
    result = run("known", "add", str(video), "--label", "trailer")
    assert result.exit_code == 0, result.output
    assert "1 added, 0 already known, 0 failed" in result.output
    listed = lines(run("known", "list", "--json").output)
    assert len(listed) == 1  # one row per item, not one per frame
    item = listed[0]
    assert item["media"] == "video" and item["label"] == "trailer" and item["file_name"] == "trailer.mp4"
    assert item["frames"] == 3  # one frame per shot
    assert item["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert run("known", "list").output.startswith(f"{item['id']}  known  3 frames    2")

    shown = run("known", "show", item["id"])
    assert [line.split("@")[1].split()[0] for line in shown.output.splitlines() if "@" in line] == ["0.0s", "2.0s", "4.0s"]
    frame_ids = [e["id"] for e in json.loads(run("known", "show", "--json", item["sha256"]).output)["entry_list"]]
    assert frame_ids[0] == item["id"] and len(frame_ids) == 3

    again = run("known", "add", str(video))
    assert f"already known: {video} as {item['id']} \"trailer\" (video, 3 frames)" in again.output

    still = tmp_path / "still.jpg"
    still.write_bytes(encode(caption(crop(scene(52).resize((320, 200)), 0.85)), quality=80))
    match = lines(run("check", "--json", str(still)).output)[0]["match"]
    assert match is not None and match["label"].startswith("trailer @")
    assert 2.0 <= match["frame_ts"] < 4.0

    removed = run("known", "remove", frame_ids[1])  # any frame's id names the whole video
    assert removed.exit_code == 0 and "3 entries" in removed.output
    assert run("known", "list").output.strip() == ""
    assert lines(run("check", "--json", str(still)).output)[0]["match"] is None
