"""A small deletion log built by the real tracker, with archived images and known media, for export tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from PIL import Image, ImageDraw

from bot.archive import Archive
from bot.config import RecheckConfig
from bot.deletions import RecheckTracker
from bot.models import PostStatus, StatusKind
from bot.store.records import KnownMedia, MediaRecord, OutboxAlert, PostMediaLink
from scripted import T0, ScriptedWatcher, make_post, minutes
from bot.store.posts import AccountPoll

TRICKY_TEXT = 'Relief convoy arrived, "as promised" <script>alert("x")</script>\nSecond line; 100% real'


def jpeg(color: str, label: str, size=(640, 480)) -> bytes:
    img = Image.new("RGB", size, color)
    d = ImageDraw.Draw(img)
    d.rectangle([40, 40, size[0] - 40, size[1] - 40], outline="white", width=8)
    d.text((60, 60), label, fill="white")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


@dataclass
class Scenario:
    archive_root: Path
    shas: dict[str, str]
    paths: dict[str, str]
    posts: dict[str, object]


def archive_media(store, archive: Archive, name: str, data: bytes, url: str) -> MediaRecord:
    f = archive.put(data, "jpg")
    return store.put_media(MediaRecord(f.sha256, f.size, "image/jpeg", f.relpath, url, first_seen=T0))


def build(store, tmp_path: Path, with_match_alert: bool = True) -> Scenario:
    archive = Archive(tmp_path / "archive")
    shas, paths = {}, {}
    p100 = make_post("100", account="MinistryOfInfo", text=TRICKY_TEXT, media=("m100",))
    p101 = make_post("101", account="MinistryOfInfo", text="Minister visits the flooded area", media=("m101",),
                     created_at=T0 + minutes(1))
    p200 = make_post("200", account="PressOffice", text="Statement on the border incident", media=(),
                     created_at=T0 + minutes(3))
    p300 = make_post("300", platform="mastodon", account="gov@social.example", text="Footage from the front line",
                     media=("m300",), created_at=T0 + minutes(2))
    posts = {"100": p100, "101": p101, "200": p200, "300": p300}

    # deleted_every=0: a deleted post keeps the full schedule, so post 300's restore shows within the 3 hours
    checks = RecheckConfig(deleted_every=0)
    trackers = RecheckTracker(store, {"x": checks, "mastodon": checks})
    for p in posts.values():
        store.record_poll(AccountPoll(p.platform, p.account, [p], None, at=p.created_at + timedelta(seconds=40)))
        trackers.schedule_new(p, p.created_at + timedelta(seconds=40))

    for name, color, post in (("img100", "#b03a2e", p100), ("img101", "#1f618d", p101), ("img300", "#196f3d", p300)):
        rec = archive_media(store, archive, name, jpeg(color, name), post.media[0].url)
        shas[name], paths[name] = rec.sha256, rec.archive_path
        store.link_post_media(PostMediaLink(post.platform, post.post_id, 0, post.media[0].url, rec.sha256))
        store.mark_processed(post.platform, post.post_id, 1)

    # a known image that is an exact copy of post 100's photo (a stock photo)
    store.add_known(KnownMedia(label="Stock photo, 2019 flood (AP)", signals={"pdq": "0" * 64}, sha256=shas["img100"],
                               archive_path=paths["img100"], source="https://example.org/ap-2019"))
    # a known frame of a video game that post 300's photo matched perceptually
    game = archive_media(store, archive, "game", jpeg("#7d3c98", "game frame"), "https://example.org/game.jpg")
    known_game = store.add_known(KnownMedia(label="Arma 3 gameplay frame", signals={"pdq": "1" * 64}, sha256=game.sha256,
                                            archive_path=game.archive_path, source="https://example.org/arma3"))
    shas["game"], paths["game"] = game.sha256, game.archive_path
    if with_match_alert:
        store.enqueue_alert(OutboxAlert(
            key=f"match:mastodon:300:{shas['img300']}:{known_game.id}", kind="match",
            payload={"platform": "mastodon", "post_id": "300", "media_sha256": shas["img300"],
                     "known_id": known_game.id, "label": known_game.label, "signal": "pdq", "distance": 18},
            created_at=T0 + minutes(3)))

    edited = make_post("101", account="MinistryOfInfo", text="Minister visits the flooded area (photo corrected)",
                       media=("m101", "m101b"), created_at=T0 + minutes(1))
    wx = ScriptedWatcher({
        "100": [PostStatus.alive(p100), PostStatus.alive(p100), PostStatus.deleted()],
        "101": [PostStatus.alive(p101), PostStatus.alive(edited)],
        "200": [PostStatus.alive(p200), PostStatus.of(StatusKind.AUTHOR_SUSPENDED, "User has been suspended.")],
    })
    wm = ScriptedWatcher({"300": [PostStatus.alive(p300), PostStatus.deleted(), PostStatus.deleted(),
                                  PostStatus.deleted(), PostStatus.alive(p300)]})
    until = T0 + timedelta(hours=3)
    for platform, w in (("x", wx), ("mastodon", wm)):
        while True:
            due = store.due_rechecks(platform, until, limit=1)
            if not due:
                break
            trackers.run(platform, w, due[0].due_at)
    return Scenario(tmp_path / "archive", shas, paths, posts)
