"""Saved descriptor indexes, so a restarted daemon or a one-off ``afterimage check`` does not rebuild one.

Why: building the descriptor index of 100 k known images (16 M descriptors) takes about 90 s on one core;
reading a saved one takes a few seconds. A snapshot is one file, ``descriptors-<store>-<epoch>-<last
seq>-<count>.faiss`` under ``<data>/index/``: which store it was built from (a hash of its URL), the store's
epoch (changed by every removal or replacement, which makes older snapshots useless), the newest insertion
number it covers and how many entries it covers. It is used only when the store's entries up to that
insertion number are exactly as many as it covers (same epoch, so none was removed or replaced); entries
added later are appended to it as usual. Files are written atomically; a damaged or foreign file is
skipped with a warning, and the folder can be deleted at any time.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
from pathlib import Path

from bot.matching.descriptors import DescriptorIndex

log = logging.getLogger(__name__)

_NAME = re.compile(r"^descriptors-([0-9a-f]{12})-(\d+)-(\d+)-(\d+)\.faiss$")


class DescriptorSnapshots:
    """Snapshots of one store's descriptor index in ``directory``."""

    def __init__(self, directory: Path, store_url: str):
        self.directory = Path(directory)
        self.key = hashlib.sha256(store_url.encode()).hexdigest()[:12]

    def _files(self) -> list[tuple[int, int, int, Path]]:
        """``(epoch, last_seq, count, path)`` of this store's snapshots, newest first."""
        try:
            paths = list(self.directory.iterdir())
        except OSError:
            return []
        found = []
        for path in paths:
            m = _NAME.match(path.name)
            if m and m.group(1) == self.key:
                found.append((int(m.group(2)), int(m.group(3)), int(m.group(4)), path))
        return sorted(found, key=lambda f: (f[0], f[1]), reverse=True)

    def load(self, epoch: int, seqs: list[int]) -> tuple[DescriptorIndex, int] | None:
        """The newest usable snapshot for a store whose entries have insertion numbers ``seqs`` (ascending)
        at ``epoch``, and how many of those entries (the first ones) it covers."""
        for snap_epoch, last_seq, count, path in self._files():
            if snap_epoch != epoch or bisect.bisect_right(seqs, last_seq) != count:
                continue
            try:
                return DescriptorIndex.load(path), count
            except ValueError as e:
                log.warning("ignoring the saved matching index %s: %s", path, e)
        return None

    def save(self, index: DescriptorIndex, epoch: int, last_seq: int, count: int) -> None:
        """Save ``index`` (built from the store's first ``count`` entries, up to ``last_seq``) and remove this
        store's older snapshots. A read-only or full disk only costs the next start a rebuild."""
        path = self.directory / f"descriptors-{self.key}-{epoch}-{last_seq}-{count}.faiss"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            index.save(path)
        except (OSError, RuntimeError) as e:
            log.info("cannot save the matching index to %s: %s", self.directory, e)
            return
        for _, _, _, old in self._files():
            if old != path:
                old.unlink(missing_ok=True)
        log.info("matching index saved: %d descriptors of %d entries", len(index), count)
