"""An interlaced frame's two fields as pictures of their own, and back into the frame.

A field is every other row of the frame: the top field the rows 0, 2, 4..., the bottom field
rows 1, 3, 5... It is one moment of the camera's, half a frame's time from the other. Every
plane is split so, chroma included: interlaced 4:2:0 video subsamples each field's chroma on
its own, so its chroma rows alternate between the fields as its luma rows do. A field picture
has the frame's pixel format at half its height; its pixels are shown twice as tall as wide
(`Frame.pixel_aspect` halved).
"""

from __future__ import annotations

import av
import numpy as np

from vidface.io.frames import Frame
from vidface.io.pixels import copy_rows, plane_rows

__all__ = ["field_frames", "field_parities", "in_field", "in_frame_rows", "splits_into_fields", "weave"]


def splits_into_fields(frame: Frame) -> bool:
    """Whether `frame` is interlaced and its two fields are pictures of one size: every plane has
    an even number of rows (4:2:0 needs a height that is a multiple of 4), stored upright."""
    video = frame.video
    return bool(video.interlaced_frame) and frame.rotation == 0 and all(
        plane.height % 2 == 0 for plane in video.planes)


def field_parities(frame: Frame) -> tuple[int, int]:
    """The fields' row parities (0: top, 1: bottom) in the order they are shown."""
    return (1, 0) if frame.bottom_first else (0, 1)


def field_frames(frame: Frame) -> tuple[Frame, Frame]:
    """The two fields of `frame` (`splits_into_fields`), in the order they are shown, each a
    frame of its own: indices 2 * index and 2 * index + 1, times half a frame apart (in half the
    time base), pixels twice as tall. Their pictures are copies, owned by their holder."""
    video = frame.video
    ticks = frame.duration or 1
    fields = []
    for order, parity in enumerate(field_parities(frame)):
        picture = av.VideoFrame(video.width, video.height // 2, video.format.name)
        for source, target in zip(video.planes, picture.planes):
            copy_rows(plane_rows(source)[parity::2], plane_rows(target))
        for tag in ("colorspace", "color_range", "color_primaries", "color_trc"):
            setattr(picture, tag, getattr(video, tag))
        fields.append(Frame(index=2 * frame.index + order, pts=2 * frame.pts + order * ticks,
                            time_base=frame.time_base / 2, duration=ticks, video=picture,
                            pixel_aspect=frame.pixel_aspect / 2))
    return fields[0], fields[1]


def weave(frame: Frame, fields: tuple[Frame, Frame], edited: tuple[bool, bool]) -> Frame:
    """`frame` with the rows of its `fields` (as `field_frames` gave them, in the order shown)
    that were `edited` since written back, into `frame`'s own picture (a private copy where
    `frame` is shared). A frame whose fields were not edited is returned as it is, bit-exact."""
    if not any(edited):
        return frame
    target = frame.copy() if frame.shared else frame
    target.video.make_writable()  # the decoder may still predict from the picture it gave
    for parity, field, changed in zip(field_parities(frame), fields, edited):
        if not changed:
            continue
        for source, plane in zip(field.video.planes, target.video.planes):
            copy_rows(plane_rows(source), plane_rows(plane)[parity::2])
    return target


def in_field(points: np.ndarray, parity: int) -> np.ndarray:
    """Frame pixel coordinates (..., 2: x, y) in the pixels of the field of `parity`: frame row
    y is field row (y - parity) / 2."""
    return points * (1.0, 0.5) - (0.0, parity / 2)


def in_frame_rows(y0: float, y1: float, parity: int) -> tuple[float, float]:
    """The frame rows [y0', y1') that field rows [y0, y1) of the field of `parity` lie on."""
    return 2 * y0 + parity, 2 * y1 + parity - 1
