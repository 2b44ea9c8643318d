"""``afterimage check``: is this image (or video) a copy of known media? Works with no config (embedded
default store). Inputs are files, folders (every file in them) and URLs (downloaded like posted media)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from bot.archive import Archive
from bot.commands.config_cmd import CONFIG_OPTION
from bot.config import load_config
from bot.errors import AfterimageError, MediaError
from bot.known import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from bot.matching.matcher import Match, Matcher
from bot.media.keyframes import extract_keyframes
from bot.media.sniff import SNIFF_BYTES, sniff
from bot.store import open_store

#: largest local file ``check`` reads (URLs: ``media.max_bytes``)
MAX_BYTES = 50 * 1000**2


def _plain_error(e: MediaError) -> str:
    """One plain sentence for a download or decode failure (the technical text goes under ``--verbose``)."""
    reason = e.reason
    plain = {
        "tls_error": "no secure (TLS) connection could be made: the server may not speak https on that port, "
        "or its certificate is not trusted",
        "unavailable": "the server could not be reached (connection refused, unknown host or a server error)",
        "timeout": "the server did not answer in time",
        "not_https": "only https URLs are downloaded (http only from hosts listed in media.trusted_hosts)",
        "private_address": "the address is private or local, and downloads from it are refused "
        "(list the host in media.trusted_hosts to allow it)",
        "bad_url": "this is not a usable URL",
        "too_many_redirects": "the URL redirects too many times",
        "too_large": "the file is larger than the download limit (media.max_bytes)",
        "not_media": "the URL is not an image or a video",
        "header_too_large": "the server sent oversized headers",
    }.get(reason)
    if plain is None and reason.startswith("http_"):
        plain = f"the server answered HTTP {reason.removeprefix('http_')}"
    return plain or str(e)


def _files_of(source: str) -> Iterator[str]:
    """``source``, or every file under a folder (sorted, hidden files left out)."""
    path = Path(source)
    if not path.is_dir():
        yield source
        return
    for f in sorted(path.rglob("*")):
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts):
            yield str(f)


def _read_file(source: str) -> bytes:
    path = Path(source)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError("no such file or folder") from None


def _is_media_file(source: str) -> bool:
    """Whether a file found in a folder is worth checking: its first bytes or its name say image or video."""
    with open(source, "rb") as f:
        sniffed = sniff(f.read(SNIFF_BYTES))
    return sniffed is not None or Path(source).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def _best(matcher: Matcher, data: bytes, max_frames: int) -> tuple[list[Match], float | None]:
    """Matches of an image, or of the video's sampled frames (as a posted video is sampled): those of the
    frame with the best match, and that frame's time."""
    sniffed = sniff(data[:SNIFF_BYTES])
    if sniffed is None or sniffed.kind != "video":
        return matcher.match(data), None
    best: tuple[list[Match], float | None] = ([], None)
    for ts, frame in extract_keyframes(data, max_frames=max_frames):
        found = matcher.match(frame)
        if found and (not best[0] or _rank(found[0]) < _rank(best[0][0])):
            best = (found, ts)
    return best


def _rank(m: Match) -> tuple[int, int, int]:
    return (0 if m.tier == "match" else 1, -(m.inliers or 0), m.distance if m.distance is not None else 999)


@click.command("check")
@CONFIG_OPTION
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input line.")
@click.option("--all", "show_all", is_flag=True, help="Show every match and suggestion, not only the best.")
@click.option("--verbose", "-v", is_flag=True, help="Add the technical detail of errors.")
def check(config_path: str | None, inputs: tuple[str, ...], as_json: bool, show_all: bool, verbose: bool) -> None:
    """Check images and videos (files, folders, URLs) against known media. A video is sampled into frames as
    a posted video is. Exit 0 when all were checked, 2 if one failed."""
    try:
        cfg = load_config(config_path)
        store = open_store(cfg.store_url, create=False)  # no store: no known media to check against
    except (AfterimageError, OSError) as e:
        raise click.ClickException(str(e)) from None
    failed = 0
    fetcher = None
    with store:
        matcher = Matcher(store, Archive(cfg.archive_path), cfg.matching)
        for given in inputs:
            for source in _files_of(given):
                if source != given and not _is_media_file(source):
                    _echo({"input": source, "skipped": "not an image or a video"}, as_json)
                    continue
                if source.startswith(("http://", "https://")):
                    from bot.media.fetch import MediaFetcher

                    fetcher = fetcher or MediaFetcher(cfg.media)
                    read: Callable[[], bytes] = lambda: fetcher.fetch(source).data  # noqa: E731, B023
                else:
                    read = lambda: _read_file(source)  # noqa: E731, B023
                line = check_one(
                    matcher, source, read, show_all=show_all, verbose=verbose, max_frames=cfg.media.video_keyframes
                )
                failed += "error" in line
                _echo(line, as_json)
    if fetcher is not None:
        fetcher.close()
    if failed:
        sys.exit(2)


def check_one(
    matcher: Matcher,
    name: str,
    read: Callable[[], bytes],
    *,
    show_all: bool = False,
    verbose: bool = False,
    max_frames: int = 8,
) -> dict[str, object]:
    """The answer for one input, as ``check --json`` prints it (also served by the web console's check page
    and ``POST /api/v1/check``): ``{"input", "match"}``, plus ``matches`` with ``show_all`` and
    ``input_frame_ts`` for a video, or ``error`` (one plain sentence; the technical text as ``detail`` with
    ``verbose``)."""
    line: dict[str, object] = {"input": name}
    try:
        found, frame_ts = _best(matcher, read(), max_frames)
        line["match"] = found[0].to_json() if found else None
        if frame_ts is not None:
            line["input_frame_ts"] = frame_ts
        if show_all:
            line["matches"] = [m.to_json() for m in found]
    except MediaError as e:
        line["match"] = None
        line["error"] = f"{e.reason}: {_plain_error(e)}"
        if verbose:
            line["detail"] = str(e)
    except (AfterimageError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None)
        line["match"] = None
        line["error"] = f"{reason}: {e}" if reason else str(e)
    return line


def _echo(line: dict[str, object], as_json: bool) -> None:
    click.echo(json.dumps(line, ensure_ascii=False) if as_json else _human(line))


def _human(line: dict[str, object]) -> str:
    src = line["input"]
    if "skipped" in line:
        return f"{src}: skipped: {line['skipped']}"
    if "error" in line:
        detail = f"\n  detail: {line['detail']}" if "detail" in line else ""
        return f"{src}: error: {line['error']}{detail}"
    match = line["match"]
    if not match:
        return f"{src}: no match"
    assert isinstance(match, dict)
    how = f"{match['signal']}"
    if match.get("distance") is not None:
        how += f" distance {match['distance']}"
    if match.get("inliers") is not None:
        how += f", {match['inliers']} inliers"
    where = f" ({match['source']})" if match.get("source") else ""
    at = f" at {line['input_frame_ts']:.1f}s" if line.get("input_frame_ts") is not None else ""
    out = f"{src}{at}: {match['tier'].upper()} {match['label']}{where} [{how}] id={match['known_id']}"
    if match.get("first_seen"):
        fs = match["first_seen"]
        out += f"\n  recycled: first seen {fs.get('posted_at')} in {fs.get('platform')}/{fs.get('account')} {fs.get('url')}"
    return out
