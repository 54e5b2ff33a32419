"""Random access by frame index: decord maps frame index ↔ presentation time and reads any
single frame without decoding from the start (previews, resume)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vidface.errors import InputError
from vidface.io.probe import MediaInfo

log = logging.getLogger(__name__)

# decord reports times as float32 seconds; a frame this close to a requested time counts as at it.
_TIME_TOLERANCE = 5e-4


class RandomAccessReader:
    """Frames of a video by index (presentation order), through decord."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import decord

        try:
            self._reader = decord.VideoReader(str(Path(path)), num_threads=1)
        except decord.DECORDError as error:
            raise InputError(f"input {str(path)!r} cannot be opened for random access ({error})") from None

    def __len__(self) -> int:
        return len(self._reader)

    def times(self) -> np.ndarray:
        """Start time in seconds of every frame (float64, presentation order)."""
        return self._reader.get_frame_timestamp(range(len(self._reader)))[:, 0].astype(np.float64)

    def rgb(self, index: int) -> np.ndarray:
        """Frame `index` as H×W×3 uint8 RGB in stored orientation (no rotation applied)."""
        return self._reader[index].asnumpy()


def frame_range(info: MediaInfo, start: float, duration: float | None) -> tuple[int, int]:
    """Frame indices [first, stop) of the frames whose start lies in [start, start + duration)
    seconds after the first frame (duration None: to the end)."""
    count = info.video.frame_count
    if start == 0 and duration is None:
        return 0, count
    times = RandomAccessReader(info.path).times()
    if len(times) != count:
        log.debug("decord counts %d frames, the packets %d; using packet timestamps", len(times), count)
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
