"""The known-media role's contract (:class:`bot.store.known_media.KnownMediaStore`).

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

import threading

from bot.store.records import KnownKind, KnownMedia
from tests.store.builders import assert_aware, known


def test_add_seen_is_an_atomic_insert_or_get_per_file(store_opener):
    """Two daemons remembering the same file at the same instant: one entry, and both get that one."""
    first = store_opener()
    first.add_known(known("a known copy", sha="5" * 64))  # a known entry of the same file is not a seen one
    entry, added = first.add_seen(known("seen in post 1", kind=KnownKind.SEEN, sha="5" * 64, origin={"post_id": "1"}))
    assert added and entry.id and first.get_known(entry.id) == entry
    again, added = first.add_seen(known("seen in post 2", kind=KnownKind.SEEN, sha="5" * 64, origin={"post_id": "2"}))
    assert not added and again == entry

    stores = [store_opener() for _ in range(6)]
    start = threading.Barrier(len(stores))
    results: list[tuple[object, bool]] = []

    def remember(n: int) -> None:
        start.wait()
        results.append(stores[n].add_seen(known(f"seen in post {n}", kind=KnownKind.SEEN, sha="6" * 64, origin={"post_id": str(n)})))

    threads = [threading.Thread(target=remember, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(added for _, added in results) == 1
    assert len({e.id for e, _ in results}) == 1  # every daemon got the one entry that was added
    assert [e.kind for e in first.find_known_by_sha256("6" * 64)] == [KnownKind.SEEN]
    assert first.count_known(KnownKind.SEEN) == 2


def test_known_media(store):
    gen0 = store.known_generation()
    a = store.add_known(known("a", sha="1" * 64, source="game", note="n", frame_ts=1.5))
    assert a.id and len(a.id) <= 32
    assert store.known_generation() != gen0
    b = store.add_known(known("b", kind=KnownKind.SEEN, sha="1" * 64, origin={"platform": "x", "post_id": "9"}))
    c = store.add_known(known("c"))
    assert len({a.id, b.id, c.id}) == 3
    assert store.get_known(a.id) == a
    assert store.get_known(b.id).origin == {"platform": "x", "post_id": "9"}
    assert store.get_known("nope") is None
    assert_aware(store.get_known(a.id).added_at)

    assert [k.label for k in store.list_known()] == ["a", "b", "c"]
    assert [k.label for k in store.list_known(kind=KnownKind.KNOWN)] == ["a", "c"]
    assert [k.label for k in store.list_known(limit=1, offset=1)] == ["b"]
    assert [k.label for k in store.list_known(offset=2)] == ["c"]
    assert [k.label for k in store.iter_known()] == ["a", "b", "c"]
    assert [k.label for k in store.iter_known(KnownKind.SEEN)] == ["b"]
    assert store.count_known() == 3
    assert store.count_known(KnownKind.SEEN) == 1
    assert {k.id for k in store.find_known_by_sha256("1" * 64)} == {a.id, b.id}
    assert store.find_known_by_sha256("2" * 64) == []

    gen1 = store.known_generation()
    assert store.remove_known(a.id) is True
    gen2 = store.known_generation()
    assert gen2 != gen1
    assert store.remove_known(a.id) is False
    assert store.get_known(a.id) is None
    assert [k.label for k in store.list_known()] == ["b", "c"]
    assert [k.id for k in store.find_known_by_sha256("1" * 64)] == [b.id]
    assert store.count_known() == 2 and store.count_known(KnownKind.KNOWN) == 1


def test_known_media_keeps_a_given_id(store):
    entry = store.add_known(known("x", id="myid"))
    assert entry.id == "myid" and store.get_known("myid") == entry


def test_known_items_are_added_and_removed_whole(store):
    frames = [known(f"trailer @ {i}s", sha=f"{i}" * 64, group="v" * 64, frame_ts=float(i)) for i in range(3)]
    single = store.add_known(known("photo", sha="f" * 64))
    seen_frame = store.add_known(known("seen frame", kind=KnownKind.SEEN, group="v" * 64))
    gen = store.known_generation()
    added = store.add_known_many(frames)
    assert store.known_generation() != gen
    assert [e.label for e in added] == [e.label for e in frames] and all(e.id for e in added)
    assert len({e.id for e in added}) == 3
    assert [e.id for e in store.iter_known()] == [single.id, seen_frame.id, *[e.id for e in added]]
    assert [e.frame_ts for e in store.find_known_by_group("v" * 64, KnownKind.KNOWN)] == [0.0, 1.0, 2.0]
    assert len(store.find_known_by_group("v" * 64)) == 4  # the same video seen in a post is another item
    assert store.find_known_by_group("w" * 64) == []
    assert store.add_known_many([]) == []

    # replacing entries in place keeps their insertion order and moves them between groups
    moved = store.add_known_many([KnownMedia.from_dict({**added[0].to_dict(), "group": "w" * 64})])
    assert store.get_known(added[0].id) == moved[0]
    assert [e.id for e in store.find_known_by_group("w" * 64)] == [added[0].id]
    assert [e.id for e in store.iter_known()][2] == added[0].id

    state = store.known_state()
    assert store.remove_known_group("v" * 64, KnownKind.KNOWN) == 2
    after = store.known_state()
    assert after.epoch != state.epoch and after.count == state.count - 2
    assert [e.id for e in store.find_known_by_group("v" * 64)] == [seen_frame.id]  # the seen item stays
    assert store.remove_known_group("v" * 64, KnownKind.KNOWN) == 0
    assert store.remove_known(added[0].id) and store.find_known_by_group("w" * 64) == []
    assert [e.id for e in store.iter_known()] == [single.id, seen_frame.id]


def test_add_known_many_keeps_thousands_in_order(store):
    entries = [known(f"row {i}", source="list") for i in range(2500)]
    since = store.known_state()
    added = store.add_known_many(entries)
    assert store.count_known() == 2500
    assert [e.label for e in store.iter_known()] == [f"row {i}" for i in range(2500)]
    appended = list(store.iter_known_since(0))
    assert [e.id for _, e in appended] == [e.id for e in added]
    assert [seq for seq, _ in appended] == sorted(seq for seq, _ in appended)
    assert store.known_state().count == since.count + 2500


def test_known_state_lets_an_index_append_new_entries_and_notice_replacements(store):
    a = store.add_known(known("a"))
    first = store.known_state()
    assert first.count == 1
    seqs = [seq for seq, _ in store.iter_known_since(0)]
    assert len(seqs) == 1

    b = store.add_known(known("b"))
    c = store.add_known(known("c"))
    appended = store.known_state()
    assert appended.generation != first.generation and appended.epoch == first.epoch and appended.count == 3
    new = list(store.iter_known_since(seqs[-1]))
    assert [e.id for _, e in new] == [b.id, c.id]
    assert new[0][0] < new[1][0]
    assert list(store.iter_known_since(new[-1][0])) == []

    store.add_known(KnownMedia.from_dict({**b.to_dict(), "label": "b2"}))  # replaced in place
    replaced = store.known_state()
    assert replaced.epoch != appended.epoch and replaced.count == 3
    assert list(store.iter_known_since(new[-1][0])) == []  # keeps its insertion number

    store.remove_known(a.id)
    removed = store.known_state()
    assert removed.epoch != replaced.epoch and removed.count == 2


def test_known_since_reads_the_state_with_the_entries_after_a_number(store):
    a = store.add_known(known("a"))
    [(seq_a, _)] = store.iter_known_since(0)
    b, c = store.add_known(known("b")), store.add_known(known("c"))
    state, new = store.known_since(seq_a, 10)
    assert state == store.known_state() and state.count == 3
    assert [e.id for _, e in new] == [b.id, c.id] and [e.label for _, e in new] == ["b", "c"]
    assert [seq for seq, _ in new] == [seq for seq, _ in store.iter_known_since(seq_a)]
    assert store.known_since(new[-1][0], 10) == (state, [])
    assert store.known_since(0, 2) == (state, None)  # more than the limit: the caller reads page by page
    assert store.known_since(0, 3)[1][0][1].id == a.id


def test_iter_known_since_pages_through_a_large_store(store):
    added = [store.add_known(known(f"k{i}")) for i in range(2_050)]
    got = list(store.iter_known_since(0))
    assert [e.id for _, e in got] == [e.id for e in added]
    assert [e.id for _, e in store.iter_known_since(got[1_500][0])] == [e.id for e in added[1_501:]]
