"""Platform watchers behind one interface (:mod:`watchers.base`), found by a registry.

Every public module of this package (a name without a leading underscore, other than ``base``) is one
platform: it defines a :class:`~watchers.base.Watcher` subclass naming its ``platform`` and its
``config_model`` and exposes it as the module attribute ``WATCHER``. Configuration (``watchers:`` keys),
the CLI's platform choices, exports and the documentation checks read :func:`registry`, so adding a
platform is adding one module (plus its tests and docs).
"""

from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module

from bot.config_base import WatcherConfig
from watchers.base import PollResult, Watcher

_NOT_PLATFORMS = {"base"}


@cache
def registry() -> dict[str, type[Watcher]]:
    """Platform name (the key under ``watchers:`` in config) -> watcher class, in module name order."""
    found: dict[str, type[Watcher]] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_") or module.name in _NOT_PLATFORMS:
            continue
        cls = getattr(import_module(f"{__name__}.{module.name}"), "WATCHER", None)
        if not (isinstance(cls, type) and issubclass(cls, Watcher)):
            raise TypeError(f"watchers.{module.name} defines no WATCHER (a Watcher subclass)")
        if cls.platform in found:
            raise TypeError(f"two watcher modules claim the platform {cls.platform!r}")
        found[cls.platform] = cls
    return found


def platform_names() -> list[str]:
    """Every platform afterimage can watch, in registry order."""
    return list(registry())


def watcher_class(platform: str) -> type[Watcher]:
    return registry()[platform]


def build_watcher(platform: str, config: WatcherConfig) -> Watcher:
    """Create the watcher for ``platform`` from its config section (``config.watchers.<platform>``)."""
    return watcher_class(platform)(config)


def same_account(platform: str, account: str, wanted: str) -> bool:
    """Whether ``wanted`` names ``account`` as the platform compares handles (:meth:`Watcher.account_key`);
    exact for a platform this version has no watcher for."""
    if platform not in registry():
        return account == wanted
    key = watcher_class(platform).account_key
    return key(account) == key(wanted)


__all__ = ["PollResult", "Watcher", "build_watcher", "platform_names", "registry", "same_account", "watcher_class"]
