"""The one shape of the commands that list and retry parked work (``afterimage posts failed|retry``,
``afterimage alerts parked|retry``): :func:`add_parked_commands` declares both commands of a group for its
:class:`bot.parked.ParkedKind`; each group gives only its command name and help texts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.daemon_cmds import load_or_exit
from bot.errors import StoreError
from bot.parked import ParkedKind
from bot.store import StateStore


@contextmanager
def store_or_exit(config_path: str | None) -> Iterator[StateStore | None]:
    """The configured store (exit 2 when it cannot be opened, like ``afterimage status``), or None when
    there is none yet: nothing can be parked there, and none is created just to say so."""
    from bot.store import NoStoreHere, open_store

    cfg = load_or_exit(config_path)
    try:
        store = open_store(cfg.store_url, create=False)
    except NoStoreHere as e:
        click.echo(str(e), err=True)
        yield None
        return
    except StoreError as e:
        click.echo(f"cannot open the state store: {e}", err=True)
        sys.exit(2)
    with store:
        yield store


def list_parked(kind: ParkedKind, config_path: str | None) -> None:
    """Print the parked items of ``kind``, oldest first, one a line; the count (and how to retry) on stderr."""
    with store_or_exit(config_path) as store:
        found = kind.list_items(store) if store is not None else []
    for item in found:
        click.echo(item.line())
    hint = f": {kind.verb} with `afterimage {kind.group} retry {kind.key_name}` or `--all`" if found else ""
    click.echo(f"{len(found)} {kind.noun}(s){hint}", err=True)


def retry_parked(kind: ParkedKind, config_path: str | None, keys: tuple[str, ...], every: bool) -> None:
    """Put the parked items ``keys`` (or ``every`` one) of ``kind`` back; exit 1 if a key was not parked."""
    if bool(keys) == every:
        raise click.UsageError(f"give the {kind.key_name}s of {kind.noun}s, or --all")
    missing = 0
    with store_or_exit(config_path) as store:
        for key in keys or ([item.key for item in kind.list_items(store)] if store is not None else []):
            if store is not None and kind.retry(store, key):
                click.echo(f"{kind.done} {kind.show_key(key)}")
            else:
                missing += 1
                click.echo(f"{kind.show_key(key)}: not a {kind.noun}", err=True)
    sys.exit(1 if missing else 0)


def add_parked_commands(group: click.Group, kind: ParkedKind, *, list_name: str, list_help: str, retry_help: str,
                        all_help: str) -> None:
    """Declare ``<group> <list_name>`` (list the parked items of ``kind``) and ``<group> retry KEY... | --all``."""

    @group.command(list_name, help=list_help)
    @CONFIG_OPTION
    def list_command(config_path: str | None) -> None:
        list_parked(kind, config_path)

    @group.command("retry", help=retry_help)
    @CONFIG_OPTION
    @click.argument("keys", nargs=-1, metavar=f"[{kind.key_name}]...")
    @click.option("--all", "every", is_flag=True, help=all_help)
    def retry_command(config_path: str | None, keys: tuple[str, ...], every: bool) -> None:
        retry_parked(kind, config_path, keys, every)
