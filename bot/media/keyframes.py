"""Sample still frames from a video (or an animated GIF) for matching, with PyAV.

:func:`extract_keyframes` returns up to ``max_frames`` ``(seconds, PIL.Image)`` pairs spread across the video,
at least ``min_interval`` seconds apart, in time order. Timestamps are seconds from the start of the video
stream (what a player shows).

How frames are chosen (two passes, so memory holds only the returned frames):

1. The file is demuxed without decoding: the presentation times of every packet and of keyframe packets.
2. If the keyframes, thinned to ``min_interval``, give at least half the frames the video could give
   (``min(max_frames, duration / min_interval + 1)``), keyframes are used and only they are decoded
   (``skip_frame = "NONKEY"``): cheap, and keyframes carry no compression artifacts. Otherwise (a video with
   few keyframes, and every animated GIF, where only the first frame is a keyframe) all frames are candidates,
   and the file is decoded sequentially until the last chosen frame.
3. Among the candidates, ``max_frames`` are chosen close to evenly spaced times between the first and last.

Animated GIFs are handled like videos (frame times come from the GIF's frame delays); a still GIF gives one
frame at 0.0. Still images (JPEG, PNG, WebP) and anything that is not MP4/MOV (fragmented too), WebM/Matroska,
MPEG-TS or GIF are refused as ``not_video``: the demuxer is chosen from the magic bytes, never probed, so
FFmpeg's playlist and network-capable demuxers (HLS, concat, ...) can never be reached from untrusted bytes.
(An HLS video is turned into one MPEG-TS or MP4 file by :mod:`bot.media.hls` before it gets here.)

Safety limits (:class:`KeyframeLimits`): frame size (``too_large``), duration scanned, packets demuxed, frames
decoded and wall-clock time; when a scan limit is reached the frames found so far are used (a very long video
yields frames from its beginning), never an unbounded scan. Returned frames are downscaled to ``max_side``
pixels on their longer side (keeps memory bounded: 64 frames of 4K video would be 1.6 GB) and rotated upright
when the stream carries a display rotation.

Errors are :class:`~bot.errors.MediaError` with reason ``not_video`` (not a supported video container, or no
video stream), ``corrupt_video`` (a video container that cannot be read or decoded) or ``too_large``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image

from bot.errors import MediaError
from bot.media.sniff import GIF, MOV, MP4, MPEGTS, SNIFF_BYTES, WEBM, sniff

log = logging.getLogger(__name__)

# FFmpeg demuxer for each supported sniffed type (forced: no probing of untrusted input)
_DEMUXERS = {MP4: "mov", MOV: "mov", WEBM: "matroska", GIF: "gif", MPEGTS: "mpegts"}


@dataclass(frozen=True)
class KeyframeLimits:
    """Bounds on the work and memory one call may use."""

    #: refuse frames wider or higher than this (``too_large``)
    max_width: int = 8192
    max_height: int = 8192
    #: refuse frames with more pixels than this (a 8192x8192 frame is 64 Mpx; 4K is 8.3 Mpx)
    max_pixels: int = 36_000_000
    #: only this many seconds from the start are scanned
    max_duration: float = 3 * 3600.0
    #: packets read in the demux pass
    max_packets: int = 500_000
    #: frames decoded in the decode pass
    max_decoded_frames: int = 20_000
    #: wall-clock budget for the decode pass, seconds (frames found so far are returned)
    max_seconds: float = 60.0


DEFAULT_LIMITS = KeyframeLimits()


def extract_keyframes(
    source: str | Path | bytes,
    max_frames: int = 64,
    min_interval: float = 1.0,
    *,
    max_side: int | None = 1280,
    limits: KeyframeLimits = DEFAULT_LIMITS,
) -> list[tuple[float, Image.Image]]:
    """Up to ``max_frames`` ``(seconds, RGB image)`` pairs spread across the video, ``min_interval`` apart.

    ``source`` is a file path or the file's bytes. ``max_side`` downscales frames whose longer side is larger
    (None keeps the decoded size). See the module documentation for the choice of frames and the limits.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    if min_interval < 0:
        raise ValueError("min_interval must not be negative")
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    demuxer, time_base, all_pts, key_pts = _index(source, limits)

    origin = all_pts[0]
    duration = float((all_pts[-1] - origin) * time_base)
    ideal = min(max_frames, len(all_pts))
    if min_interval > 0:
        ideal = min(ideal, int(duration / min_interval) + 1)
    key_candidates = _thin(key_pts, time_base, min_interval)
    use_keyframes = len(key_candidates) * 2 >= ideal
    candidates = key_candidates if use_keyframes else _thin(all_pts, time_base, min_interval)
    chosen = _spread(candidates, max_frames)

    frames = _decode(source, demuxer, chosen, use_keyframes, origin, time_base, max_side, limits)
    if not frames and use_keyframes:
        # some decoders drop keyframes the demuxer flagged (e.g. open-GOP recovery points): decode everything
        chosen = _spread(_thin(all_pts, time_base, min_interval), max_frames)
        frames = _decode(source, demuxer, chosen, False, origin, time_base, max_side, limits)
    if not frames:
        raise MediaError("corrupt_video", "no frame of the video could be decoded")
    return frames


