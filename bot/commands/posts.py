"""``afterimage posts``: the posts whose processing raised, or killed its worker, on every attempt (``posts
failed``) and putting them back into the work queue once the cause is fixed (``posts retry``). See
:mod:`bot.store.queue` on parking: a parked post is kept in the store, unprocessed, until it is retried."""

from __future__ import annotations

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.parked_cmds import list_parked, retry_parked
from bot.parked import POSTS_KIND


@click.group()
def posts() -> None:
    """Posts whose processing failed: list them and queue them again."""


@posts.command("failed")
@CONFIG_OPTION
def failed(config_path: str | None) -> None:
    """List the posts parked after their processing raised, or killed its worker, `pipeline.max_attempts`
    times, oldest first."""
    list_parked(POSTS_KIND, config_path)


@posts.command("retry")
@CONFIG_OPTION
@click.argument("items", nargs=-1)
@click.option("--all", "all_failed", is_flag=True, help="Queue every failed post again.")
def retry(config_path: str | None, items: tuple[str, ...], all_failed: bool) -> None:
    """Queue failed posts (ITEM as listed: platform:version:post_id) for processing again, their failures
    forgotten; a running daemon picks them up at once (exit 1 if an ITEM was not a failed post)."""
    retry_parked(POSTS_KIND, config_path, items, all_failed)
