"""The C allocator's policy for a run, in one place.

Every frame allocates and frees buffers of a few MB (pictures, face crops, network blobs).
With glibc's defaults two things go wrong:

* its mmap threshold moves: it rises each time a block above it is freed (up to 32 MiB), so
  picture-sized buffers move from mmap into malloc's heaps, which keep their high-water mark,
  and the peak memory of a long run creeps up with each new stage (a resumable run grew by its
  first segments);
* freed memory at the top of a heap is returned to the system at once, so the next frame's
  buffers fault in fresh zeroed pages: kernel time was a tenth of a 720p run on 2 cores.

So the mmap threshold is held at `MMAP_THRESHOLD` and the trim threshold at `TRIM_THRESHOLD`,
once per process, from `vidface.plan.plan_transcode` on (before a caller loads its model, whose
freed buffers would otherwise move the threshold). A threshold the user set through glibc's
environment (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) is left alone, and so is a C library
without mallopt. The figures behind the values are in docs/benchmarks.md (tools/bench.py memory;
tools/soak.py follows a 10-minute video).
"""

from __future__ import annotations

import functools
import logging
import os

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 4 << 20
"""Bytes from which malloc serves a block by mmap, held fixed."""
TRIM_THRESHOLD = 256 << 20
"""Free bytes at the top of a heap that malloc keeps instead of returning them to the system."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


@functools.cache
def steady_allocator() -> None:
    """Hold malloc's mmap and trim thresholds fixed (see the module doc); once per process."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library to open by None (Windows), no mallopt
        return
    for variable, parameter, value in (("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                       ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if variable not in os.environ and not mallopt(parameter, value):
            log.debug("mallopt(%d, %d) was refused; malloc keeps its own policy", parameter, value)