# ----------------------------------------------------------------------------- shot changes

#: mean absolute difference (0..1) of small colour thumbnails of consecutive frames above which the picture
#: cut to a new shot (different procedural scenes differ by 0.17 or more, re-encoding noise by under 0.02)
SHOT_CUT = 0.10
#: the same difference measured against the last frame kept: lighting or content that has changed this much
#: within a shot is new content
SHOT_DRIFT = 0.25
#: a camera move (phase correlation of grey thumbnails against the last frame kept) that has shifted the picture
#: by this share of its width or height shows new content: a crop of it may not overlap the last frame kept
#: enough to be found. (The correlation's peak height is not used: it falls with re-encoding detail alone.)
SHOT_DRIFT_SHIFT = 0.2
#: thumbnails flatter than this (grey levels' standard deviation: black, fades) have no position to track
_FLAT = 4.0
#: no two frames closer than this (seconds): flashes and strobes do not flood the store
SHOT_MIN_GAP = 0.25
_THUMB = (48, 27)
_GREY = (64, 36)

#: limits for a person's own file (``known add``): long videos are expected, so time and frame budgets are
#: wide; frame size and duration limits stay
WIDE_LIMITS = KeyframeLimits(max_packets=2_000_000, max_decoded_frames=1_000_000, max_seconds=3600.0)


@dataclass
class ShotScan:
    """What :func:`iter_shot_frames` saw, filled in while it runs: for progress and for the cap warning."""

    #: frames in the video stream (from the demux pass) and frames decoded so far
    total_frames: int = 0
    decoded: int = 0
    duration: float = 0.0
    kept: int = 0
    #: time (seconds) where ``max_frames`` stopped the scan, None when the whole video was read
    capped_at: float | None = None


