"""SMPTE timecodes as containers tag them ("HH:MM:SS:FF", drop-frame "HH:MM:SS;FF"): a tag
names its video's first frame, so an output that starts later in the video starts later in
timecode (`shifted_timecode_tags`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidface.io.probe import MediaInfo

_TIMECODE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")
_DAY_SECONDS = 24 * 3600


def shifted_timecode(timecode: str, frames: int, rate: Fraction) -> str:
    """`timecode` moved on by `frames` frames of a video at `rate` frames a second, written as
    it was (drop-frame stays drop-frame; past 24 hours it wraps); a value that is not a
    timecode is returned as it is.

    A drop-frame timecode (29.97 or 59.94 fps, ';' before the frames) skips frame numbers 0 and
    1 (0-3 at 59.94) at the start of each minute but every tenth, so its labels keep to the clock."""
    match = _TIMECODE.match(timecode.strip())
    base = round(rate)
    if not match or base <= 0:
        return timecode
    hours, minutes, seconds, separator, frame = match.groups()
    drop = separator in ";," and base % 30 == 0
    skipped = base // 30 * 2 if drop else 0
    total_minutes = int(hours) * 60 + int(minutes)
    number = (total_minutes * 60 + int(seconds)) * base + int(frame)
    number -= skipped * (total_minutes - total_minutes // 10)
    number = (number + frames) % _frames_per_day(base, skipped)
    if skipped:
        per_ten_minutes = 600 * base - 9 * skipped
        tens, rest = divmod(number, per_ten_minutes)
        number += 9 * skipped * tens
        if rest >= skipped:
            number += skipped * ((rest - skipped) // (per_ten_minutes // 10))
    frame_number, second = number % base, number // base
    digits = len(frame)
    return f"{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}{separator}{frame_number:0{digits}d}"


def _frames_per_day(base: int, skipped: int) -> int:
    return _DAY_SECONDS * base - skipped * (24 * 60 - 24 * 6)


def shifted_timecode_tags(tags: Mapping[str, str], seconds: Fraction, rate: Fraction | None) -> dict[str, str]:
    """`tags` with every timecode tag (MOV's and MXF's `timecode`, Matroska's `TIMECODE`) moved
    on by the frames of `rate` in `seconds`: the timecode of the frame `seconds` after the first."""
    if not seconds or not rate:
        return dict(tags)
    frames = round(seconds * rate)
    return {key: shifted_timecode(value, frames, rate) if key.lower() == "timecode" else value
            for key, value in tags.items()}


def start_timecode(info: MediaInfo) -> str | None:
    """The timecode of IN's first frame: the video stream's tag (MOV, MP4, Matroska), else the
    file's (MXF), else a timecode track's; None where IN has none."""
    video = next(s for s in info.streams if s.index == info.video.index)
    for tags in (video.metadata, info.metadata, *(s.metadata for s in info.streams if s.type == "data")):
        for key, value in tags.items():
            if key.lower() == "timecode":
                return value
    return None
