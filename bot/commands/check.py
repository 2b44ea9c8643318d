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
from bot.errors import AfterimageError
from bot.known import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from bot.matching.check import MAX_BYTES, check_one
from bot.matching.matcher import Matcher
from bot.media.sniff import SNIFF_BYTES, sniff
from bot.store import open_store


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
