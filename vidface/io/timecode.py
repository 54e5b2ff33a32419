"""SMPTE timecodes as containers tag them ("HH:MM:SS:FF", drop-frame "HH:MM:SS;FF"): a tag
names its video's first frame, so an output that starts later in the video starts later in
timecode (`shifted_timecode_tags`), and a range can be given in the video's own timecode
(`range_seconds`). MPEG-1/2 video carries a timecode of its own, in each group of pictures'
header (`gop_timecode`), which OUT's container takes where IN's has none (`untagged_timecode`);
an MPEG-1/2 OUT's headers are renumbered by IN's timecode (`restamp_gop`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from vidface.errors import InputError

if TYPE_CHECKING:
    from vidface.io.probe import MediaInfo

TIMECODE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")
_DAY_SECONDS = 24 * 3600


def timecode_frames(timecode: str, rate: Fraction) -> int | None:
    """How many frames of a video at `rate` frames a second lie from 00:00:00:00 to
    `timecode`; None where it is not a timecode of that rate (its frames past the second's).

    A drop-frame timecode (29.97 or 59.94 fps, ';' before the frames) skips frame numbers 0 and
    1 (0-3 at 59.94) at the start of each minute but every tenth, so its labels keep to the clock."""
    match = TIMECODE.match(timecode.strip())
    base = round(rate)
    if not match or base <= 0 or int(match.group(5)) >= base:
        return None
    hours, minutes, seconds, _, frame = match.groups()
    total_minutes = int(hours) * 60 + int(minutes)
    return ((total_minutes * 60 + int(seconds)) * base + int(frame)
            - _skipped(match.group(4), base) * (total_minutes - total_minutes // 10))


def shifted_timecode(timecode: str, frames: int, rate: Fraction) -> str:
    """`timecode` moved on by `frames` frames of a video at `rate` frames a second, written as
    it was (drop-frame stays drop-frame; past 24 hours it wraps); a value that is not a
    timecode is returned as it is."""
    number = timecode_frames(timecode, rate)
    if number is None:
        return timecode
    match = TIMECODE.match(timecode.strip())
    base, separator, digits = round(rate), match.group(4), len(match.group(5))
    skipped = _skipped(separator, base)
    number = (number + frames) % (_DAY_SECONDS * base - skipped * (24 * 60 - 24 * 6))
    if skipped:
        per_ten_minutes = 600 * base - 9 * skipped
        tens, rest = divmod(number, per_ten_minutes)
        number += 9 * skipped * tens
        if rest >= skipped:
            number += skipped * ((rest - skipped) // (per_ten_minutes // 10))
    frame_number, second = number % base, number // base
    return f"{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}{separator}{frame_number:0{digits}d}"


def _skipped(separator: str, base: int) -> int:
    """Frame labels a drop-frame timecode skips a minute: 2 at 29.97 fps, 4 at 59.94; else 0."""
    return base // 30 * 2 if separator in ";," and base % 30 == 0 else 0


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
    file's (MXF), else a timecode track's, else the pictures' own (`VideoInfo.own_timecode`);
    None where IN has none."""
    return _tagged_timecode(info) or info.video.own_timecode


def untagged_timecode(info: MediaInfo) -> dict[str, str]:
    """The timecode tag OUT's video gets where IN's timecode is in no tag, only in its pictures
    (a DVD's or a broadcast capture's MPEG-2 groups, a film scan's DPX headers); {} otherwise.
    OUT's container then holds it (MOV's and MP4's timecode track, Matroska's tag, MXF's
    timecode), as an MPEG-1/2 OUT's own groups do (`restamp_gop`)."""
    own = info.video.own_timecode
    return {"timecode": own} if own and _tagged_timecode(info) is None else {}


def _tagged_timecode(info: MediaInfo) -> str | None:
    video = next(s for s in info.streams if s.index == info.video.index)
    for tags in (video.metadata, info.metadata, *(s.metadata for s in info.streams if s.type == "data")):
        for key, value in tags.items():
            if key.lower() == "timecode":
                return value
    return None


def gop_timecode(data: bytes) -> str | None:
    """The timecode of the first group of pictures' header in MPEG-1/2 video `data` (a packet):
    "HH:MM:SS:FF", ';' before the frames for drop-frame; None where `data` holds no such header.
    It names the group's first picture on screen.

    Read from the bytes, not from FFmpeg's GOP_TIMECODE side data, which a picture whose packet
    ends with the next group's header gets from that header: in intra-only video (a group a
    picture) the first frame would carry the second's timecode."""
    at = _gop_header(data)
    if at is None:
        return None
    code = int.from_bytes(data[at:at + 4], "big") >> 7
    hours, minutes, seconds, frames = code >> 19 & 0x1F, code >> 13 & 0x3F, code >> 6 & 0x3F, code & 0x3F
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{';' if code >> 24 & 1 else ':'}{frames:02d}"


def restamp_gop(data: memoryview, first: str, rate: Fraction) -> None:
    """Renumber the group of pictures' header in `data` (a packet of MPEG-1/2 video as FFmpeg's
    encoder writes it, whose groups count the encoder's pictures from 00:00:00:00) from `first`,
    the timecode of the encoder's first picture; drop-frame where `first` is. Why: the encoder
    takes no timecode, and a group's header is where MPEG-2's players and broadcast checks read it."""
    raw = bytes(data)
    at, counted = _gop_header(raw), gop_timecode(raw)
    frames = None if counted is None else timecode_frames(counted, rate)
    if at is None or frames is None:
        return
    match = TIMECODE.match(shifted_timecode(first, frames, rate))
    if match is None:
        return
    hours, minutes, seconds, separator, frame = match.groups()
    code = (int(separator in ";,") << 24 | int(hours) << 19 | int(minutes) << 13 | 1 << 12 | int(seconds) << 6
            | int(frame))
    flags = int.from_bytes(data[at:at + 4], "big") & 0x7F  # closed GOP, broken link, padding
    data[at:at + 4] = (code << 7 | flags).to_bytes(4, "big")


def _gop_header(data: bytes) -> int | None:
    """Where the 25-bit timecode of the first group of pictures' header in `data` starts (drop-frame
    flag, hours (5 bits), minutes (6), a marker bit, seconds (6), pictures (6)); None if none."""
    at = data.find(b"\x00\x00\x01\xb8")  # the group start code
    return None if at < 0 or len(data) < at + 8 else at + 4


def range_seconds(start: float | str, duration: float | str | None, info: MediaInfo) -> tuple[float, float | None]:
    """A range given in seconds or in timecode as seconds after IN's first frame: a `start`
    timecode names a frame by IN's own timecode, a `duration` one counts frames."""
    rate = info.video.average_rate
    if isinstance(start, str):
        first = start_timecode(info)
        if first is None or rate is None:
            raise InputError(f"--start {start} is a timecode, and IN has none; give the start in seconds")
        wanted, at_first = timecode_frames(start, rate), timecode_frames(first, rate)
        if wanted is None or at_first is None:
            raise InputError(f"--start {start} is not a timecode of IN's {float(rate):g} fps; "
                             f"its first frame is at {first}")
        if wanted < at_first:
            raise InputError(f"--start {start} comes before IN's first frame, at {first}; choose a later start")
        start = float((wanted - at_first) / rate)
    if isinstance(duration, str):
        frames = timecode_frames(duration, rate) if rate else None
        if not frames:
            raise InputError(f"--duration {duration} is not a length of frames at IN's frame rate; "
                             "give the duration in seconds")
        duration = float(frames / rate)
    return start, duration
