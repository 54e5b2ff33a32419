"""A sound file beside IN (`vidface restore --audio FILE`): the sound of a film scan's picture
files, or of a tape whose picture and sound were captured apart. Its audio streams go into OUT
after IN's own, packet for packet as IN's are; its start is IN's first frame."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import InputError
from vidface.io.probe import StreamInfo, VideoInfo, stream_info
from vidface.io.source import TAG_ERRORS, codec_name, reason


@dataclass(frozen=True)
class SoundFile:
    """`path`'s audio `streams`; `offset`: the seconds its packets' times are moved by onto IN's
    timeline (IN's first frame's time, less the file's first packet's)."""

    path: Path
    streams: tuple[StreamInfo, ...]
    offset: Fraction

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"--audio {self.path.name!r}"


def sound_file(path: str | os.PathLike[str], video: VideoInfo) -> SoundFile:
    """The sound file at `path`, to be laid beside IN's `video`; InputError of one line where it
    is missing or holds no sound FFmpeg reads."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--audio {str(path)!r} " + ("is not a file; give a sound file" if path.exists() else
                                                      "does not exist; check the path"))
    try:
        with av.open(str(path), metadata_errors=TAG_ERRORS) as container:
            audio = [stream for stream in container.streams if stream.type == "audio"]
            if not audio:
                kinds = ", ".join(f"{s.type} {codec_name(s)}" for s in container.streams) or "none"
                raise InputError(f"--audio {str(path)!r} has no audio stream (streams: {kinds}); give a sound file")
            starts = [Fraction(s.start_time) * s.time_base for s in audio if s.start_time is not None]
            streams = tuple(stream_info(stream) for stream in audio)
    except av.error.FFmpegError as error:
        raise InputError(f"--audio {str(path)!r} is not a readable sound file ({reason(error)})") from None
    return SoundFile(path, streams, Fraction(video.pts[0]) * video.time_base - min(starts, default=Fraction(0)))
