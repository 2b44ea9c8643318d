"""The evidence archive: content-addressed files on disk.

Each file lives at ``<root>/ab/cd/<sha256>.<ext>``. Writes go to a temporary file in the same folder, are
fsynced and renamed into place, so a crash or a full disk never leaves a half-written file under a final
name. An existing file is never overwritten (same name means same content). Reading back verifies the hash,
because an archive is only evidence if it can prove it was not altered.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ArchiveError

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")


@dataclass(frozen=True)
class ArchivedFile:
    sha256: str
    path: Path  # absolute path on disk
    relpath: str  # path relative to the archive root, as stored in records and exports
    size: int
    created: bool  # False when the file was already there


class Archive:
    def __init__(self, root: str | os.PathLike[str], on_new: Callable[[ArchivedFile], None] | None = None):
        """``on_new`` is told of every file this archive creates (the daemon queues them for a trusted
        timestamp); its failure is logged and never fails the write: the file is archived either way, and the
        evidence job's start-up sweep queues what a failed call missed."""
        self.root = Path(root)
        self.on_new = on_new

    def relpath_for(self, sha256: str, ext: str) -> str:
        if not _SHA256.match(sha256):
            raise ArchiveError(f"not a sha256 hex digest: {sha256!r}")
        ext = ext.lower().lstrip(".")
        if not _EXT.match(ext):
            raise ArchiveError(f"not a safe file extension: {ext!r}")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"

    def put(self, data: bytes, ext: str) -> ArchivedFile:
        """Store ``data`` under its SHA-256; idempotent. Raises :class:`ArchiveError` (disk full, permissions)."""
        sha = hashlib.sha256(data).hexdigest()
        rel = self.relpath_for(sha, ext)
        final = self.root / rel
        if final.exists():
            return ArchivedFile(sha, final, rel, len(data), created=False)
        tmp_name = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, final)
            tmp_name = None
            _fsync_dir(final.parent)
        except OSError as e:
            raise ArchiveError(f"cannot archive {rel}: {e.strerror or e}") from e
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
        archived = ArchivedFile(sha, final, rel, len(data), created=True)
        if self.on_new is not None:
            try:
                self.on_new(archived)
            except Exception:
                log.exception("archived %s but could not queue it for a timestamp", rel)
        return archived

    def get(self, relpath: str) -> bytes:
        """Read a file back, verifying that its content still matches the hash in its name."""
        path = self._resolve(relpath)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ArchiveError(f"cannot read {relpath}: {e.strerror or e}") from e
        expected = path.name.split(".", 1)[0]
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ArchiveError(f"{relpath} is corrupt: its content hashes to {actual}")
        return data

    def exists(self, relpath: str) -> bool:
        return self._resolve(relpath).exists()

    def verify(self, relpath: str) -> bool:
        try:
            self.get(relpath)
            return True
        except ArchiveError:
            return False

    def sweep_temporary(self, older_than: float = 3600.0) -> int:
        """Delete temporary files a killed process left mid-write (never a final file: those are only ever
        created by rename). Only files older than ``older_than`` seconds, so a write in progress in another
        process is left alone. Returns how many were removed."""
        cutoff = time.time() - older_than
        removed = 0
        for tmp in self.root.glob("*/*/.tmp-*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def _resolve(self, relpath: str) -> Path:
        parts = relpath.split("/")
        if len(parts) != 3 or not _SHA256.match(parts[2].split(".", 1)[0]):
            raise ArchiveError(f"not an archive path: {relpath!r}")
        return self.root / relpath


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
