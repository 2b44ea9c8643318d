"""``afterimage known ...``: manage the known-media store (game footage, stock photos, debunked images)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.archive import Archive
from bot.commands.config_cmd import CONFIG_OPTION, output_in_existing_folder
from bot.config import Config, load_config
from bot.errors import AfterimageError
from bot.known import (
    DEFAULT_EVERY,
    DEFAULT_MAX_FRAMES,
    AddOptions,
    Added,
    AddReport,
    HashOnlyEntries,
    KnownItem,
    add_paths,
    add_url,
    describe,
    export_csv,
    find_item,
    import_csv,
    item_label,
    items_of,
    remove_item,
)
from bot.media.keyframes import ShotScan
from bot.media.pages import is_url
from bot.store import open_store
from bot.store.records import KnownKind

#: exit status after Ctrl-C (128 + SIGINT), as shells report it
EXIT_INTERRUPTED = 130


def _config(config_path: str | None, *, create: bool = True) -> Config:
    try:
        cfg = load_config(config_path)
        if create:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
    except (AfterimageError, OSError) as e:
        raise click.ClickException(str(e)) from None
    return cfg


def _open(config_path: str | None, cfg: Config | None = None, *, create: bool = True):  # type: ignore[no-untyped-def]
    """The store and archive; ``create=False`` for the commands that only read (no data folder is made)."""
    cfg = cfg or _config(config_path, create=create)
    try:
        return open_store(cfg.store_url, create=create), Archive(cfg.archive_path)
    except AfterimageError as e:
        raise click.ClickException(str(e)) from None


def _describe(item: KnownItem) -> str:
    """``"label" (video, 57 frames)``: how an item is named in messages."""
    what = f"video, {len(item.entries)} frames" if item.media == "video" else item.media
    if item.media != "video" and len(item.entries) > 1:
        what += f", {len(item.entries)} entries"
    return f'"{item_label(item.first)}" ({what})'


class _FrameProgress:
    """A progress bar over the decoded frames of a long video (shown once a video has many frames)."""

    SHOWN_FROM = 2000  # frames: about a minute of video at 30 fps

    def __init__(self) -> None:
        self.name = ""
        self._bar: Any = None
        self._done = 0

    def start(self, name: str) -> None:
        self.close()
        self.name = name

    def __call__(self, scan: ShotScan) -> None:
        if self._bar is None:
            if scan.total_frames < self.SHOWN_FROM:
                return
            self._bar = click.progressbar(
                length=scan.total_frames, label=f"{Path(self.name).name}: frames", file=sys.stderr, show_pos=True
            )
            self._bar.__enter__()
            self._done = 0
        self._bar.update(scan.decoded - self._done)
        self._done = scan.decoded

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.group()
def known() -> None:
    """Manage known media: what a posted image is checked against."""


@known.command("add")
@CONFIG_OPTION
@click.argument("inputs", nargs=-1, required=True)
@click.option("--label", default=None, help="Label of every added item (default: the file name, or a page's title).")
@click.option("--source", default=None, help="Where the media comes from (default: the path, or the URL given).")
@click.option("--note", default=None, help="Free text kept with the entries.")
@click.option(
    "--every", type=click.FloatRange(min=0.1), default=DEFAULT_EVERY, show_default=True, metavar="SECONDS",
    help="Videos: a frame at every shot change and at least one every SECONDS.",
)
@click.option(
    "--max-frames", type=click.IntRange(min=1), default=DEFAULT_MAX_FRAMES, show_default=True, metavar="N",
    help="Videos: keep at most N frames (a warning says when this cut a video short).",
)
def add(
    config_path: str | None, inputs: tuple[str, ...], label: str | None, source: str | None, note: str | None,
    every: float, max_frames: int,
) -> None:
    """Add image and video files, folders (recursively) and URLs: a direct image or video link, or a video
    page (a trailer on a video site), downloaded under the media address policy. A video is one item: its
    keyframes at shot changes. Exit status 1 when any input failed."""
    cfg = _config(config_path)
    store, archive = _open(config_path, cfg)
    report = AddReport()
    frames = _FrameProgress()
    current = [""]

    def started(name: str) -> None:
        current[0] = name
        frames.start(name)

    def done(outcome: Added) -> None:
        frames.close()
        report.outcomes.append(outcome)
        _echo_outcome(outcome)

    options = AddOptions(label, source, note, every, max_frames, frame_progress=frames, hash_only=HashOnlyEntries(store))
    fetcher = None
    try:
        with store:
            for given in inputs:
                if is_url(given):
                    from bot.media.fetch import MediaFetcher

                    fetcher = fetcher or MediaFetcher(cfg.media)
                    started(given)
                    done(add_url(store, archive, fetcher, given, options))
                elif not Path(given).exists():
                    done(Added(given, error="no such file or folder"))
                else:
                    add_paths(store, archive, [given], options, on_start=started, on_outcome=done)
                current[0] = ""
    except KeyboardInterrupt:
        frames.close()
        if current[0]:
            click.echo(
                f"interrupted while adding {current[0]}: nothing of it was stored (an item is stored whole or not "
                "at all); run the same command again to add it",
                err=True,
            )
        _summary(report)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if fetcher is not None:
            fetcher.close()
    _summary(report)
    if report.errors:
        sys.exit(1)


def _echo_outcome(outcome: Added) -> None:
    if outcome.item is not None:
        click.echo(f"added {outcome.item.id}  {_describe(outcome.item)}  {outcome.input}")
    if outcome.known_as is not None:
        note = f": {outcome.note}" if outcome.note else ""
        click.echo(f"already known: {outcome.input} as {outcome.known_as.id} {_describe(outcome.known_as)}{note}")
    if outcome.warning:
        click.echo(f"warning: {outcome.input}: {outcome.warning}", err=True)
    if outcome.error:
        click.echo(f"error: {outcome.input}: {outcome.error}", err=True)


def _summary(report: AddReport) -> None:
    items = sum(1 for o in report.outcomes if o.item is not None)
    click.echo(f"{items} added, {len(report.duplicates)} already known, {len(report.errors)} failed")


@known.command("list")
@CONFIG_OPTION
@click.option("--kind", type=click.Choice([k.value for k in KnownKind]), default=None, help="Only this kind.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per item and line.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many items.")
def list_(config_path: str | None, kind: str | None, as_json: bool, limit: int | None) -> None:
    """List known (and seen) media, one row per item: a video is one row with its frame count."""
    store, _ = _open(config_path, create=False)
    with store:
        items = items_of(store.iter_known(KnownKind(kind) if kind else None))
    for item in items[:limit]:
        d = item.to_json()
        if as_json:
            click.echo(json.dumps(d, ensure_ascii=False))
            continue
        frames = f"{d['frames']} frames" if d["media"] == "video" else d["media"]
        sha = (d["sha256"] or "-")[:12]
        fields = [d["id"], f"{d['kind']:5s}", f"{frames:10s}", d["added_at"][:16].replace("T", " "), d["label"], d["file_name"] or "-", sha]
        click.echo("  ".join([*fields, d["source"] or ""]).rstrip())


@known.command("show")
@CONFIG_OPTION
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True, help="The item and its entries as one JSON object.")
def show(config_path: str | None, item_id: str, as_json: bool) -> None:
    """Show an item and its entries (a video's frames with their times). ID: any of its entry ids, or a
    video's SHA-256."""
    store, _ = _open(config_path, create=False)
    with store:
        item = find_item(store, item_id)
    if item is None:
        raise click.ClickException(f"no such item: {item_id} (see `afterimage known list`)")
    entries = [describe(e) for e in item.entries]
    if as_json:
        click.echo(json.dumps({**item.to_json(), "note": item.first.note, "entry_list": entries}, ensure_ascii=False))
        return
    d = item.to_json()
    click.echo(f"{d['id']}  {_describe(item)}  {d['kind']}")
    for key in ("source", "file_name", "sha256", "added_at"):
        if d[key]:
            click.echo(f"  {key}: {d[key]}")
    if item.first.note:
        click.echo(f"  note: {item.first.note}")
    for e in entries:
        at = f"@{e['frame_ts']:.1f}s  " if e["frame_ts"] is not None else ""
        pdq = e["pdq"] or "-"
        click.echo(f"  {e['id']}  {at}pdq {pdq}  {e['archive_path'] or '(hash only)'}")


@known.command("remove")
@CONFIG_OPTION
@click.argument("ids", nargs=-1, required=True)
def remove(config_path: str | None, ids: tuple[str, ...]) -> None:
    """Remove items by id: a video goes with all its frames (the archived files stay: they are evidence)."""
    store, _ = _open(config_path)
    missing = 0
    with store:
        for known_id in ids:
            item = find_item(store, known_id)
            if item is None:
                click.echo(f"no such item: {known_id}", err=True)
                missing += 1
                continue
            removed = remove_item(store, item)
            click.echo(f"removed {item.id}  {_describe(item)}: {removed} entries")
    if missing:
        sys.exit(1)


@known.command("import")
@CONFIG_OPTION
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", default=None, help="Label for rows without one (default: the file name).")
def import_(config_path: str | None, file: str, label: str | None) -> None:
    """Import a CSV hash list: ours (`known export`), ThreatExchange-style PDQ lists (a header naming the
    hash column, or signal_type,signal,label,source rows), or a bare column of PDQ hashes. Every row is kept;
    a rejected row is named by line with the reason. Exit status 1 when a row was rejected."""
    store, _ = _open(config_path)
    with store, open(file, encoding="utf-8-sig", newline="") as fh:
        report = import_csv(store, fh, default_label=label or Path(file).name, source_name=Path(file).name)
    for p in report.problems:
        click.echo(f"{file}: {p}", err=True)
    click.echo(f"{report.added} entries imported, {report.already} already in the store, {len(report.problems)} rows rejected")
    if report.problems:
        sys.exit(1)


@known.command("export")
@CONFIG_OPTION
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), callback=output_in_existing_folder)
def export(config_path: str | None, file: str) -> None:
    """Export known media as a CSV hash list, one row per hash with the entry's id, label, source, group and
    frame time ('-' for stdout); `known import` of it gives back the same entries."""
    store, _ = _open(config_path, create=False)
    with store:
        if file == "-":
            rows = export_csv(store, sys.stdout)
        else:
            with open(file, "w", encoding="utf-8", newline="") as fh:
                rows = export_csv(store, fh)
    click.echo(f"{rows} hashes exported", err=True)
