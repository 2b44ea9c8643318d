"""``afterimage posts``: the posts whose processing raised on every attempt (``posts failed``) and putting
them back into the work queue once the cause is fixed (``posts retry``). See :mod:`bot.store.queue` on
parking: a parked post is kept in the store, unprocessed, until it is retried."""

from __future__ import annotations

import sys

import click

from bot.commands.alerts import _store_or_exit
from bot.commands.config_cmd import CONFIG_OPTION
from bot.models import iso
from bot.redact import redact
from bot.store import open_work_queue
from bot.store.queue import POSTS


@click.group()
def posts() -> None:
    """Posts whose processing failed: list them and queue them again."""


@posts.command("failed")
@CONFIG_OPTION
def failed(config_path: str | None) -> None:
    """List the posts parked after their processing raised `pipeline.max_attempts` times, oldest first."""
    with _store_or_exit(config_path) as store:
        found = open_work_queue(store).failed(POSTS) if store is not None else []
    for f in found:
        click.echo(f"{f.item}  failed {iso(f.failed_at)}  {f.attempts} attempt(s)  {redact(f.error)}")
    click.echo(f"{len(found)} failed post(s)" + (": queue again with `afterimage posts retry ITEM` or `--all`" if found else ""), err=True)


@posts.command("retry")
@CONFIG_OPTION
@click.argument("items", nargs=-1)
@click.option("--all", "all_failed", is_flag=True, help="Queue every failed post again.")
def retry(config_path: str | None, items: tuple[str, ...], all_failed: bool) -> None:
    """Queue failed posts (ITEM as listed: platform:version:post_id) for processing again, their failures
    forgotten; a running daemon picks them up at once (exit 1 if an ITEM was not a failed post)."""
    if bool(items) == all_failed:
        raise click.UsageError("give the ITEMs of failed posts, or --all")
    missing = 0
    with _store_or_exit(config_path) as store:
        queue = open_work_queue(store) if store is not None else None
        for item in items or ([f.item for f in queue.failed(POSTS)] if queue is not None else []):
            if queue is not None and queue.retry(POSTS, item):
                click.echo(f"queued {item}")
            else:
                missing += 1
                click.echo(f"{item}: not a failed post", err=True)
    sys.exit(1 if missing else 0)
