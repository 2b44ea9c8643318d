"""The known-media library keeps everything it is given: faithful import/export, items, folders with failures,
interruptions, URLs, and ``check`` on videos and folders (issue #14; plain ``check URL`` errors from #13)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from bot.cli import main
from bot.config import load_config
from bot.store import open_store
from tests.images import caption, crop, encode, scene, scene_video, stills_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("AFTERIMAGE_DATA", str(folder))
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return folder


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def entries(data_dir: Path) -> list:
    """Every entry of the store in the data folder ``data_dir``, in insertion order."""
    old = os.environ.get("AFTERIMAGE_DATA")
    os.environ["AFTERIMAGE_DATA"] = str(data_dir)
    try:
        with open_store(load_config(None).store_url) as store:
            return list(store.iter_known())
    finally:
        os.environ["AFTERIMAGE_DATA"] = old or ""


def pdq_hashes(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(256):064x}" for _ in range(n)]


# ----------------------------------------------------------------------------- import / export


def test_export_then_import_gives_back_the_same_entries(data: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in (61, 62, 63):  # three photos sharing label and source: the old import merged them into one
        (photos / f"p{seed}.png").write_bytes(encode(scene(seed), "PNG"))
    assert run("known", "add", str(photos), "--label", "flood 2014", "--source", "https://ap.example/flood").exit_code == 0
    video = tmp_path / "trailer.mp4"
    video.write_bytes(scene_video([64, 65, 66], seconds_each=2))
    assert run("known", "add", str(video), "--label", "sim trailer", "--note", "from the studio").exit_code == 0
    te_list = tmp_path / "partner.csv"
    te_list.write_text(
        "signal_type,signal,label,source,group\n"
        + "".join(f"pdq,{h},debunked,https://partner.example,{'g1' if i < 4 else ''}\n" for i, h in enumerate(pdq_hashes(10)))
    )
    assert "10 entries imported" in run("known", "import", str(te_list)).output
    before = entries(data)
    assert len(before) == 3 + 3 + 10

    exported = tmp_path / "all.csv"
    assert run("known", "export", str(exported)).exit_code == 0
    other = tmp_path / "other"
    os.environ["AFTERIMAGE_DATA"] = str(other)
    result = run("known", "import", str(exported))
    assert result.exit_code == 0, result.output
    assert "16 entries imported, 0 already in the store, 0 rows rejected" in result.output
    after = entries(other)

    def fields(e) -> tuple:
        return (e.id, e.label, e.source, e.note, e.frame_ts, e.group, e.signals, e.file_name, e.sha256, e.added_at)

    assert [fields(e) for e in after] == [fields(e) for e in before]
    # items are the same too: 3 photos, the video, 6 single hashes and one group of 4
    listed = lines(run("known", "list", "--json").output)
    assert [(i["label"], i["entries"]) for i in listed] == [
        *[("flood 2014", 1)] * 3, ("sim trailer", 3), ("debunked", 4), *[("debunked", 1)] * 6
    ]
    again = tmp_path / "again.csv"
    run("known", "export", str(again))
    assert again.read_text() == exported.read_text()
    assert "0 entries imported, 16 already in the store" in run("known", "import", str(exported)).output


def test_threatexchange_style_lists_keep_every_row_and_name_each_rejected_row(data: Path, tmp_path: Path) -> None:
    hashes = pdq_hashes(10, seed=2)
    alike = tmp_path / "te.csv"  # ten PDQ rows labelled alike: ten entries, not one
    alike.write_text("pdq_hash,description,url\n" + "".join(f"{h},Syria 2013 photo,https://te.example/1\n" for h in hashes))
    result = run("known", "import", str(alike))
    assert "10 entries imported" in result.output and result.exit_code == 0
    bare = tmp_path / "bare.txt"  # one hash a line, as pdq-photo-hasher writes them (hash,quality,file)
    bare.write_text("".join(f"{h},100,img{i}.jpg\n" for i, h in enumerate(pdq_hashes(3, seed=3))))
    assert "3 entries imported" in run("known", "import", str(bare)).output
    stored = entries(data)
    assert sorted(e.signals["pdq"] for e in stored[:10]) == sorted(hashes)
    assert {e.label for e in stored[:10]} == {"Syria 2013 photo"}
    assert [e.file_name for e in stored[10:]] == ["img0.jpg", "img1.jpg", "img2.jpg"]

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "signal_type,signal,label,source,frame_ts\n"
        f"pdq,{hashes[0][:-1]}z,a,b,\n"  # line 2
        f"pdq,{hashes[0][:60]},a,b,\n"  # 3
        f"md5,{hashes[0]},a,b,\n"  # 4
        f"pdq,{hashes[1]},a,b,soon\n"  # 5
        f"pdq,,a,b,\n"  # 6
        f"pdq,{pdq_hashes(1, seed=9)[0]},kept,b,\n"  # 7
        f"pdq,{pdq_hashes(1, seed=9)[0]},kept,b,\n"  # 8: the same row again
    )
    result = run("known", "import", str(bad))
    assert result.exit_code == 1
    assert "1 entries imported, 0 already in the store, 6 rows rejected" in result.output
    for expected in (
        "line 2: the pdq hash '" + hashes[0][:-1] + "z' has a character that is not hexadecimal ('z')",
        "line 3: the pdq hash has 60 hexadecimal characters, a pdq hash has 64",
        "line 4: unknown signal type 'md5' (known: pdq, phash)",
        "line 5: frame_ts 'soon' is not a number of seconds",
        "line 6: the pdq hash is empty",
        "line 8: repeats line 7",
    ):
        assert expected in result.output
    assert "fromhex" not in result.output


def test_ten_thousand_rows_with_shared_labels_import_without_loss(data: Path, tmp_path: Path) -> None:
    hashes = pdq_hashes(10_000, seed=4)
    big = tmp_path / "big.csv"
    big.write_text(
        "signal_type,signal,label,source\n"
        + "".join(f"pdq,{h},debunked set {i % 7},https://partner.example/list\n" for i, h in enumerate(hashes))
    )
    started = time.monotonic()
    result = run("known", "import", str(big))
    assert result.exit_code == 0, result.output
    assert "10000 entries imported, 0 already in the store, 0 rows rejected" in result.output
    stored = entries(data)
    assert len(stored) == 10_000 and sorted(e.signals["pdq"] for e in stored) == sorted(hashes)
    assert time.monotonic() - started < 120  # generous: a hang or a per-row transaction storm fails it
    assert "0 entries imported, 10000 already in the store" in run("known", "import", str(big)).output


# ----------------------------------------------------------------------------- adding


def test_a_folder_add_with_a_failure_exits_1_with_a_summary(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.png").write_bytes(encode(scene(71), "PNG"))
    (folder / "broken.jpg").write_bytes(b"<html>not a picture</html>")
    (folder / "cut.mp4").write_bytes(scene_video([72])[:2000])
    result = run("known", "add", str(folder), str(tmp_path / "missing.png"))
    assert result.exit_code == 1
    assert "1 added, 0 already known, 3 failed" in result.output
    assert f"error: {folder / 'broken.jpg'}: not_an_image" in result.output
    assert f"error: {tmp_path / 'missing.png'}: no such file or folder" in result.output
    assert len(entries(data)) == 1


def test_max_frames_cap_warns(data: Path, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(scene_video([73, 74, 75, 76], seconds_each=2))
    result = run("known", "add", str(video), "--max-frames", "2")
    assert result.exit_code == 0
    assert "warning:" in result.output and "kept the first 2 frames" in result.output and "--max-frames" in result.output
    assert lines(run("known", "list", "--json").output)[0]["frames"] == 2


def test_ctrl_c_during_a_video_add_stores_nothing_of_it(data: Path, tmp_path: Path) -> None:
    first = tmp_path / "a.png"
    first.write_bytes(encode(scene(77), "PNG"))
    video = tmp_path / "long.mp4"
    video.write_bytes(scene_video(list(range(200, 240)), seconds_each=2))
    env = {**os.environ, "AFTERIMAGE_DATA": str(data), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "known", "add", str(first), str(video)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    archive = data / "archive"
    deadline = time.monotonic() + 60
    # wait until the video's frames are being archived (more files than the photo), then press Ctrl-C
    while time.monotonic() < deadline and len([p for p in archive.rglob("*.png")]) < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert f"interrupted while adding {video}: nothing of it was stored" in err
    assert "1 added, 0 already known, 0 failed" in out
    assert [e.file_name for e in entries(data)] == ["a.png"]  # the photo stays, no part of the video
    # the next run adds the video whole
    result = run("known", "add", str(first), str(video))
    assert "1 added, 1 already known, 0 failed" in result.output
    assert lines(run("known", "list", "--json").output)[1]["frames"] == 40


def test_adding_the_file_of_a_hash_only_entry_attaches_it_to_that_entry(data: Path, tmp_path: Path) -> None:
    """A partner's PDQ list names a picture; later someone adds the picture itself: it is that entry (not a
    second one), and the entry gains the file and its local features. A row with the file's SHA-256 is found
    by it, whatever its PDQ hash says."""
    from bot.hashing.decode import decode_image
    from bot.hashing.signals import PdqSignal

    photo, other = tmp_path / "flood.png", tmp_path / "fire.jpg"
    photo.write_bytes(encode(scene(91), "PNG"))
    other.write_bytes(encode(scene(92)))
    pdq = PdqSignal.compute(decode_image(photo.read_bytes()))
    other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    listing = tmp_path / "partner.csv"
    listing.write_text(
        "signal_type,signal,label,source,id,group,frame_ts,note,file_name,sha256\n"
        f"pdq,{pdq},flood photo 2014 (debunked),https://partner.example/list,p1,,,,,\n"
        f"pdq,{pdq_hashes(1)[0]},fire photo,https://partner.example/list,p2,,,,,{other_sha}\n"
    )
    assert run("known", "import", str(listing)).exit_code == 0
    [before_flood, before_fire] = entries(data)
    assert before_flood.archive_path is None and set(before_flood.signals) == {"pdq"}

    result = run("known", "add", str(photo), str(other), "--label", "a new label")
    assert result.exit_code == 0, result.output
    assert (f'already known: {photo} as p1 "flood photo 2014 (debunked)" (image): it was a hash-only entry: the file '
            "is attached to it now (archived, local features added)") in result.output
    assert f'already known: {other} as p2 "fire photo" (image): it was a hash-only entry' in result.output
    assert "0 added, 2 already known, 0 failed" in result.output
    flood, fire = entries(data)  # still two entries: no duplicate
    assert (flood.id, flood.label, flood.source) == ("p1", "flood photo 2014 (debunked)", "https://partner.example/list")
    assert flood.archive_path and flood.file_name == "flood.png" and flood.signals["pdq"] == pdq
    assert set(flood.signals) > {"pdq"}  # the local features a file brings
    assert fire.sha256 == other_sha and fire.archive_path
    listed = {i["id"]: i for i in lines(run("known", "list", "--json").output)}
    assert listed["p1"]["media"] == "image" and listed["p1"]["file_name"] == "flood.png"

    again = run("known", "add", str(photo))  # now an ordinary known file
    assert f'already known: {photo} as p1 "flood photo 2014 (debunked)" (image)\n' in again.output


def test_a_hash_only_entry_of_another_file_with_the_same_picture_keeps_what_it_has(data: Path, tmp_path: Path) -> None:
    from bot.hashing.decode import decode_image
    from bot.hashing.signals import PdqSignal

    photo = tmp_path / "flood.png"
    photo.write_bytes(encode(scene(93), "PNG"))
    pdq = PdqSignal.compute(decode_image(photo.read_bytes()))
    listing = tmp_path / "partner.csv"
    listing.write_text("signal_type,signal,label,source,id,group,frame_ts,note,file_name,sha256\n"
                       f"pdq,{pdq},flood (their copy),https://partner.example,p1,,,,flood.jpg,{'ab' * 32}\n")
    assert run("known", "import", str(listing)).exit_code == 0
    result = run("known", "add", str(photo))
    assert (f'already known: {photo} as p1 "flood (their copy)" (hashes): a hash-only entry of another file with the '
            "same picture (PDQ hash); the file was not attached") in result.output
    [entry] = entries(data)
    assert entry.archive_path is None and entry.sha256 == "ab" * 32


# ----------------------------------------------------------------------------- URLs


def _trusting_config(tmp_path: Path, server: HTTPServer) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"media:\n  trusted_hosts: ['127.0.0.1:{server.port}']\n  retries: 0\n  timeout: 5s\n")
    return config


def test_add_from_a_direct_link_and_from_a_video_page(data: Path, tmp_path: Path, httpserver: HTTPServer) -> None:
    config = _trusting_config(tmp_path, httpserver)
    photo = encode(scene(81), "PNG")
    video = scene_video([82, 83], seconds_each=2)
    httpserver.expect_request("/img/stock.png").respond_with_data(photo, content_type="image/png")
    httpserver.expect_request("/media/trailer.mp4").respond_with_data(video, content_type="video/mp4")
    page = (
        "<!doctype html><html><head><title>Gunship sim - launch trailer</title></head><body>"
        '<video controls width="320"><source src="/media/trailer.mp4" type="video/mp4"></video></body></html>'
    )
    httpserver.expect_request("/watch/trailer").respond_with_data(page, content_type="text/html")
    httpserver.expect_request("/blog").respond_with_data("<html><body>no video here</body></html>", content_type="text/html")
    base = f"http://127.0.0.1:{httpserver.port}"

    result = run("known", "add", "-c", str(config), f"{base}/img/stock.png", f"{base}/watch/trailer")
    assert result.exit_code == 0, result.output
    assert "2 added, 0 already known, 0 failed" in result.output
    photo_item, video_item = lines(run("known", "list", "--json").output)
    assert photo_item["source"] == f"{base}/img/stock.png" and photo_item["file_name"] == "stock.png"
    assert video_item["source"] == f"{base}/watch/trailer"  # the page, not the file's URL
    assert video_item["media"] == "video" and video_item["frames"] == 2
    assert video_item["label"].startswith("Gunship sim - launch trailer")  # the title yt-dlp read from the page

    failed = run("known", "add", "-c", str(config), f"{base}/blog", f"{base}/img/stock.png")
    assert failed.exit_code == 1
    assert f"error: {base}/blog: no_video:" in failed.output
    assert "1 already known" in failed.output

    # the page is read, but its video is downloaded under the policy: a host not trusted is refused
    elsewhere = page.replace('src="/media/trailer.mp4"', f'src="http://localhost:{httpserver.port}/media/trailer.mp4"')
    httpserver.expect_request("/watch/elsewhere").respond_with_data(elsewhere, content_type="text/html")
    refused = run("known", "add", "-c", str(config), f"{base}/watch/elsewhere")
    assert refused.exit_code == 1 and f"error: {base}/watch/elsewhere: not_https" in refused.output

    # without the loopback allowance the media address policy refuses the same page
    refused = run("known", "add", f"{base}/watch/trailer")
    assert refused.exit_code == 1 and "not_https" in refused.output


# ----------------------------------------------------------------------------- check


def test_check_samples_a_video_and_checks_every_file_of_a_folder(data: Path, tmp_path: Path) -> None:
    known = tmp_path / "k.png"
    known.write_bytes(encode(scene(91, hud=True, hud_seed=2), "PNG"))
    run("known", "add", str(known), "--label", "known shot")
    posted = tmp_path / "posted.mp4"  # a posted video whose second shot is the known picture, cropped
    frames = [scene(92), crop(scene(91, hud=True, hud_seed=2), 0.8)]
    posted.write_bytes(stills_video(frames))
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "copy.jpg").write_bytes(encode(caption(crop(scene(91, hud=True, hud_seed=2), 0.7)), quality=80))
    (folder / "other.jpg").write_bytes(encode(scene(93)))
    (folder / "notes.txt").write_text("not media")

    result = run("check", "--json", str(posted), str(folder))
    out = lines(result.output)
    assert [o["input"] for o in out] == [str(posted), str(folder / "copy.jpg"), str(folder / "notes.txt"), str(folder / "other.jpg")]
    assert out[0]["match"]["label"] == "known shot" and out[0]["input_frame_ts"] >= 2.0
    assert out[1]["match"]["label"] == "known shot"
    assert out[2] == {"input": str(folder / "notes.txt"), "skipped": "not an image or a video"}
    assert out[3]["match"] is None
    assert result.exit_code == 0


def test_check_url_errors_are_one_plain_sentence_with_detail_under_verbose(data: Path, tmp_path: Path, httpserver: HTTPServer) -> None:
    config = _trusting_config(tmp_path, httpserver)
    httpserver.expect_request("/x.jpg").respond_with_data(encode(scene(94)), content_type="image/jpeg")
    url = f"https://127.0.0.1:{httpserver.port}/x.jpg"  # https to a server speaking plain http
    open_store(f"sqlite:///{data / 'state.db'}").close()  # check only reads a store that exists

    result = run("check", "-c", str(config), url)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"{url}: error: tls_error: no secure (TLS) connection could be made: the server may not speak https on "
        "that port, or its certificate is not trusted"
    )
    verbose = run("check", "-c", str(config), "--verbose", url)
    assert "detail:" in verbose.output and "WRONG_VERSION_NUMBER" in verbose.output
    httpserver.expect_request("/gone.jpg").respond_with_data("gone", status=404)
    missing = run("check", "-c", str(config), "--json", f"http://127.0.0.1:{httpserver.port}/gone.jpg")
    assert lines(missing.output)[0]["error"] == "http_404: the server answered HTTP 404"


def test_a_page_whose_requests_redirect_to_a_forbidden_address_is_refused(data: Path, tmp_path: Path,
                                                                         httpserver: HTTPServer) -> None:
    """yt-dlp reads a page, follows its meta refresh, and that URL redirects to an address the policy forbids:
    every hop of every request yt-dlp makes is checked, so the forbidden one is never fetched."""
    config = _trusting_config(tmp_path, httpserver)
    base = f"http://127.0.0.1:{httpserver.port}"
    secret = f"http://localhost:{httpserver.port}/secret"  # loopback under a name the test does not trust
    httpserver.expect_request("/watch/moved").respond_with_data(
        '<html><head><meta http-equiv="refresh" content="0; url=/hop"></head><body>moved</body></html>',
        content_type="text/html")
    httpserver.expect_request("/hop").respond_with_data("", status=302, headers={"Location": secret})
    httpserver.expect_request("/secret").respond_with_data('<html><video src="/v.mp4"></video></html>', content_type="text/html")
    refused = run("known", "add", "-c", str(config), f"{base}/watch/moved")
    assert refused.exit_code == 1
    assert f"error: {base}/watch/moved: not_https: media must be fetched over https: {secret}" in refused.output
    assert "/secret" not in [r.path for r, _ in httpserver.log]
    assert "/hop" in [r.path for r, _ in httpserver.log]  # the allowed hop was read, through the policy
    assert entries(data) == []
