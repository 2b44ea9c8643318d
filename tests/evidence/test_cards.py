"""The post as it looked: cards rendered from the archived versions, archived and chained with the event,
and attached to deletion-log alerts (an edit: before and after side by side)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from pydantic import SecretStr
from scenario import build
from werkzeug.wrappers import Request, Response

from bot.alerts.sender import AlertSender
from bot.archive import Archive
from bot.config import AlertsConfig
from bot.evidence.card import WIDTH
from bot.evidence.ledger import EvidenceLedger
from bot.evidence.stamper import Stamper
from scripted import T0


def _colour_near(img: Image.Image, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels are close to ``rgb`` (a thumbnail or badge of that colour is drawn)."""
    import numpy as np

    pixels = np.asarray(img.convert("RGB"), dtype=int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum())


def test_deletion_and_edit_alerts_carry_the_post_cards(store, tmp_path, httpserver):
    scenario = build(store, tmp_path)
    received: list[dict] = []

    def hook(request: Request) -> Response:
        received.append(json.loads(request.get_data()))
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    sender = AlertSender(store, Archive(scenario.archive_root),
                         AlertsConfig(targets=[SecretStr(f"json://127.0.0.1:{httpserver.port}/hook")], console=False))
    while sender.deliver_due(T0.replace(year=T0.year + 1)).sent:
        pass
    by_title = {body["title"]: body for body in received}
    deleted = next(b for t, b in by_title.items() if t.startswith("Post deleted: x/"))
    edited = next(b for t, b in by_title.items() if t.startswith("Post edited"))

    (att,) = deleted["attachments"]
    card = Image.open(io.BytesIO(base64.b64decode(att["base64"])))
    assert card.format == "PNG" and card.width == WIDTH and 300 < card.height < 1400
    assert _colour_near(card, (0xB0, 0x3A, 0x2E)) > 2000  # the archived photo of post 100 is on the card

    (att,) = edited["attachments"]
    pair = Image.open(io.BytesIO(base64.b64decode(att["base64"])))
    assert pair.width == 2 * WIDTH + 16  # before and after, side by side
    left, right = pair.crop((0, 0, WIDTH, pair.height)), pair.crop((WIDTH + 16, 0, pair.width, pair.height))
    assert _colour_near(left, (0x1F, 0x61, 0x8D)) > 2000 and _colour_near(right, (0x1F, 0x61, 0x8D)) > 2000
    assert left.tobytes() != right.tobytes()  # the texts differ


def test_cards_are_archived_and_committed_in_the_chain(store, tmp_path):
    scenario = build(store, tmp_path)
    ledger = EvidenceLedger(tmp_path / "evidence")
    archive = Archive(scenario.archive_root)
    Stamper(ledger, None, store, archive).run()
    entries = {e["kind"]: e for e in ledger.chain()}
    edit_cards = entries["edited"]["record"]["cards"]
    assert [c["version"] for c in edit_cards] == [1, 2]
    assert edit_cards[0]["label"].startswith("Before: version 1") and edit_cards[1]["label"].startswith("After: version 2")
    for c in edit_cards + entries["deleted"]["record"]["cards"]:
        assert archive.verify(c["archive_path"])
        with Image.open(io.BytesIO(archive.get(c["archive_path"]))) as im:
            assert im.width == WIDTH


@pytest.mark.redis
def test_events_are_chained_with_cards_from_a_redis_store_too(redis_url, tmp_path):
    from bot.evidence.verify import verify_all
    from bot.store import open_store

    store = open_store(redis_url)
    try:
        scenario = build(store, tmp_path)
        ledger = EvidenceLedger(tmp_path / "evidence")
        Stamper(ledger, None, store, Archive(scenario.archive_root)).run()
        assert [e["record"]["event_id"] for e in ledger.chain()] == [e.id for e in store.list_events()]
        assert all(e["record"]["cards"] for e in ledger.chain())
        assert verify_all(scenario.archive_root, ledger, None, store=store).ok
    finally:
        store.close()
