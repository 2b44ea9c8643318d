"""``afterimage alerts``: check that the chat targets accept a message (``alerts test``) and handle the alerts
a target refused for good (``alerts parked``, ``alerts retry``; see :mod:`bot.alerts.sender` on parking)."""

from __future__ import annotations

import sys

import click

from bot.alerts.targets import DEFAULT_TIMEOUT, ConsoleTarget, Target, build_targets
from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.daemon_cmds import load_or_exit
from bot.commands.parked_cmds import add_parked_commands
from bot.config import Config
from bot.errors import ConfigError
from bot.models import iso, utcnow
from bot.parked import ALERTS_KIND
from bot.redact import MASK, redact, setup_logging

TEST_TITLE = "afterimage test message"


@click.group()
def alerts() -> None:
    """Alert delivery: test the chat targets, list and requeue parked alerts."""


@alerts.command("test")
@CONFIG_OPTION
def test(config_path: str | None) -> None:
    """Send one test message to every configured target; one line per target (exit 1 if any did not accept)."""
    cfg = load_or_exit(config_path)
    setup_logging(cfg.log_level)  # apprise logs its failures: with the URL secrets masked
    targets = _targets_or_exit(cfg)
    body = f"If you can read this, afterimage can post alerts here (sent by `afterimage alerts test` at {iso(utcnow())})."
    failed = 0
    for name, target in zip(_names(targets), targets):
        error = _try_send(target, body)
        failed += error is not None
        click.echo(f"{name}: accepted" if error is None else f"{name}: FAILED: {error}")
    sys.exit(1 if failed else 0)


def _names(targets: list[Target]) -> list[str]:
    """How each target is shown: its place in the config and its scheme (``alerts.targets.0 json://***``).
    Never the URL: apprise's privacy form still shows e.g. the token in a generic webhook's path."""
    names, i = [], 0
    for target in targets:
        if isinstance(target, ConsoleTarget):
            names.append("console")
            continue
        names.append(f"alerts.targets.{i} {getattr(target, 'scheme_label', MASK)}")
        i += 1
    return names


def _targets_or_exit(cfg: Config) -> list[Target]:
    urls = [t.get_secret_value() for t in cfg.alerts.targets]
    try:
        targets = build_targets(urls, cfg.alerts.console, DEFAULT_TIMEOUT)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    if not targets:
        click.echo("no alert targets configured (alerts.targets is empty and alerts.console is off)", err=True)
        sys.exit(1)
    return targets


def _try_send(target: Target, body: str) -> str | None:
    """None when ``target`` accepted the test message, else why not (redacted, without the repeated label)."""
    try:
        target.send(TEST_TITLE, body)
    except Exception as e:
        error = redact(str(e)) or type(e).__name__
        return error.removeprefix(f"{target.label}: ")
    return None


add_parked_commands(
    alerts, ALERTS_KIND, list_name="parked",
    list_help="List the alerts a target refused (parked out of the queue), oldest first.",
    retry_help="Put parked alerts back into the queue at their place, due now (exit 1 if a KEY was not parked).",
    all_help="Requeue every parked alert.")
