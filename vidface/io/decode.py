"""Stream the input's video as `Frame` records, in presentation order, with threaded decoding."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av

from vidface.errors import InputError
from vidface.io.frames import Frame
from vidface.io.probe import clockwise_rotation, first_video_stream, open_input


def decode_frames(
    path: str | os.PathLike[str],
    *,
    start_pts: int | None = None,
    stop_pts: int | None = None,
) -> Iterator[Frame]:
    """Yield every frame of IN's first video stream with pts in [start_pts, stop_pts).

    pts are in the video stream's time base (None: from the first frame / to the end). A
    start seeks to the keyframe before it and decodes forward, so the range is exact to the
    frame. Frame.index counts from 0 at the first yielded frame. The final empty packet is
    fed to the decoder too: it flushes the frames a threaded decoder still holds.
    """
    path = Path(path)
    with open_input(path) as container:
        stream = first_video_stream(container, path)
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        if start_pts is not None:
            container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        index = 0
        last_pts: int | None = None
        last_duration: int | None = None
        try:
            for packet in container.demux(stream):
                for video in packet.decode():
                    pts = video.pts
                    if pts is None:
                        pts = 0 if last_pts is None else last_pts + (last_duration or 1)
                        video.pts = pts
                    if start_pts is not None and pts < start_pts:
                        continue
                    if stop_pts is not None and pts >= stop_pts:
                        return
                    duration = video.duration or None
                    yield Frame(index=index, pts=pts, time_base=time_base, duration=duration,
                                video=video, rotation=clockwise_rotation(video))
                    index += 1
                    last_pts, last_duration = pts, duration
        except av.error.FFmpegError as error:
            raise InputError(
                f"input {str(path)!r} cannot be decoded after frame {index} "
                f"({(error.strerror or str(error)).strip()}); it may be truncated or corrupt"
            ) from None
