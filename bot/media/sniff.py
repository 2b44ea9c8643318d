"""Media type sniffing from magic bytes: the only thing that decides what a downloaded file is.

Declared content types and file names come from untrusted servers and payloads; the first bytes of the file
do not lie about which decoder will read it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: an MPEG transport stream is a sequence of packets of this size, each starting with the sync byte
TS_PACKET = 188
TS_SYNC = 0x47
#: bytes needed by :func:`sniff` to recognize every supported type (MPEG-TS: the sync bytes of three packets)
SNIFF_BYTES = 3 * TS_PACKET


@dataclass(frozen=True)
class SniffedType:
    content_type: str
    ext: str  # jpg, png, gif, webp, mp4, webm, mov, ts (and m3u8, m4s for bot.media.hls)
    kind: str  # "image" | "video" (and "playlist", "segment" for bot.media.hls)


JPEG = SniffedType("image/jpeg", "jpg", "image")
PNG = SniffedType("image/png", "png", "image")
GIF = SniffedType("image/gif", "gif", "image")
WEBP = SniffedType("image/webp", "webp", "image")
MP4 = SniffedType("video/mp4", "mp4", "video")
MOV = SniffedType("video/quicktime", "mov", "video")
WEBM = SniffedType("video/webm", "webm", "video")
MPEGTS = SniffedType("video/mp2t", "ts", "video")

# ISO base media major brands that are QuickTime rather than MP4
_QUICKTIME_BRANDS = {b"qt  "}


def sniff(head: bytes) -> SniffedType | None:
    """The media type of a file starting with ``head``, or None when it is none of the supported ones.

    Supported: JPEG, PNG, GIF (87a/89a), WebP (RIFF....WEBP), MP4/MOV (an ``ftyp`` box first, which a
    fragmented MP4 has too), WebM/Matroska (EBML header; reported as webm) and MPEG-TS (the sync byte at the
    start of the first three 188-byte packets: one 0x47 alone is too common a first byte to mean anything;
    what HLS segments joined together give).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if len(head) >= 12 and head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        if size < 8 + 4:  # an ftyp box holds at least the major brand
            return None
        return MOV if head[8:12] in _QUICKTIME_BRANDS else MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM
    if len(head) > 2 * TS_PACKET and all(head[i * TS_PACKET] == TS_SYNC for i in range(3)):
        return MPEGTS
    return None
