"""Local features are computed by several worker threads at once (a daemon's pool): each thread's result
must be exactly what one thread alone computes. OpenCV's CLAHE object keeps buffers sized to its last image,
so one object shared by the threads gave wrong grey images (and missed matches) or failed an assertion."""

from __future__ import annotations

import threading

import numpy as np

from bot.hashing.local import normalized_gray
from tests.images import scene


def test_contrast_normalisation_is_the_same_in_concurrent_threads():
    images = [scene(300 + n, 320 + 97 * n, 240 + 61 * n) for n in range(4)]  # a different size each
    expected = [normalized_gray(im) for im in images]
    wrong: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(images))

    def work(n: int) -> None:
        start.wait()
        try:
            for _ in range(150):
                if not np.array_equal(normalized_gray(images[n]), expected[n]):
                    wrong.append(f"image {n}")
        except BaseException as e:  # an OpenCV assertion on a shared object
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert not wrong, f"{len(wrong)} results differ from one thread's, first {wrong[0]}"
