"""Platform watchers behind one interface (:mod:`watchers.base`), created from config by platform name."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from watchers.base import PollResult, Watcher

#: platform name (the key under ``watchers:`` in config) -> "module:Class", imported on first use so a
#: missing optional client library only affects its own platform
WATCHER_CLASSES: dict[str, str] = {
    "x": "watchers.x:XWatcher",
    "facebook": "watchers.facebook:FacebookWatcher",
    "mastodon": "watchers.mastodon:MastodonWatcher",
    "bluesky": "watchers.bluesky:BlueskyWatcher",
    "rss": "watchers.rss:RssWatcher",
}


def watcher_class(platform: str) -> type[Watcher]:
    module_name, class_name = WATCHER_CLASSES[platform].split(":")
    return getattr(import_module(module_name), class_name)


def build_watcher(platform: str, config: Any) -> Watcher:
    """Create the watcher for ``platform`` from its config section (``config.watchers.<platform>``)."""
    return watcher_class(platform)(config)


def same_account(platform: str, account: str, wanted: str) -> bool:
    """Whether ``wanted`` names ``account`` as the platform compares handles (:meth:`Watcher.account_key`);
    exact for a platform this version has no watcher for."""
    if platform not in WATCHER_CLASSES:
        return account == wanted
    key = watcher_class(platform).account_key
    return key(account) == key(wanted)


__all__ = ["PollResult", "Watcher", "WATCHER_CLASSES", "build_watcher", "same_account", "watcher_class"]
