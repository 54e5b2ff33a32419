"""Stream the input's video as `Frame` records, in presentation order, with threaded decoding."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import InputError
from vidface.io.frames import Frame
from vidface.io.probe import VideoInfo, clockwise_rotation, field_shown_first
from vidface.io.sequence import ImageSequence, image_sequence
from vidface.io.source import demuxed, first_video_stream, open_input, reason, video_decoder


def decode_frames(
    path: str | os.PathLike[str],
    *,
    start_pts: int | None = None,
    stop_pts: int | None = None,
    video: VideoInfo | None = None,
) -> Iterator[Frame]:
    """Yield every frame of IN's first video stream with pts in [start_pts, stop_pts).

    pts are in the video stream's time base (None: from the first frame / to the end). A
    start seeks to the keyframe before it and decodes forward, so the range is exact to the
    frame. Frame.index counts from 0 at the first yielded frame. The final empty packet is
    fed to the decoder too: it flushes the frames a threaded decoder still holds. video: the
    probe's description of the stream, whose `decode_times` (when IN's packets carry times in
    decode order) give the frames their own times (`DecodeOrderTimes`), and whose field order
    says which field of an interlaced frame is shown first (`Frame.bottom_first`; the top
    without it).
    """
    path = Path(path)
    with open_input(path, video.average_rate if video else None) as container:
        stream = first_video_stream(container, path)
        decoder = video_decoder(stream)
        decoder.thread_type = "AUTO"
        time_base = stream.time_base
        if start_pts is not None:
            container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        index = 0
        last_pts: int | None = None
        last_duration: int | None = None
        retimed = DecodeOrderTimes(video.pts, video.decode_times) if video and video.decode_times else None
        pixel_aspect = stream.sample_aspect_ratio or Fraction(1)
        bottom_first = field_shown_first(video.field_order if video else "unknown") == "bff"
        sequence = image_sequence(path)
        fed: int | None = None  # the pts of the last packet fed to the decoder
        try:
            for packet in demuxed(container, stream):
                fed = packet.pts if packet.pts is not None else fed
                for picture in decoder.decode(packet):
                    pts = picture.pts if retimed is None else retimed.time_of(picture)
                    if pts is None:
                        pts = 0 if last_pts is None else last_pts + (last_duration or 1)
                    picture.pts = pts
                    if start_pts is not None and pts < start_pts:
                        continue
                    if stop_pts is not None and pts >= stop_pts:
                        return
                    duration = picture.duration or None
                    yield Frame(index=index, pts=pts, time_base=time_base, duration=duration,
                                video=picture, rotation=clockwise_rotation(picture), pixel_aspect=pixel_aspect,
                                bottom_first=bottom_first)
                    index += 1
                    last_pts, last_duration = pts, duration
        except av.error.FFmpegError as error:
            why = reason(error)
            unread = _next_position(start_pts, last_pts)
            broken = None if sequence is None else _broken_image(sequence, range(unread, (fed or unread) + 1))
            if broken is not None:
                raise InputError(f"input {str(path)!r} cannot be decoded at frame {index}: its file "
                                 f"{broken.name!r} is truncated or corrupt ({why}); replace it") from None
            raise InputError(
                f"input {str(path)!r} cannot be decoded after frame {index} ({why}); it may be truncated or corrupt"
            ) from None
        if sequence is not None:
            _check_sequence_read(path, sequence, _next_position(start_pts, last_pts), stop_pts, index)


def _next_position(start_pts: int | None, last_pts: int | None) -> int:
    """The pts of the frame after the last one put out (the range's first before any)."""
    return (start_pts or 0) if last_pts is None else last_pts + 1


def _broken_image(sequence: ImageSequence, positions: range) -> Path | None:
    """Of the sequence's files at `positions` (counted from its first file: the pts image2
    gives), the first that cannot be decoded alone. A threaded decoder reports a file's error
    some packets after feeding it, so the files fed since the last frame put out are tried one
    by one."""
    for position in positions:
        file = sequence.file(sequence.numbers.start + position)
        try:
            with av.open(str(file)) as container:
                for _ in container.decode(video=0):
                    pass
        except (av.error.FFmpegError, IndexError):
            return file
    return None


def _check_sequence_read(path: Path, sequence: ImageSequence, unread: int, stop_pts: int | None, index: int) -> None:
    """InputError where the sequence's files ended before the range did: image2 ends the video at
    a file that is empty or gone, and the frames after it would be lost without a word."""
    end = len(sequence.numbers) if stop_pts is None else min(stop_pts, len(sequence.numbers))
    if unread >= end:
        return
    file = sequence.file(sequence.numbers.start + unread)
    try:
        state = "is empty" if file.stat().st_size == 0 else "cannot be read"
    except OSError:
        state = "is gone"
    raise InputError(f"input {str(path)!r} ends at frame {index}: its file {file.name!r} {state}; replace it")


class DecodeOrderTimes:
    """The frames' own times for an input whose packets carry times in decode order (AVI and
    ASF store one time per packet; H.264 with B-frames is decoded in another order than shown).

    The decoder puts out frames in the order shown, each with the time of the packet it was fed
    last, `delay` packets (its reordering depth) after that frame's own place: the packet n-th
    in decode order goes with the frame n - delay places on. The first frame of a decode is a
    keyframe, whose packet's time is its own: it gives the delay. A frame with no packet time
    (flushed at the end) takes the place after the previous one. pts: the frames' times, sorted;
    decode_times: the packets' times in decode order."""

    def __init__(self, pts: tuple[int, ...], decode_times: tuple[int, ...]) -> None:
        self.pts = pts
        self.decode_times = decode_times
        self.delay: int | None = None
        self.place = -1

    def time_of(self, picture: av.VideoFrame) -> int | None:
        fed = self._position(self.decode_times, picture.dts)
        if self.delay is None:
            own = self._position(self.pts, picture.pts)
            if own is None or fed is None:
                return picture.pts
            self.delay = fed - own
        place = self.place + 1 if fed is None else fed - self.delay
        if not 0 <= place < len(self.pts):
            return picture.pts
        self.place = place
        return self.pts[place]

    @staticmethod
    def _position(times: tuple[int, ...], time: int | None) -> int | None:
        if time is None:
            return None
        index = bisect.bisect_left(times, time)
        return index if index < len(times) and times[index] == time else None
