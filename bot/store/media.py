"""The media role of the store: one record per archived file (by SHA-256: where it is in the archive, its
computed hashes) and, per post, which file each attachment resolved to.

Implemented by :mod:`bot.store.sqlite_media` and :mod:`bot.store.redis_media`; contract in
``tests/store/test_media_contract.py``."""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol

from bot.store.records import MediaRecord, PostMediaLink


class MediaReader(Protocol):
    """Reading media records and the attachments of a post."""

    @abstractmethod
    def get_media(self, sha256: str) -> MediaRecord | None: ...

    @abstractmethod
    def get_post_media(self, platform: str, post_id: str) -> list[PostMediaLink]:
        """Links of a post ordered by index."""


class MediaStore(MediaReader, Protocol):
    """Media records and post-media links, as the archive and hashing stages write them."""

    @abstractmethod
    def put_media(self, record: MediaRecord, link: PostMediaLink | None = None) -> MediaRecord:
        """Insert a media record if its sha256 is new; returns the stored record (the first one wins,
        except that ``signals`` are merged). With ``link`` (an attachment that resolved to this file), also
        record the link as :meth:`link_post_media` does, in the same write: one store round trip per
        archived attachment, not two."""

    @abstractmethod
    def set_media_signals(self, sha256: str, signals: dict[str, str]) -> None:
        """Merge computed hashes into a media record."""

    @abstractmethod
    def link_post_media(self, link: PostMediaLink) -> None:
        """Record which file attachment ``index`` of a post resolved to (replaces an earlier link)."""
