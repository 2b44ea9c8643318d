"""Alerts: render outbox alerts, draw the comparison picture, deliver them through apprise (and the log).

Producers build alerts with :mod:`bot.alerts.payloads` and ``StateStore.enqueue_alert`` them; the daemon
calls :meth:`bot.alerts.sender.AlertSender.deliver_due` from its own scheduled job, so a chat outage never
holds up polling. See :mod:`bot.alerts.sender` for the delivery guarantees.
"""
