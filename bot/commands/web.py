"""``afterimage web``: the review console and JSON API (see :mod:`bot.web`), served by waitress."""

from __future__ import annotations

import logging

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.deletions import _open


@click.command("web")
@CONFIG_OPTION
@click.option("--listen", default=None, help="host:port (default: web.listen, 127.0.0.1:8080).")
@click.option("--threads", default=8, show_default=True, help="Request threads.")
def web(config_path: str | None, listen: str | None, threads: int) -> None:
    """Serve the web console on the daemon's store (put it behind a TLS reverse proxy)."""
    import waitress

    from bot.web import create_app

    cfg, store = _open(config_path)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(cfg, store)
    if not store.list_users():
        click.echo("no users yet: add one with `afterimage users add NAME --role admin`", err=True)
    host, _, port = (listen or cfg.web.listen).rpartition(":")
    click.echo(f"afterimage console on http://{host}:{port}/ (store {store.url})", err=True)
    try:
        waitress.serve(app, host=host.strip("[]"), port=int(port), threads=threads, ident="afterimage")
    finally:
        store.close()
