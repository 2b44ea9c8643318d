"""``afterimage users``: the web console's local users (add, list, remove) and their API tokens."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.deletions import _open
from bot.store.review import ROLES, UserStore
from bot.users import UserError, add_user, new_token


@contextmanager
def _user_store(config_path: str | None) -> Iterator[UserStore]:
    """The configured store's users, closed afterwards; a :class:`UserError` becomes the command's error."""
    _, store = _open(config_path)
    with store:
        try:
            yield store
        except UserError as e:
            raise click.ClickException(str(e)) from None


@click.group()
def users() -> None:
    """Web console users: viewer reads, reviewer also decides cases, admin also manages known media."""


@users.command("add")
@CONFIG_OPTION
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--replace", is_flag=True, help="Change the role and password of an existing user.")
def add(config_path: str | None, name: str, role: str, password_stdin: bool, replace: bool) -> None:
    """Add a user (the password is prompted for, or read from stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _user_store(config_path) as store:
        add_user(store, name, role, password, replace_existing=replace)
    click.echo(f"user {name} ({role}) saved")


def _one_user_command(command: str) -> Callable[[Callable[..., None]], click.Command]:
    """A ``users`` subcommand acting on one user: ``--config`` and the user's NAME."""

    def register(fn: Callable[..., None]) -> click.Command:
        return users.command(command)(CONFIG_OPTION(click.argument("name")(fn)))

    return register


@_one_user_command("token")
def token(config_path: str | None, name: str) -> None:
    """Print a new API token for NAME (shown once; it replaces the user's previous token)."""
    with _user_store(config_path) as store:
        click.echo(new_token(store, name))


@users.command("list")
@CONFIG_OPTION
def list_cmd(config_path: str | None) -> None:
    """List users with their role and whether they have an API token."""
    with _user_store(config_path) as store:
        for user in store.list_users():
            has_token = "token" if user.token_hash else "no token"
            click.echo(f"{user.name}\t{user.role}\t{has_token}\tsince {user.created_at:%Y-%m-%d}")


@_one_user_command("remove")
def remove(config_path: str | None, name: str) -> None:
    """Remove a user (its sessions and API token stop working)."""
    with _user_store(config_path) as store:
        if not store.remove_user(name):
            raise click.ClickException(f"no user {name!r}")
    click.echo(f"user {name} removed")
