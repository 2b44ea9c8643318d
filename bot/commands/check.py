"""``afterimage check``: is this image a copy of known media? Works with no config (embedded default store)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bot.archive import Archive
from bot.commands.config_cmd import CONFIG_OPTION
from bot.config import load_config
from bot.errors import AfterimageError
from bot.matching.check import MAX_BYTES, check_one
from bot.matching.matcher import Matcher
from bot.store import open_store



def _read(source: str, timeout: float) -> bytes:
    """The bytes of a local file or an http(s) URL (size-limited)."""
    if source.startswith(("http://", "https://")):
        import requests

        with requests.get(source, timeout=timeout, stream=True) as resp:
            resp.raise_for_status()
            data = bytearray()
            for chunk in resp.iter_content(65536):
                data.extend(chunk)
                if len(data) > MAX_BYTES:
                    raise ValueError(f"larger than {MAX_BYTES} bytes")
            return bytes(data)
    path = Path(source)
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return path.read_bytes()


@click.command("check")
@CONFIG_OPTION
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input line.")
@click.option("--all", "show_all", is_flag=True, help="Show every match and suggestion, not only the best.")
def check(config_path: str | None, inputs: tuple[str, ...], as_json: bool, show_all: bool) -> None:
    """Check images (files or URLs) against known media. Exit 0 when all were checked, 2 if one failed."""
    try:
        cfg = load_config(config_path)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.store_url)
    except (AfterimageError, OSError) as e:
        raise click.ClickException(str(e)) from None
    failed = 0
    with store:
        matcher = Matcher(store, Archive(cfg.archive_path), cfg.matching)
        for source in inputs:
            line = check_one(matcher, source, lambda: _read(source, cfg.media.timeout), show_all=show_all)
            failed += "error" in line
            if as_json:
                click.echo(json.dumps(line, ensure_ascii=False))
            else:
                click.echo(_human(line))
    if failed:
        sys.exit(2)


def _human(line: dict[str, object]) -> str:
    src = line["input"]
    if "error" in line:
        return f"{src}: error: {line['error']}"
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
    out = f"{src}: {match['tier'].upper()} {match['label']}{where} [{how}] id={match['known_id']}"
    if match.get("first_seen"):
        fs = match["first_seen"]
        out += f"\n  recycled: first seen {fs.get('posted_at')} in {fs.get('platform')}/{fs.get('account')} {fs.get('url')}"
    return out
