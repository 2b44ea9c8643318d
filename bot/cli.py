"""The ``afterimage`` console command. Each command lives in its own module under :mod:`bot.commands`."""

from __future__ import annotations

import sys
from importlib import import_module

from bot import stopping

if sys.argv[1:2] == ["run"]:  # the daemon: a stop while the commands below are imported ends it cleanly
    stopping.stop_early()

import click  # noqa: E402

from bot import __version__  # noqa: E402

#: "module:attribute" of every click command or group added to ``afterimage``
COMMANDS: list[str] = [
    "bot.commands.config_cmd:config",
    "bot.commands.daemon_cmds:run",
    "bot.commands.daemon_cmds:poll",
    "bot.commands.daemon_cmds:status",
    "bot.commands.deletions:deletions",
    "bot.commands.demo:demo",
    "bot.commands.known:known",
    "bot.commands.check:check",
    "bot.commands.alerts:alerts",
    "bot.commands.posts:posts",
    "bot.commands.reprocess:reprocess",
    "bot.commands.users:users",
    "bot.commands.web:web",
    "bot.commands.evidence:verify",
    "bot.commands.evidence:proof",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="afterimage")
def main() -> None:
    """afterimage: watches official accounts for recycled images and deletions, and keeps the evidence."""


for _spec in COMMANDS:
    _module, _attr = _spec.split(":")
    main.add_command(getattr(import_module(_module), _attr))


if __name__ == "__main__":  # python -m bot.cli
    main()
