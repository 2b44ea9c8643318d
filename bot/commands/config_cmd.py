"""``afterimage config check``: validate a config file and say exactly what is wrong, with line numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.config import find_config_file, load_config, locate_problems
from bot.errors import ConfigError
from bot.redact import redact_url

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $AFTERIMAGE_CONFIG, else ./afterimage.yaml, else built-in defaults).",
)



def output_in_existing_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for an output file option: its folder must exist (a mistyped path is refused, never
    created); ``-`` (standard output) passes."""
    if value is not None and value != "-" and not Path(value).resolve().parent.is_dir():
        raise click.BadParameter(f"the folder {Path(value).parent} does not exist (nothing was written; create it first)")
    return value


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@CONFIG_OPTION
def check(config_path: str | None) -> None:
    """Validate the config; exit 1 listing every problem with its key path and line."""
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        click.echo(f"{len(e.problems)} problem(s) found.", err=True)
        sys.exit(1)
    from bot.alerts.targets import target_problems  # imports apprise: only when the file itself is valid

    problems = target_problems([t.get_secret_value() for t in cfg.alerts.targets])
    file = find_config_file(config_path)
    if problems and file is not None:
        problems = locate_problems(file.read_text(encoding="utf-8"), problems, str(file))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        sys.exit(1)
    source = file or "(built-in defaults)"
    click.echo(f"{source}: OK")
    click.echo(f"  data folder: {cfg.data_dir}")
    click.echo(f"  store:       {redact_url(cfg.store_url)}")
    click.echo(f"  archive:     {cfg.archive_path}")
    enabled = cfg.watchers.enabled()
    if not enabled:
        click.echo("  watchers:    none configured")
    for platform, section in enabled.items():
        click.echo(f"  watchers.{platform}: {len(section.accounts)} account(s), every {section.interval:g}s")
    click.echo(f"  alert targets: {len(cfg.alerts.targets)}" + (" + console" if cfg.alerts.console else ""))
