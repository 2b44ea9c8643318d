"""Deletion tracking: re-check archived posts on a decaying schedule and keep a log of what disappeared.

- :mod:`bot.deletions.schedule`: pure functions, when is a post due again.
- :mod:`bot.deletions.tracker`: :class:`RecheckTracker`, turns look-up answers into confirmed events.
"""

from bot.deletions.tracker import RecheckReport, RecheckTracker

__all__ = ["RecheckReport", "RecheckTracker"]
