"""``afterimage run`` (the daemon), ``afterimage poll --once`` and ``afterimage status``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.config import Config, load_config
from bot.errors import ConfigError, StoreError
from bot.models import utcnow
from bot.redact import setup_logging
from bot.status import render_text, take_snapshot

if TYPE_CHECKING:
    from bot.daemon import Daemon


def load_or_exit(config_path: str | None) -> Config:
    """Load the config, or print every problem and exit 1 (the CLI's way of failing on a bad config)."""
    try:
        return load_config(config_path)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(1)


def build_or_exit(cfg: Config) -> Daemon:
    """Create the daemon, or say why not (unreachable store: exit 2; unusable alert target: exit 1)."""
    from bot.daemon import Daemon

    try:
        return Daemon(cfg)
    except StoreError as e:
        click.echo(f"cannot open the state store: {e}", err=True)
        sys.exit(2)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(1)


@click.command()
@CONFIG_OPTION
def run(config_path: str | None) -> None:
    """Run the daemon: poll, archive, match, alert and re-check until SIGTERM/SIGINT."""
    from bot.stopping import stop_on_signals  # first: a stop while the daemon starts ends it cleanly
    from bot.health import HealthServer

    stop_requested = stop_on_signals()
    cfg = load_or_exit(config_path)
    setup_logging(cfg.log_level)
    daemon = build_or_exit(cfg)
    health = None
    if cfg.health.listen:
        health = HealthServer(
            cfg.health.listen,
            lambda: take_snapshot(daemon.store, daemon.accounts, utcnow(), daemon.tracker.configs,
                                  daemon.evidence if cfg.evidence.tsa_urls else None),
            lambda: daemon.scheduler is not None and daemon.scheduler.running,
        )
        health.start()
    code = daemon.run_forever(stop_requested)
    if health:
        health.stop()
    sys.exit(code)


@click.command()
@CONFIG_OPTION
@click.option("--once", is_flag=True, required=True, help="Poll every configured account one time, then exit.")
def poll(config_path: str | None, once: bool) -> None:
    """Poll every configured account once through the whole pipeline and print what was found."""
    cfg = load_or_exit(config_path)
    setup_logging(cfg.log_level)
    daemon = build_or_exit(cfg)
    failed = 0
    try:
        for platform, accounts in daemon.accounts.items():
            for account in accounts:
                o = daemon.poll_account(platform, account, hold_lock=False)
                if o.error:
                    failed += 1
                    click.echo(f"{platform}/{account}: error: {o.error}")
                elif o.skipped:
                    click.echo(f"{platform}/{account}: skipped: {o.skipped}")
                else:
                    extra = f", {o.rejected} malformed item(s) kept" if o.rejected else ""
                    click.echo(
                        f"{platform}/{account}: {o.new} new, {o.edited} edited, {o.unchanged} unchanged post(s), "
                        f"{o.media} attachment(s){extra}"
                    )
        if not daemon.accounts:
            click.echo("no accounts configured (see config.example.yaml, watchers:)")
        daemon.deliver_alerts()
        click.echo(f"alerts waiting in the outbox: {daemon.store.outbox_size()}")
    finally:
        daemon.stop()
    sys.exit(1 if failed else 0)


@click.command()
@CONFIG_OPTION
def status(config_path: str | None) -> None:
    """Per account: last poll, next poll, posts seen, last error; pending re-checks, the alert outbox and the
    items waiting for a trusted timestamp."""
    from bot.evidence.ledger import EvidenceLedger
    from bot.store import NoStoreHere, open_store

    cfg = load_or_exit(config_path)
    sections = cfg.watchers.enabled()
    configured = {p: list(s.accounts) for p, s in sections.items()}
    try:
        with open_store(cfg.store_url, create=False) as store:
            evidence = EvidenceLedger(cfg.evidence_path) if cfg.evidence.tsa_urls else None
            click.echo(render_text(take_snapshot(store, configured, utcnow(), {p: s.recheck for p, s in sections.items()},
                                                 evidence)))
    except NoStoreHere as e:  # not "0 posts": nothing was ever stored here (a wrong folder or config?)
        click.echo(str(e), err=True)
        sys.exit(1)
    except StoreError as e:
        click.echo(f"cannot open the state store: {e}", err=True)
        sys.exit(2)
