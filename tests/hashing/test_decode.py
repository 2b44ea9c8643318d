"""Hostile and ordinary inputs to the safe decoder: a typed error or an upright, small RGB image."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from bot.errors import MediaError
from bot.hashing.decode import WORK_SIDE, decode_image
from tests.images import encode, scene


def reason(data: bytes, **kw: object) -> str:
    with pytest.raises(MediaError) as e:
        decode_image(data, **kw)
    return e.value.reason


def test_empty_html_svg_and_video_are_not_images() -> None:
    assert reason(b"") == "empty"
    assert reason(b"<!DOCTYPE html><html><body>404</body></html>") == "not_an_image"
    assert reason(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>') == "not_an_image"
    assert reason(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64) == "not_an_image"


def test_truncated_jpeg_is_a_typed_error() -> None:
    data = encode(scene(1), quality=90)
    assert reason(data[: len(data) // 2]) == "truncated"


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")  # tiny file, 144 Mpx
    t = time.perf_counter()
    assert reason(buf.getvalue()) == "decompression_bomb"
    assert time.perf_counter() - t < 1.0
    assert reason(encode(scene(1)), max_pixels=100_000) == "decompression_bomb"


def test_large_jpeg_is_decoded_reduced_and_upright() -> None:
    big = scene(2, width=4000, height=3000)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    data = encode(big, quality=85, exif=exif.tobytes())
    img = decode_image(data)
    assert img.mode == "RGB"
    assert WORK_SIDE * 0.75 <= max(img.size) <= WORK_SIDE  # DCT-scaled, never decoded at 12 MP
    assert img.height > img.width  # EXIF orientation applied


def test_gif_and_webp_give_their_first_frame() -> None:
    frames = [scene(3).resize((200, 120)), scene(4).resize((200, 120))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert decode_image(buf.getvalue()).size == (200, 120)
    assert decode_image(encode(frames[0], "WEBP")).size == (200, 120)
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 0))
    assert decode_image(encode_png(rgba)).getpixel((0, 0)) == (255, 255, 255)


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
