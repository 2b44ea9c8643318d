"""``afterimage known ...``: manage the known-media store (game footage, stock photos, debunked images)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bot.archive import Archive
from bot.commands.config_cmd import CONFIG_OPTION, output_in_existing_folder
from bot.config import load_config
from bot.errors import AfterimageError
from bot.known import add_paths, describe, export_csv, import_csv, iter_media_files
from bot.store import open_store
from bot.store.records import KnownKind


def _open(config_path: str | None, *, create: bool = True):  # type: ignore[no-untyped-def]
    """The store and archive; ``create=False`` for the commands that only read (no data folder is made)."""
    cfg = load_config(config_path)
    try:
        store = open_store(cfg.store_url, create=create)
    except AfterimageError as e:
        raise click.ClickException(str(e)) from None
    return store, Archive(cfg.archive_path)


@click.group()
def known() -> None:
    """Manage known media: what a posted image is checked against."""


@known.command("add")
@CONFIG_OPTION
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--label", default=None, help="Label of every added entry (default: the file name).")
@click.option("--source", default=None, help="Where the media comes from, e.g. the trailer's URL.")
@click.option("--note", default=None, help="Free text kept with the entries.")
def add(config_path: str | None, paths: tuple[str, ...], label: str | None, source: str | None, note: str | None) -> None:
    """Add image and video files (folders recursively). Videos are sampled into keyframes."""
    try:
        store, archive = _open(config_path)
    except AfterimageError as e:
        raise click.ClickException(str(e)) from None
    files = list(iter_media_files(paths))
    with store, click.progressbar(length=len(files), label="adding", file=sys.stderr) as bar:
        report = add_paths(store, archive, files, label=label, source=source, note=note, progress=lambda _: bar.update(1))
    for entry in report.added:
        ts = f" (frame at {entry.frame_ts:.1f}s)" if entry.frame_ts is not None else ""
        click.echo(f"added {entry.id}  {entry.label}{ts}")
    for path in report.duplicates:
        click.echo(f"already known: {path}")
    for path, error in report.errors:
        click.echo(f"error: {path}: {error}", err=True)
    click.echo(f"{len(report.added)} added, {len(report.duplicates)} already known, {len(report.errors)} failed")
    if report.errors and not report.added:
        sys.exit(1)


@known.command("list")
@CONFIG_OPTION
@click.option("--kind", type=click.Choice([k.value for k in KnownKind]), default=None, help="Only this kind.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=None)
def list_(config_path: str | None, kind: str | None, as_json: bool, limit: int | None) -> None:
    """List known (and seen) media."""
    store, _ = _open(config_path, create=False)
    with store:
        for entry in store.list_known(KnownKind(kind) if kind else None, limit=limit):
            d = describe(entry)
            if as_json:
                click.echo(json.dumps(d))
            else:
                extra = f"  @{d['frame_ts']:.1f}s" if d["frame_ts"] is not None else ""
                click.echo(f"{d['id']}  {d['kind']:5s}  {d['label']}{extra}  {d['source'] or ''}".rstrip())


@known.command("remove")
@CONFIG_OPTION
@click.argument("ids", nargs=-1, required=True)
def remove(config_path: str | None, ids: tuple[str, ...]) -> None:
    """Remove entries by id (the archived files stay: they are evidence)."""
    store, _ = _open(config_path)
    missing = 0
    with store:
        for known_id in ids:
            if store.remove_known(known_id):
                click.echo(f"removed {known_id}")
            else:
                click.echo(f"no such entry: {known_id}", err=True)
                missing += 1
    if missing:
        sys.exit(1)


@known.command("import")
@CONFIG_OPTION
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", default=None, help="Label for rows without one (default: the file name).")
def import_(config_path: str | None, file: str, label: str | None) -> None:
    """Import a CSV hash list (signal_type,signal,label,source; ThreatExchange-style PDQ lists too)."""
    store, _ = _open(config_path)
    with store, open(file, encoding="utf-8", newline="") as fh:
        added, problems = import_csv(store, fh, default_label=label or Path(file).name)
    for p in problems:
        click.echo(f"{file}: {p}", err=True)
    click.echo(f"{added} entries imported, {len(problems)} rows skipped")
    if problems and not added:
        sys.exit(1)


@known.command("export")
@CONFIG_OPTION
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), callback=output_in_existing_folder)
def export(config_path: str | None, file: str) -> None:
    """Export known media as a CSV hash list (PDQ as 64 hex characters, pHash as 16); '-' for stdout."""
    store, _ = _open(config_path, create=False)
    with store:
        if file == "-":
            rows = export_csv(store, sys.stdout)
        else:
            with open(file, "w", encoding="utf-8", newline="") as fh:
                rows = export_csv(store, fh)
    click.echo(f"{rows} hashes exported", err=True)
