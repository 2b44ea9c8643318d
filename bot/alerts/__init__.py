"""Alerts: render outbox alerts, draw the comparison picture, deliver them through apprise (and the log).

How the daemon wires it (integrator)::

    sender = AlertSender(store, archive, config.alerts)      # ConfigError if apprise cannot use a target URL
    # in its own scheduled job, e.g. every 10 s (never in the polling jobs: it may wait on a slow chat):
    enqueue_digest_if_due(store, config.alerts.digest)       # no-op unless enabled and due; once per day
    report = sender.deliver_due()                            # DeliveryReport; never sleeps for a backoff

Producers build alerts with :mod:`bot.alerts.payloads` (``match_alert``, ``event_alert``; the payload schema is
documented there) and ``store.enqueue_alert(alert)`` them; the key makes a retried producer harmless.
See :mod:`bot.alerts.sender` for the delivery guarantees (order, once, nothing lost, backoff).
"""

from importlib import import_module
from typing import Any

# imported lazily, so a producer importing bot.alerts.payloads does not load apprise and Pillow
_EXPORTS = {
    "AlertSender": "sender",
    "DeliveryReport": "sender",
    "alert_key": "payloads",
    "build_digest": "digest",
    "comparison_picture": "picture",
    "enqueue_digest_if_due": "digest",
    "event_alert": "payloads",
    "event_payload": "payloads",
    "match_alert": "payloads",
    "match_payload": "payloads",
    "render": "messages",
    "target_problems": "targets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"bot.alerts.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'bot.alerts' has no attribute {name!r}")
