"""The matcher finds transformed copies (crop + caption + mirror, screenshots), ignores unrelated images
and look-alikes, refreshes when known media change, and reports recycled images with their origin."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from PIL import ImageOps

from bench.evalset import TRANSFORMS, hud_overlay
from bot.archive import Archive
from bot.config import MatchingConfig
from bot.known import add_image, remember_seen
from bot.hashing.stage import compute_signals
from bot.matching.matcher import Matcher
from bot.store.records import KnownKind
from bot.store.sqlite import SqliteStore
from tests.images import caption, crop, encode, scene


def make(store, archive: Archive, tmp_path: Path, seeds=(1, 2, 3), hud: bool = False) -> tuple[Matcher, dict[int, str]]:
    ids = {}
    for seed in seeds:
        entry = add_image(store, archive, encode(scene(seed, hud=hud, hud_seed=7), "PNG"), label=f"scene {seed}",
                          source=f"https://example.org/{seed}")
        ids[seed] = entry.id
    return Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features"), ids


def test_cropped_captioned_mirrored_copy_is_a_match_with_region(store, archive, tmp_path) -> None:
    matcher, ids = make(store, archive, tmp_path)
    original = scene(2)
    query = ImageOps.mirror(caption(crop(original, 0.75, 0.8, 0.2)))
    found = matcher.match(encode(query, quality=70))
    assert found and found[0].tier == "match"
    assert found[0].known.id == ids[2]
    assert found[0].signal == "orb" and found[0].inliers >= 50 and found[0].mirrored
    region = found[0].region
    assert region is not None and len(region) == 4
    xs = [x for x, _ in region]
    # the original extends beyond the crop on both sides, in the query's own pixels
    assert min(xs) < 0 and max(xs) > query.width
    assert found[0].to_json()["tier"] == "match"


def test_every_benchmark_transform_of_a_known_image_matches(store, archive, tmp_path) -> None:
    matcher, ids = make(store, archive, tmp_path)
    for name, fn in TRANSFORMS.items():
        found = matcher.match(encode(fn(scene(3))))
        assert found and found[0].tier == "match" and found[0].known.id == ids[3], name


def test_unrelated_images_and_lookalikes_do_not_match(store, archive, tmp_path) -> None:
    matcher, _ = make(store, archive, tmp_path, seeds=(5000, 5001, 5002), hud=True)
    for seed in (95_000, 95_001, 95_002):  # same generator, same HUD overlay, other scenes
        assert not [m for m in matcher.match(encode(scene(seed, hud=True, hud_seed=7))) if m.tier == "match"]
    assert matcher.match(encode(hud_overlay(scene(77).resize((900, 560)), 7))) == [] or all(
        m.tier != "match" for m in matcher.match(encode(hud_overlay(scene(77), 7)))
    )


def test_index_refreshes_when_known_media_change(store, archive, tmp_path) -> None:
    matcher, ids = make(store, archive, tmp_path, seeds=(4,))
    query = encode(crop(scene(4), 0.8))
    assert matcher.best(query).known.id == ids[4]
    store.remove_known(ids[4])
    assert matcher.match(query) == []
    entry = add_image(store, archive, encode(scene(4), "PNG", optimize=True), label="again")
    assert matcher.best(query).known.id == entry.id


def test_seen_image_is_recycled_but_never_matches_its_own_post(store, archive, tmp_path) -> None:
    matcher = Matcher(store, archive, features_dir=tmp_path / "features")
    data = encode(scene(6))
    stored = archive.put(data, "jpg")
    origin = {"platform": "x", "account": "mod", "post_id": "111", "url": "https://x.com/mod/status/111",
              "posted_at": "2017-11-14T10:00:00Z"}
    seen = remember_seen(store, archive, sha256=stored.sha256, archive_path=stored.relpath, image=scene(6),
                         origin=origin)
    assert seen.kind == KnownKind.SEEN
    assert remember_seen(store, archive, sha256=stored.sha256, archive_path=stored.relpath, image=scene(6),
                         origin={**origin, "post_id": "222"}).id == seen.id
    assert matcher.match(data, exclude_origin={"platform": "x", "post_id": "111"}) == []
    assert matcher.match(data, exclude_sha256=stored.sha256) == []
    later = matcher.best(encode(caption(crop(scene(6), 0.85))), exclude_origin={"platform": "x", "post_id": "999"})
    assert later is not None and later.recycled and later.tier == "match"
    assert later.to_json()["first_seen"]["post_id"] == "111"


def test_compute_signals_accepts_bytes_and_images() -> None:
    img = scene(8)
    assert compute_signals(encode(img, "PNG"))["pdq"] == compute_signals(img)["pdq"]


def test_new_known_media_are_appended_without_rebuilding_the_indexes(store, archive, tmp_path) -> None:
    matcher, ids = make(store, archive, tmp_path, seeds=(4,))
    assert matcher.best(encode(crop(scene(4), 0.8))).known.id == ids[4]
    descriptors = matcher._descriptors
    later = add_image(store, archive, encode(scene(5), "PNG"), label="scene 5")
    query = encode(caption(crop(scene(5), 0.75, 0.3, 0.1)))
    assert matcher.best(query).known.id == later.id
    assert matcher._descriptors is descriptors  # appended, not rebuilt

    store.add_known(replace(later, label="renamed"))  # replaced in place: everything reloads
    assert matcher.best(query).known.label == "renamed"
    assert matcher._descriptors is not descriptors


class _LateCommitStore(SqliteStore):
    """Redis can commit an entry with a lower insertion number after a reader listed the newer ones: the
    first listing here hides the newest entry, as if it were still being written."""

    hide_next = False

    def known_since(self, seq, limit):  # the matcher's refresh reads here first
        state, rows = super().known_since(seq, limit)
        if self.hide_next and rows:
            self.hide_next = False
            return state, rows[:-1]
        return state, rows

    def iter_known_since(self, seq):
        rows = list(super().iter_known_since(seq))
        if self.hide_next and rows:
            self.hide_next = False
            return iter(rows[:-1])
        return iter(rows)


def test_an_entry_committed_late_is_not_missed(archive, tmp_path) -> None:
    store = _LateCommitStore(str(tmp_path / "late.db"))
    matcher, _ = make(store, archive, tmp_path, seeds=(4,))
    matcher.refresh()
    add_image(store, archive, encode(scene(5), "PNG"), label="scene 5")
    hidden = add_image(store, archive, encode(scene(6), "PNG"), label="scene 6")
    store.hide_next = True
    assert matcher.best(encode(crop(scene(6), 0.8))).known.id == hidden.id
    store.close()


def test_a_saved_descriptor_index_spares_the_next_start_a_rebuild(store, archive, tmp_path, monkeypatch) -> None:
    from bot.matching import descriptors

    monkeypatch.setattr(descriptors, "FLAT_LIMIT", 500)  # an inverted file from 4 images on
    monkeypatch.setattr(descriptors, "LIST_ROWS", 32)
    _, ids = make(store, archive, tmp_path, seeds=(1, 2, 3, 4, 5))
    first = Matcher(store, archive, features_dir=tmp_path / "features")
    query = encode(caption(crop(scene(4), 0.75, 0.3, 0.1)))
    assert first.best(query).known.id == ids[4]
    saved = list((tmp_path / "index").glob("descriptors-*.faiss"))
    assert len(saved) == 1

    builds = []
    real_inverted_file = descriptors._inverted_file
    monkeypatch.setattr(descriptors, "_inverted_file", lambda *a: builds.append(1) or real_inverted_file(*a))
    later = add_image(store, archive, encode(scene(6), "PNG"), label="scene 6")
    restarted = Matcher(store, archive, features_dir=tmp_path / "features")
    assert restarted.best(query).known.id == ids[4]
    assert restarted.best(encode(crop(scene(6), 0.8))).known.id == later.id  # appended to the snapshot
    assert builds == []

    store.remove_known(ids[4])  # a removal: that snapshot no longer describes the store
    again = Matcher(store, archive, features_dir=tmp_path / "features")
    assert all(m.known.id != ids[4] for m in again.match(query))
    assert builds == [1]


def test_a_damaged_saved_index_is_skipped(store, archive, tmp_path, monkeypatch) -> None:
    from bot.matching import descriptors

    monkeypatch.setattr(descriptors, "FLAT_LIMIT", 500)
    monkeypatch.setattr(descriptors, "LIST_ROWS", 32)
    _, ids = make(store, archive, tmp_path, seeds=(1, 2, 3, 4, 5))
    Matcher(store, archive, features_dir=tmp_path / "features").refresh()
    [saved] = (tmp_path / "index").glob("descriptors-*.faiss")
    saved.write_bytes(b"not an index")
    query = encode(crop(scene(2), 0.75))
    assert Matcher(store, archive, features_dir=tmp_path / "features").best(query).known.id == ids[2]


def test_a_truncated_features_cache_file_is_recomputed_not_fatal(store, archive, tmp_path) -> None:
    """The cache may be cut short (a full disk, a partial copy of the data folder): the check still
    verifies against the entry, recomputing its features from the archive and caching them again."""
    matcher, ids = make(store, archive, tmp_path, seeds=(8,))
    query = encode(caption(crop(scene(8), 0.7, 0.25, 0.3)), quality=70)
    assert matcher.best(query).known.id == ids[8]
    cached = [p for p in (tmp_path / "features").rglob("*") if p.is_file()]
    assert len(cached) == 1
    whole = cached[0].read_bytes()
    cached[0].write_bytes(whole[: len(whole) // 2])
    fresh = Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features")
    found = fresh.best(query)
    assert found is not None and found.known.id == ids[8] and found.signal == "orb"
    assert cached[0].read_bytes() == whole  # cached again, in full


def test_the_sweep_deletes_cached_features_of_an_older_format_and_keeps_the_current_ones(store, archive, tmp_path) -> None:
    """After an upgrade that changed the cache's format the old files are never read again: the sweep the
    daemon runs at start frees their space, and leaves what the current code reads or is writing."""
    matcher, ids = make(store, archive, tmp_path, seeds=(8,))
    query = encode(caption(crop(scene(8), 0.7, 0.25, 0.3)), quality=70)
    assert matcher.best(query).known.id == ids[8]
    [current] = [p for p in (tmp_path / "features").rglob("*") if p.is_file()]
    folder = current.parent
    sha = current.name.split(".", 1)[0]
    old = [folder / f"{sha}.v3.npz", folder / f"{sha}.sharp.v3.npz", folder / f"{sha}.v2.npz"]
    for path in old:
        path.write_bytes(b"PK\x03\x04 an old .npz")
    writing = folder / f"{sha}.v9.1234.tmp"  # another process's write in progress
    writing.write_bytes(b"partial")
    left = folder / f"{sha}.v9.5678.tmp"  # a killed write, long ago
    left.write_bytes(b"partial")
    os.utime(left, (time.time() - 7200, time.time() - 7200))

    assert matcher.sweep_feature_cache() == 4
    assert sorted(p.name for p in folder.iterdir()) == sorted([current.name, writing.name])
    fresh = Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features")
    assert fresh.best(query).known.id == ids[8]
    assert fresh.sweep_feature_cache() == 0
