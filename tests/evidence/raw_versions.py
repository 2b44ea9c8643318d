"""Archive the raw JSON of every observed version, as the pipeline does (through the given, hooked archive)."""

from __future__ import annotations

from bot.archive import Archive


def archive_raw_versions(store, archive: Archive) -> int:  # type: ignore[no-untyped-def]
    n = 0
    for stored in store.iter_posts():
        for v in store.get_versions(stored.post.platform, stored.post.post_id):
            archive.put(v.post.raw_bytes(), "json")
            n += 1
    return n