def iter_shot_frames(
    source: str | Path | bytes,
    *,
    every: float = 10.0,
    max_frames: int = 1000,
    scan: ShotScan | None = None,
    progress: Callable[[ShotScan], None] | None = None,
    max_side: int | None = 1280,
    limits: KeyframeLimits = WIDE_LIMITS,
) -> Iterator[tuple[float, Image.Image]]:
    """``(seconds, RGB image)`` at every shot change of the video, plus one at least every ``every`` seconds.

    Why not evenly spaced frames: a trailer cuts every two or three seconds, and a crop of any of its shots
    may be posted; a frame every N seconds misses short shots and wastes frames on long static ones. Every
    frame is decoded (a cut can fall on any frame) and compared, as a small grey thumbnail, with the last
    frame kept: a mean difference over :data:`SHOT_CHANGE` is a new shot (a slow pan counts once it has moved
    far enough). Frames come out as they are found, so memory holds one frame at a time.

    Stops after ``max_frames`` frames, recording where in ``scan.capped_at``. ``progress`` is called with
    ``scan`` every few dozen decoded frames. Errors as for :func:`extract_keyframes`.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    if every <= 0:
        raise ValueError("every must be positive")
    scan = scan if scan is not None else ShotScan()
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    demuxer, time_base, all_pts, _ = _index(source, limits)
    origin, last_pts = all_pts[0], all_pts[-1]
    scan.total_frames, scan.duration = len(all_pts), float((last_pts - origin) * time_base)

    deadline = time.monotonic() + limits.max_seconds
    kept_thumb: Any = None
    kept_grey: Any = None
    prev_thumb: Any = None
    window = cv2.createHanningWindow(_GREY, cv2.CV_32F)
    kept_ts = -1e9
    cut_pending = False  # a cut seen within SHOT_MIN_GAP of the last kept frame: keep the next allowed one
    with _open(source, demuxer) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    scan.decoded += 1
                    if progress is not None and scan.decoded % 50 == 0:
                        progress(scan)
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if pts is None or pts > last_pts:
                        continue
                    ts = float((pts - origin) * time_base)
                    if scan.decoded >= limits.max_decoded_frames or time.monotonic() > deadline:
                        log.info("keyframes: shot scan stopped after %d frames", scan.decoded)
                        scan.capped_at = ts
                        return
                    thumb = frame.reformat(width=_THUMB[0], height=_THUMB[1], format="rgb24").to_ndarray()
                    thumb = thumb.astype(np.int16)
                    cut_pending = cut_pending or prev_thumb is None or _difference(thumb, prev_thumb) > SHOT_CUT
                    prev_thumb = thumb
                    if ts - kept_ts < SHOT_MIN_GAP:
                        continue
                    grey = frame.reformat(width=_GREY[0], height=_GREY[1], format="gray").to_ndarray().astype(np.float32)
                    drifted = (
                        kept_thumb is None
                        or _difference(thumb, kept_thumb) > SHOT_DRIFT
                        or _moved(kept_grey, grey, window)
                    )
                    if not (cut_pending or drifted or ts - kept_ts >= every - 1e-9):
                        continue
                    if scan.kept >= max_frames:
                        scan.capped_at = ts
                        return
                    _check_size(frame.width, frame.height, limits)
                    kept_thumb, kept_grey, kept_ts, cut_pending = thumb, grey, ts, False
                    scan.kept += 1
                    yield ts, _to_image(frame, max_side)
        except av.error.FFmpegError as e:
            if not scan.kept:
                raise MediaError("corrupt_video", f"cannot decode the video: {_ffmpeg_message(e)}") from None
            log.info("keyframes: decode error after %d frames, keeping %d: %s", scan.decoded, scan.kept, _ffmpeg_message(e))
    if progress is not None:
        progress(scan)
    if not scan.kept:
        raise MediaError("corrupt_video", "no frame of the video could be decoded")


def _moved(kept: Any, grey: Any, window: Any) -> bool:
    """Whether the camera has moved far from the frame kept (see :data:`SHOT_DRIFT_SHIFT`)."""
    if kept is None or kept.std() < _FLAT or grey.std() < _FLAT:
        return False
    (dx, dy), _peak = cv2.phaseCorrelate(kept.copy(), grey.copy(), window)  # it windows its inputs in place
    return abs(dx) > SHOT_DRIFT_SHIFT * _GREY[0] or abs(dy) > SHOT_DRIFT_SHIFT * _GREY[1]


def _difference(a: Any, b: Any) -> float:
    """Mean absolute difference of two thumbnails, 0 (same) to 1."""
    return float(np.abs(a - b).mean()) / 255.0


# ----------------------------------------------------------------------------- opening


def _head(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source[:SNIFF_BYTES]
    try:
        with open(source, "rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError as e:
        raise MediaError("not_video", f"cannot read {source}: {e.strerror or e}") from None


def _demuxer_for(source: str | Path | bytes) -> str:
    sniffed = sniff(_head(source))
    demuxer = _DEMUXERS.get(sniffed) if sniffed else None
    if demuxer is None:
        what = f"a {sniffed.ext} image" if sniffed else "not a supported video (MP4, MOV, WebM, MPEG-TS, GIF)"
        raise MediaError("not_video", f"cannot extract frames: {what}")
    return demuxer


@contextmanager
def _open(source: str | Path | bytes, demuxer: str) -> Iterator[Any]:
    # a path is opened by Python, never handed to FFmpeg as a string: FFmpeg would read "concat:...",
    # "subfile,...:" or "http://..." as protocols
    try:
        file: Any = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as e:
        raise MediaError("not_video", f"cannot read {source}: {e.strerror or e}") from None
    try:
        container = av.open(
            file,
            format=demuxer,
            metadata_errors="replace",
            options={"probesize": str(5 * 1024 * 1024), "analyzeduration": str(5_000_000)},
        )
    except av.error.FFmpegError as e:
        file.close()
        raise MediaError("corrupt_video", f"cannot open the video: {_ffmpeg_message(e)}") from None
    except (OSError, ValueError) as e:
        file.close()
        raise MediaError("corrupt_video", f"cannot open the video: {e}") from None
    try:
        yield container
    finally:
        container.close()
        file.close()


def _index(source: str | Path | bytes, limits: KeyframeLimits) -> tuple[str, Fraction, list[int], list[int]]:
    """The demuxer, time base and presentation times (all frames, keyframes) of a video: the demux pass."""
    demuxer = _demuxer_for(source)
    with _open(source, demuxer) as container:
        stream = _video_stream(container)
        _check_size(stream.codec_context.width, stream.codec_context.height, limits)
        time_base = stream.time_base or Fraction(1, 90000)
        all_pts, key_pts = _scan(container, stream, time_base, limits)
    if not all_pts:
        raise MediaError("corrupt_video", "the video stream holds no frames")
    return demuxer, time_base, all_pts, key_pts


def _ffmpeg_message(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        raise MediaError("not_video", "the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name is None:
        raise MediaError("corrupt_video", "the video stream has no known codec")
    return stream


def _check_size(width: int, height: int, limits: KeyframeLimits) -> None:
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise MediaError(
            "too_large",
            f"video frames are {width}x{height}, over the limit of {limits.max_width}x{limits.max_height} "
            f"and {limits.max_pixels} pixels",
        )


# ----------------------------------------------------------------------------- choosing


def _scan(container: Any, stream: Any, time_base: Fraction, limits: KeyframeLimits) -> tuple[list[int], list[int]]:
    """Presentation times (in ``time_base`` units) of all frames and of keyframes, sorted, within the limits."""
    all_pts: list[int] = []
    key_pts: list[int] = []
    max_ticks = int(limits.max_duration / time_base) if time_base else None
    first: int | None = None
    packets = 0
    try:
        for packet in container.demux(stream):
            packets += 1
            if packets > limits.max_packets:
                log.info("keyframes: stopped scanning after %d packets", limits.max_packets)
                break
            if packet.size == 0 or packet.pts is None:
                continue
            if first is None:
                first = packet.pts
            if max_ticks is not None and packet.pts - first > max_ticks:
                log.info("keyframes: stopped scanning at %.0f s", limits.max_duration)
                break
            all_pts.append(packet.pts)
            if packet.is_keyframe:
                key_pts.append(packet.pts)
    except av.error.FFmpegError as e:
        if not all_pts:
            raise MediaError("corrupt_video", f"cannot read the video: {_ffmpeg_message(e)}") from None
        log.info("keyframes: read error after %d packets, using what was read: %s", packets, _ffmpeg_message(e))
    return sorted(set(all_pts)), sorted(set(key_pts))


def _thin(pts: list[int], time_base: Fraction, min_interval: float) -> list[int]:
    """``pts`` (sorted) without those closer than ``min_interval`` seconds to the previous kept one."""
    kept: list[int] = []
    for p in pts:
        if not kept or float((p - kept[-1]) * time_base) >= min_interval - 1e-9:
            kept.append(p)
    return kept


def _spread(candidates: list[int], count: int) -> list[int]:
    """``count`` of the sorted ``candidates`` closest to evenly spaced times from the first to the last."""
    n = len(candidates)
    if n <= count:
        return list(candidates)
    if count == 1:
        return [candidates[0]]
    first, last = candidates[0], candidates[-1]
    chosen: list[int] = []
    j = 0
    for i in range(count):
        target = first + (last - first) * i / (count - 1)
        lo = j
        hi = n - (count - i)  # leave one candidate for each remaining target
        best = lo
        for k in range(lo, hi + 1):
            if abs(candidates[k] - target) < abs(candidates[best] - target):
                best = k
            elif candidates[k] > target:
                break
        chosen.append(candidates[best])
        j = best + 1
    return chosen


# ----------------------------------------------------------------------------- decoding


def _decode(
    source: str | Path | bytes,
    demuxer: str,
    chosen: list[int],
    keyframes_only: bool,
    origin: int,
    time_base: Fraction,
    max_side: int | None,
    limits: KeyframeLimits,
) -> list[tuple[float, Image.Image]]:
    """Decode sequentially and keep, for each chosen time, the first frame at or after it."""
    if not chosen:
        return []
    out: list[tuple[float, Image.Image]] = []
    deadline = time.monotonic() + limits.max_seconds
    decoded = 0
    next_idx = 0
    with _open(source, demuxer) as container:
        stream = _video_stream(container)
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    decoded += 1
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if pts is not None and pts >= chosen[next_idx]:
                        _check_size(frame.width, frame.height, limits)
                        out.append((float((pts - origin) * time_base), _to_image(frame, max_side)))
                        while next_idx < len(chosen) and chosen[next_idx] <= pts:
                            next_idx += 1
                    if next_idx >= len(chosen):
                        return out
                    if decoded >= limits.max_decoded_frames:
                        log.info("keyframes: stopped after decoding %d frames", decoded)
                        return out
                    if time.monotonic() > deadline:
                        log.info("keyframes: stopped after %.0f s of decoding", limits.max_seconds)
                        return out
        except av.error.FFmpegError as e:
            if not out:
                raise MediaError("corrupt_video", f"cannot decode the video: {_ffmpeg_message(e)}") from None
            log.info("keyframes: decode error after %d frames, keeping %d: %s", decoded, len(out), _ffmpeg_message(e))
    return out


def _to_image(frame: Any, max_side: int | None) -> Image.Image:
    width, height = frame.width, frame.height
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = frame.to_image(width=width, height=height)
    else:
        image = frame.to_image()
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 360:
        # FFmpeg's display matrix angle is counter-clockwise; PIL rotates counter-clockwise too
        image = image.rotate(rotation, expand=True)
    return image
