"""``afterimage demo``: the offline replay of the 2017 case (see :mod:`bot.demo.run`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from bot.redact import setup_logging


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="afterimage-demo", show_default=True,
              help="Folder for the demo's store, archive and exported reports (nothing is written elsewhere). "
                   "Each run starts afresh there; a non-empty folder the demo did not write is refused.")
def demo(out_dir: str) -> None:
    """Replay the 2017 case offline: a recycled game frame is posted, alerted, deleted, logged and exported."""
    from bot.demo.run import DemoFolderError, run_demo

    setup_logging("WARNING")
    logging.getLogger("bot.alerts").setLevel(logging.INFO)  # the console alert is part of the story
    try:
        run_demo(Path(out_dir), echo=click.echo)
    except DemoFolderError as e:
        click.echo(f"demo not run: {e}", err=True)
        sys.exit(2)
    except TimeoutError as e:
        click.echo(f"demo failed: {e}", err=True)
        sys.exit(1)
