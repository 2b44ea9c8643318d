"""One image's answer to "is this a copy of known media?", as ``afterimage check --json`` prints it; also
what the web console's check page and ``POST /api/v1/check`` answer, so the three never differ."""

from __future__ import annotations

from collections.abc import Callable

from bot.errors import AfterimageError
from bot.matching.matcher import Matcher
from bot.matching.thresholds import apply_rules

#: largest file a check reads, downloads or accepts as an upload
MAX_BYTES = 50 * 1000**2


def check_one(matcher: Matcher, name: str, read: Callable[[], bytes], *, show_all: bool = False) -> dict[str, object]:
    """The answer for one input, as ``check --json`` prints it (also served by the web console's check page
    and ``POST /api/v1/check``): ``{"input", "match"}``, plus ``matches`` with ``show_all``, or ``error``."""
    line: dict[str, object] = {"input": name}
    try:
        found = apply_rules(matcher.match(read()), matcher.config.thresholds)
        line["match"] = found[0].to_json() if found else None
        if show_all:
            line["matches"] = [m.to_json() for m in found]
    except (AfterimageError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None)
        line["match"] = None
        line["error"] = f"{reason}: {e}" if reason else str(e)
    except Exception as e:  # requests errors and anything unexpected stay per input
        line["match"] = None
        line["error"] = f"{type(e).__name__}: {e}"
    return line
