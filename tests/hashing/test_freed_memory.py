"""A daemon keeps the memory a post frees: the next post's buffers of the same size reuse it instead of
faulting fresh pages in (each minor page fault also zeroes the page: ~35 % of a post's CPU in a hashing
process, measured by bench/scale.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import resource, sys
import numpy as np
from bot.hashing.pool import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def post():  # a post's working buffers: 2.4 MB float planes alive at once, then all freed
    planes = [np.ones((480, 640), np.float64) for _ in range(8)]
    return sum(float(p.sum()) for p in planes)
for _ in range(3):  # warm: imports, first allocations
    post()
before = faults()
for _ in range(20):
    post()
print(faults() - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_buffers_freed_by_one_post_are_reused_by_the_next() -> None:
    default, kept = _faults("default"), _faults("keep")
    assert default > 20 * 8 * 500  # freed to the system after each post, faulted in afresh: ~600 faults a plane
    assert kept < default / 10
