"""The media role's contract (:class:`bot.store.media.MediaStore`): media records and post-media links.

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

from bot.store.records import PostMediaLink
from tests.store.builders import assert_aware, media_record


def test_media_first_wins_and_signals_merge(store):
    first = store.put_media(media_record(signals={"pdq": "p1"}))
    assert first == media_record(signals={"pdq": "p1"})
    assert_aware(first.first_seen)
    again = store.put_media(media_record(first_url="https://other/b.jpg", signals={"phash": "h1"}))
    assert again.first_url == "https://cdn/a.jpg"
    assert again.signals == {"pdq": "p1", "phash": "h1"}
    store.set_media_signals("a" * 64, {"pdq": "p2", "dhash": "d"})
    assert store.get_media("a" * 64).signals == {"pdq": "p2", "phash": "h1", "dhash": "d"}
    assert store.get_media("b" * 64) is None
    store.set_media_signals("b" * 64, {"pdq": "x"})  # no such record: nothing created
    assert store.get_media("b" * 64) is None


def test_post_media_links(store):
    store.link_post_media(PostMediaLink("x", "1", 1, "https://cdn/2.jpg", None, error="http_404"))
    store.link_post_media(PostMediaLink("x", "1", 0, "https://cdn/1.jpg", "a" * 64))
    store.link_post_media(PostMediaLink("x", "2", 0, "https://cdn/3.jpg", "c" * 64))
    links = store.get_post_media("x", "1")
    assert [link.index for link in links] == [0, 1]
    assert links[1].error == "http_404" and links[1].sha256 is None
    store.link_post_media(PostMediaLink("x", "1", 1, "https://cdn/2.jpg", "b" * 64))  # replaces
    assert store.get_post_media("x", "1")[1] == PostMediaLink("x", "1", 1, "https://cdn/2.jpg", "b" * 64)
    assert store.get_post_media("x", "none") == []


def test_a_media_record_and_its_post_link_are_written_together(store):
    failed = PostMediaLink("x", "1", 0, "https://cdn/a.jpg", None, error="timeout: first try")
    store.link_post_media(failed)
    link = PostMediaLink("x", "1", 0, "https://cdn/a.jpg", "a" * 64)
    stored = store.put_media(media_record(), link)
    assert stored == media_record()
    assert store.get_post_media("x", "1") == [link]  # replaces the earlier outcome of that attachment
    # the same file posted again by another post: the first record stays, the new post gets its link
    store.put_media(media_record(first_url="https://other/b.jpg"), PostMediaLink("x", "2", 3, "https://other/b.jpg", "a" * 64))
    assert store.get_media("a" * 64).first_url == "https://cdn/a.jpg"
    assert store.get_post_media("x", "2") == [PostMediaLink("x", "2", 3, "https://other/b.jpg", "a" * 64)]
