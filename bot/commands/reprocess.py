"""``afterimage reprocess``: fetch again the attachments posts could not archive (see :mod:`bot.reprocess`)."""

from __future__ import annotations

import os
import socket
import sys
from collections import Counter

import click

from bot.commands.config_cmd import CONFIG_OPTION
from bot.commands.daemon_cmds import load_or_exit
from bot.commands.deletions import _iso_option
from bot.errors import AfterimageError, ConfigError
from bot.redact import redact, setup_logging
from watchers import platform_names


@click.command()
@CONFIG_OPTION
@click.option("--post", "post_ids", multiple=True, help="Only this post id (repeatable).")
@click.option("--platform", default=None, type=click.Choice(platform_names(), case_sensitive=False),
              help="Only posts of this platform.")
@click.option("--account", default=None, help="Only posts of this watched account (case-insensitive handles).")
@click.option("--since", callback=_iso_option, help="Only posts published at or after this UTC time (ISO 8601).")
@click.option("--until", callback=_iso_option, help="Only posts published before this UTC time (ISO 8601).")
@click.option("--reason", "reasons", multiple=True,
              help="Only attachments that failed for this reason, e.g. not_https, private_address (repeatable).")
@click.option("--dry-run", is_flag=True, help="List what would be fetched again; fetch nothing.")
def reprocess(config_path, post_ids, platform, account, since, until, reasons, dry_run) -> None:
    """Fetch again the attachments of posts that could not be archived (refused, or given up on), e.g. after
    adding a host to media.trusted_hosts. Idempotent: no alert is sent twice, no file archived twice."""
    from bot.alerts.sender import AlertSender
    from bot.archive import Archive
    from bot.pipeline import build_pipeline
    from bot.reprocess import Selection, reprocess as run, select
    from bot.store import NoStoreHere, open_store

    cfg = load_or_exit(config_path)
    setup_logging(cfg.log_level)
    selection = Selection(tuple(post_ids), platform, account, since, until, tuple(reasons))
    try:
        store = open_store(cfg.store_url, create=False)
    except NoStoreHere as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    except AfterimageError as e:
        click.echo(f"cannot open the state store: {e}", err=True)
        sys.exit(2)
    with store:
        reasons_seen: Counter[str] = Counter()
        found = list(select(store, selection, reasons_seen))
        if not found:
            known = ", ".join(f"{r} ({n})" for r, n in reasons_seen.most_common())
            click.echo("no post matching these filters has an attachment left to fetch"
                       + (f" for {', '.join(reasons)} (failed attachments there: {known})" if reasons and known else ""))
            return
        for failed in found:
            post = failed.stored.post
            listed = ", ".join(f"attachment {i}: {r}" for i, r in sorted(failed.failures.items()))
            click.echo(f"{post.platform}/{post.account} {post.post_id}: {listed}")
        if dry_run:
            click.echo(f"{len(found)} post(s) would be reprocessed (dry run: nothing fetched)")
            return
        archive = Archive(cfg.archive_path)
        pipeline = build_pipeline(cfg, store, archive)
        owner = f"{socket.gethostname()}:{os.getpid()}:reprocess"
        try:
            outcomes = run(pipeline, store, found, owner)
            AlertSender(store, archive, cfg.alerts, owner=owner).deliver_due()  # like `poll --once`
            waiting = store.outbox_size()
        except TimeoutError as e:
            click.echo(str(e), err=True)
            sys.exit(1)
        except ConfigError as e:
            for problem in e.problems:
                click.echo(problem, err=True)
            sys.exit(1)
        except AfterimageError as e:  # a full disk, an unreachable store: nothing is lost, run it again later
            click.echo(f"reprocess stopped: {redact(str(e))}", err=True)
            sys.exit(1)
        finally:
            pipeline.fetcher.close()
    archived = still = 0
    for outcome in outcomes:
        post = outcome.post.stored.post
        for index, result in outcome.results.items():
            archived += result == "archived"
            still += result != "archived"
            shown = "archived" if result == "archived" else f"still not archived ({result})"
            click.echo(f"{post.platform}/{post.account} {post.post_id}: attachment {index} {shown}")
        for error in outcome.errors:
            click.echo(f"  {redact(error)}", err=True)
    click.echo(f"{archived} attachment(s) archived, {still} still failing; alerts waiting in the outbox: {waiting}")
    sys.exit(1 if still else 0)
