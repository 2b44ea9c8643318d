"""``afterimage posts``: the posts whose processing raised, or killed its worker, on every attempt (``posts
failed``) and putting them back into the work queue once the cause is fixed (``posts retry``). See
:mod:`bot.store.queue` on parking: a parked post is kept in the store, unprocessed, until it is retried."""

from __future__ import annotations

import click

from bot.commands.parked_cmds import add_parked_commands
from bot.parked import POSTS_KIND


@click.group()
def posts() -> None:
    """Posts whose processing failed: list them and queue them again."""


add_parked_commands(
    posts, POSTS_KIND, list_name="failed",
    list_help="List the posts parked after their processing raised, or killed its worker, `pipeline.max_attempts` "
              "times, oldest first.",
    retry_help="Queue failed posts (ITEM as listed: platform:version:post_id) for processing again, their failures "
               "forgotten; a running daemon picks them up at once (exit 1 if an ITEM was not a failed post).",
    all_help="Queue every failed post again.")
