"""Frame index ↔ presentation time, from the probe's packet timestamps (exact, and counted
without decoding)."""

from __future__ import annotations

import numpy as np

from vidface.errors import InputError
from vidface.io.probe import MediaInfo

# A frame this close to a requested time counts as at it: seconds typed by a user (0.1) are
# rarely a frame's exact time.
_TIME_TOLERANCE = 5e-4


def frame_range(info: MediaInfo, start: float, duration: float | None) -> tuple[int, int]:
    """Frame indices [first, stop) of the frames whose start lies in [start, start + duration)
    seconds after the first frame (duration None: to the end)."""
    count = info.video.frame_count
    if start == 0 and duration is None:
        return 0, count
    times = np.array(info.video.pts, dtype=np.float64) * float(info.video.time_base)
    times = times - times[0]
    first = int(np.searchsorted(times, start - _TIME_TOLERANCE, side="left"))
    if first >= count:
        raise InputError(f"--start {start:g} is past the end of the input ({info.video.duration:.3f} s); "
                         "choose an earlier start")
    stop = count if duration is None else int(
        np.searchsorted(times, start + duration - _TIME_TOLERANCE, side="left"))
    if stop <= first:
        raise InputError(f"--duration {duration:g} holds no frame after --start {start:g}; choose a longer duration")
    return first, stop
