"""Helpers shared by the alert tests (imported as a plain module: pytest puts this folder on sys.path)."""

from __future__ import annotations

import base64
import io
import random
from datetime import datetime, timezone
from typing import Any

from PIL import Image
from pydantic import SecretStr

from bot.alerts.sender import AlertSender
from bot.config import AlertsConfig

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
RED = (220, 20, 20)
BLUE = (20, 40, 220)


def png_bytes(size: tuple[int, int], color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def alerts_config(*urls: str, console: bool = False, max_backoff: float = 60.0) -> AlertsConfig:
    return AlertsConfig(targets=[SecretStr(u) for u in urls], console=console, max_backoff=max_backoff)


def make_sender(store, archive, *urls: str, console: bool = False, **kw: Any) -> AlertSender:
    kw.setdefault("rng", random.Random(1))
    kw.setdefault("timeout", 5.0)
    return AlertSender(store, archive, alerts_config(*urls, console=console), **kw)


def decode_attachment(body: dict[str, Any], mimetype: str = "image/jpeg") -> Image.Image:
    (att,) = body["attachments"]
    assert att["mimetype"] == mimetype
    return Image.open(io.BytesIO(base64.b64decode(att["base64"])))
