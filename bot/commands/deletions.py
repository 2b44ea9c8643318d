"""``afterimage deletions``: the deletion log (export, list)."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from bot.commands.config_cmd import CONFIG_OPTION, output_in_existing_folder
from bot.config import load_config
from bot.errors import AfterimageError, ConfigError
from bot.export import FORMATS, ExportFilters, render
from bot.export.writers import export_to_file, manifest_path
from bot.models import parse_iso
from bot.store.records import EVENT_KINDS
from watchers import platform_names


def _iso_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise click.BadParameter(f'"{value}" is not an ISO 8601 time (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)') from None


def _open(config_path: str | None):
    from bot.store import NoStoreHere, open_store

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    try:
        return cfg, open_store(cfg.store_url, create=False)  # reading the log never creates a store
    except NoStoreHere as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    except (AfterimageError, ImportError, OSError) as e:
        click.echo(f"cannot open the store: {e}", err=True)
        sys.exit(1)


def _filters(since, until, account, platform, kinds=()) -> ExportFilters:
    return ExportFilters(since=since, until=until, account=account, platform=platform, kinds=tuple(kinds) or None)


FILTER_OPTIONS = [
    click.option("--since", callback=_iso_option, help="Only events detected at or after this UTC time (ISO 8601)."),
    click.option("--until", callback=_iso_option, help="Only events detected before this UTC time (ISO 8601)."),
    click.option("--account", default=None, help="Only this watched account (compared as its platform does: case-insensitive handles)."),
    click.option("--platform", default=None, type=click.Choice(platform_names(), case_sensitive=False),
                 help="Only this platform."),
    click.option("--kind", "kinds", multiple=True, type=click.Choice(EVENT_KINDS), help="Only these event kinds (repeatable)."),
]


def _with_filters(f):
    for option in reversed(FILTER_OPTIONS):
        f = option(f)
    return f


@click.group()
def deletions() -> None:
    """The deletion log: posts that were deleted, edited or restored, and accounts that went away."""


@deletions.command("export")
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="csv, jsonl or html.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, callback=output_in_existing_folder,
              help="File to write (plus FILE.manifest.json with its sha256). Default: standard output, no manifest.")
@click.option("--title", default=None, help="HTML report title (default: evidence.report_title).")
@click.option("--organisation", default=None, help="Organisation named on the HTML report (default: evidence.organisation).")
@_with_filters
def export(config_path, fmt, output, title, organisation, since, until, account, platform, kinds) -> None:
    """Export the deletion log. Reads the store only; never modifies it.

    An export written with -o is recorded in the evidence folder, so `afterimage verify` re-checks its manifest."""
    from bot.evidence.ledger import EvidenceLedger

    cfg, store = _open(config_path)
    filters = _filters(since, until, account, platform, kinds)
    report = {"evidence_dir": cfg.evidence_path, "title": title or cfg.evidence.report_title,
              "organisation": organisation if organisation is not None else cfg.evidence.organisation}
    try:
        if output:
            manifest = export_to_file(fmt, store, output, filters, archive_root=cfg.archive_path, **report)
            click.echo(f"{output}: {manifest['rows']} event(s), sha256 {manifest['files'][0]['sha256']}", err=True)
            click.echo(f"manifest: {manifest_path(output)}", err=True)
            try:
                EvidenceLedger(cfg.evidence_path).record_export(manifest_path(output))
            except OSError as e:  # the export is written; only `afterimage verify` will not know of it
                click.echo(f"warning: cannot record the export in {cfg.evidence_path}: {e.strerror or e}", err=True)
        else:
            text, _ = render(fmt, store, filters, archive_root=cfg.archive_path, **report)
            click.echo(text, nl=False)
    finally:
        store.close()


@deletions.command("list")
@CONFIG_OPTION
@_with_filters
def list_cmd(config_path, since, until, account, platform, kinds) -> None:
    """Print the deletion log, one event per line."""
    from bot.export.html import human_duration
    from bot.export.rows import deletion_log_rows

    _, store = _open(config_path)
    try:
        rows = deletion_log_rows(store, _filters(since, until, account, platform, kinds))
    finally:
        store.close()
    for r in rows:
        click.echo(
            f"{r['detected_at']}  {r['kind']:<17} {r['platform']}/{r['account']}  {r['post_id']}  "
            f"lifetime {human_duration(r['lifetime_seconds'])}  {r['post_url'] or ''}"
        )
    click.echo(f"{len(rows)} event(s)", err=True)
