"""Test Redis housekeeping: every test works under its own ``?prefix=``, deleted when it ends."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import redis


def prefix_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["prefix"][0]


def delete_prefix(url: str) -> None:
    """Delete every key under the prefix of a test store URL."""
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        keys = list(client.scan_iter(match=f"{prefix_of(url)}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
