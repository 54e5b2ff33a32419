"""A sound file beside IN (`vidface restore --audio FILE`): the sound of a film scan's picture
files, or of a tape whose picture and sound were captured apart. Its audio streams go into OUT
after IN's own, packet for packet as IN's are.

Where it is placed on IN's timeline: by time of day where both say theirs (a Broadcast WAV's
time reference, the samples since midnight its recorder wrote, and IN's timecode), else its
start at IN's first frame. Its sound before IN's first frame is left out, as an editor's sync
leaves out a recording's pre-roll."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import InputError
from vidface.io.copies import CopyRange
from vidface.io.probe import MediaInfo, StreamInfo, stream_info
from vidface.io.source import TAG_ERRORS, codec_name, reason
from vidface.io.timecode import start_timecode, timecode_frames

log = logging.getLogger(__name__)

_DAY = Fraction(24 * 3600)


@dataclass(frozen=True)
class SoundFile:
    """`path`'s audio `streams`; `offset`: the seconds its packets' times are moved by onto IN's
    timeline; `first`: IN's first frame's time there; `synced`: how it was placed, for --dry-run."""

    path: Path
    streams: tuple[StreamInfo, ...]
    offset: Fraction
    first: Fraction
    synced: str

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"--audio {self.path.name!r}"

    def range_of(self, copy_range: CopyRange) -> CopyRange:
        """`copy_range` (on IN's timeline) for the file's own packet times: moved by `offset`,
        and from IN's first frame on."""
        start = self.first if copy_range.start is None else max(copy_range.start, self.first)
        return CopyRange(start - self.offset, None if copy_range.stop is None else copy_range.stop - self.offset,
                         copy_range.shift - self.offset)


def open_sound(path: Path) -> av.container.InputContainer:
    """The sound file at `path`, opened (its tags as IN's are read); InputError of one line where
    FFmpeg cannot read it."""
    try:
        return av.open(str(path), metadata_errors=TAG_ERRORS)
    except av.error.FFmpegError as error:
        raise InputError(f"--audio {str(path)!r} is not a readable sound file ({reason(error)})") from None


def sound_file(path: str | os.PathLike[str], info: MediaInfo) -> SoundFile:
    """The sound file at `path`, placed on IN's timeline (`info`'s); InputError of one line
    where it is missing or holds no sound FFmpeg reads."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--audio {str(path)!r} " + ("is not a file; give a sound file" if path.exists() else
                                                      "does not exist; check the path"))
    with open_sound(path) as container:
        audio = [stream for stream in container.streams if stream.type == "audio"]
        if not audio:
            kinds = ", ".join(f"{s.type} {codec_name(s)}" for s in container.streams) or "none"
            raise InputError(f"--audio {str(path)!r} has no audio stream (streams: {kinds}); give a sound file")
        starts = [Fraction(s.start_time) * s.time_base for s in audio if s.start_time is not None]
        time_of_day = _time_reference(container.metadata, audio[0].codec_context.sample_rate)
        streams = tuple(stream_info(stream) for stream in audio)
    video = info.video
    first = Fraction(video.pts[0]) * video.time_base
    picture = start_timecode(info)
    frames = timecode_frames(picture, video.average_rate) if picture and video.average_rate else None
    placed, synced = first, "its start at IN's first frame"
    if time_of_day is not None and frames is not None:
        # The day wraps at midnight: a recording that began before it and a picture after.
        apart = (time_of_day - frames / video.average_rate + _DAY / 2) % _DAY - _DAY / 2
        placed, synced = first + apart, f"its time reference {float(apart):+.3f} s from IN's timecode {picture}"
    elif time_of_day is not None:
        log.info("%s has a time reference, and IN no timecode: its start is IN's first frame", path.name)
    return SoundFile(path, streams, placed - min(starts, default=Fraction(0)), first, synced)


def _time_reference(tags: dict[str, str], sample_rate: int) -> Fraction | None:
    """A Broadcast WAV's time of day at its first sample (its bext chunk's samples since
    midnight), in seconds; None where it has none."""
    try:
        samples = int(tags.get("time_reference", ""))
    except ValueError:
        return None
    return Fraction(samples, sample_rate) if sample_rate > 0 and samples >= 0 else None
