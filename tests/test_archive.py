"""The evidence archive: content addressing, no overwrite, verified reads, nothing half-written."""

from __future__ import annotations

import hashlib
import os

import pytest

from bot.archive import Archive
from bot.errors import ArchiveError


def test_put_is_content_addressed_and_idempotent(tmp_path):
    archive = Archive(tmp_path)
    data = b"\xff\xd8\xff fake jpeg bytes"
    sha = hashlib.sha256(data).hexdigest()
    first = archive.put(data, "jpg")
    assert first.relpath == f"{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    assert first.created and first.path.read_bytes() == data
    again = archive.put(data, ".JPG")
    assert not again.created and again.relpath == first.relpath
    assert archive.get(first.relpath) == data
    assert [p.name for p in first.path.parent.iterdir()] == [f"{sha}.jpg"]  # no temp files left


def test_tampered_file_is_detected_on_read(tmp_path):
    archive = Archive(tmp_path)
    stored = archive.put(b"original evidence", "json")
    stored.path.write_bytes(b"altered evidence")
    assert not archive.verify(stored.relpath)
    with pytest.raises(ArchiveError, match="corrupt"):
        archive.get(stored.relpath)


def test_unsafe_paths_and_extensions_are_refused(tmp_path):
    archive = Archive(tmp_path)
    with pytest.raises(ArchiveError):
        archive.put(b"x", "../../etc")
    with pytest.raises(ArchiveError):
        archive.get("../../../etc/passwd")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_folder_is_a_clear_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    with pytest.raises(ArchiveError, match="cannot archive"):
        Archive(root).put(b"data", "jpg")


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    archive = Archive(tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ArchiveError, match="No space left on device"):
        archive.put(b"evidence", "jpg")
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_sweep_removes_only_stale_temporary_files(tmp_path):
    archive = Archive(tmp_path)
    kept = archive.put(b"evidence", "jpg")
    folder = kept.path.parent
    stale, fresh = folder / ".tmp-stale", folder / ".tmp-fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (0, 0))
    assert archive.sweep_temporary(older_than=3600) == 1
    assert not stale.exists() and fresh.exists() and archive.get(kept.relpath) == b"evidence"
