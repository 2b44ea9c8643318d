"""The known-media role of the store: the library the matcher searches (known images and video keyframes,
and every archived image remembered as *seen*), with the generation/epoch counters an index uses to reload
only what changed.

Implemented by :mod:`bot.store.sqlite_known_media` and :mod:`bot.store.redis_known_media`; contract in
``tests/store/test_known_media_contract.py``."""

from __future__ import annotations

import itertools

from abc import abstractmethod
from typing import Protocol
from collections.abc import Iterator, Sequence

from bot.store.records import KnownKind, KnownMedia, KnownState


class KnownMediaReader(Protocol):
    """Reading known-media entries and the state an index reloads by."""

    @abstractmethod
    def get_known(self, known_id: str) -> KnownMedia | None: ...

    @abstractmethod
    def find_known_by_sha256(self, sha256: str) -> list[KnownMedia]: ...

    @abstractmethod
    def find_known_by_group(self, group: str, kind: KnownKind | None = None) -> list[KnownMedia]:
        """Entries of one item (the keyframes of one video share ``group``), in insertion order, optionally
        only of one kind (a known trailer and the same file seen in a post share the group)."""

    @abstractmethod
    def list_known(self, kind: KnownKind | None = None, limit: int | None = None, offset: int = 0) -> list[KnownMedia]:
        """Entries in insertion order."""

    @abstractmethod
    def iter_known(self, kind: KnownKind | None = None) -> Iterator[KnownMedia]: ...

    @abstractmethod
    def count_known(self, kind: KnownKind | None = None) -> int: ...

    def known_generation(self) -> int:
        """A counter that changes whenever known media change, so an index knows when to reload."""
        return self.known_state().generation

    @abstractmethod
    def known_state(self) -> KnownState:
        """Generation, epoch and entry count read together: what an index needs to decide between
        appending the entries added since it loaded (:meth:`iter_known_since`) and reloading everything."""

    def known_since(self, seq: int, limit: int) -> tuple[KnownState, list[tuple[int, KnownMedia]] | None]:
        """The known state and the entries inserted after ``seq`` (as :meth:`iter_known_since`), read together
        so that the count checks against them; None for the entries when there are more than ``limit``, or
        when a writer changed the store between the reads (a store that cannot read them in one go).

        Why: a daemon's matcher refreshes before every check, and every post adds an entry (its image, seen):
        one consistent read instead of state, entries, state again."""
        before = self.known_state()
        entries = list(itertools.islice(self.iter_known_since(seq), limit + 1))
        after = self.known_state()
        return after, (entries if after == before and len(entries) <= limit else None)

    @abstractmethod
    def iter_known_since(self, seq: int) -> Iterator[tuple[int, KnownMedia]]:
        """``(seq, entry)`` of every entry inserted after insertion number ``seq``, in insertion order.

        Why: the daemon remembers every archived image as a *seen* entry, so known media change on every
        post with pictures; reloading 100 k entries (and retraining their indexes) each time would stall
        matching. An entry replaced in place keeps its number (and bumps the epoch instead)."""


class KnownMediaStore(KnownMediaReader, Protocol):
    """Known-media entries, added and removed a whole item at a time."""

    def add_known(self, entry: KnownMedia) -> KnownMedia:
        """Add an entry (assigning ``id`` when empty; an existing id is replaced in place) and bump the
        known-media generation."""
        return self.add_known_many([entry])[0]

    @abstractmethod
    def add_seen(self, entry: KnownMedia) -> tuple[KnownMedia, bool]:
        """Add a ``seen`` entry (``entry.sha256`` set) unless the store holds a ``seen`` entry of that file
        already, atomically: (the stored entry, True) when added, (the first existing one, False) otherwise.

        Why atomic: two daemons processing two posts of the same file at the same instant would otherwise
        both find no entry and both add one, and neither post would be reported as recycling the other's."""

    @abstractmethod
    def add_known_many(self, entries: Sequence[KnownMedia]) -> list[KnownMedia]:
        """Add several entries in ONE transaction, in order (ids assigned when empty; an existing id is
        replaced in place), bumping the generation once. Returns the stored entries.

        Why: an item is all of its entries or none of them. The keyframes of a video or the rows of an
        imported list go in together, so an interrupted add never leaves half a video that matches (and
        alerts) as if it were the whole."""

    @abstractmethod
    def remove_known(self, known_id: str) -> bool:
        """Remove an entry; bumps the generation. False when there was no such id."""

    @abstractmethod
    def remove_known_group(self, group: str, kind: KnownKind | None = None) -> int:
        """Remove every entry of an item (``group``, optionally only of ``kind``) in one transaction; bumps
        the generation and epoch when anything went. Returns the number of entries removed."""
