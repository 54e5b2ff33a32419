"""How a picture's samples lie in memory, and converting pictures between pixel formats.

Planar and byte-packed formats are `addressable`: each plane a grid of whole samples, one byte
or two each, that numpy can read and write in place (`plane_array`). Every format's rows end in
line padding, which `defined_padding` zeroes for the encoder; `row_bytes` says where it starts.
Conversions go through `reformatted`, one thread, the calling thread's own reformatter.
"""

from __future__ import annotations

import threading
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter


RGB_FORMATS = {np.dtype(np.uint8): "rgb24", np.dtype(np.uint16): "rgb48le"}
"""The packed RGB format of each sample type edits are made in."""


class _Reformatters(threading.local):
    """The calling thread's reformatter: PyAV's reformatters are not safe to share between threads."""

    def __init__(self) -> None:
        self.reformatter = VideoReformatter()


_REFORMATTERS = _Reformatters()


def reformatted(video: av.VideoFrame, **options: Any) -> av.VideoFrame:
    """`video` converted as ``video.reformat(**options)`` converts it, but by FFmpeg's scaler in
    one thread, through the calling thread's own reformatter, kept from call to call.

    Why not `av.VideoFrame.reformat`: since PyAV 17 it gives every frame a reformatter of its
    own, whose scaler starts a worker thread per core that lives as long as the frame: every
    frame paid for starting them, and the frames waiting in the pipeline's queues held hundreds
    of threads (thousands on a many-core machine, past some containers' limits). And FFmpeg's
    sliced conversion from RGB to 10-bit YUV writes wrong values (mid-grey luma) into the first
    8 samples of the row where a slice starts: a face pasted at the left edge of a 10-bit frame
    got a grey dash. In one thread every row is right (tools/bench_conversion.py measures both).
    """
    return _REFORMATTERS.reformatter.reformat(video, threads=1, **options)


def addressable(frame: av.VideoFrame) -> bool:
    """Whether the picture's planes hold whole samples of one size, one byte or two each, that
    `plane_array` can address: planar, or packed one pixel after another."""
    fmt = frame.format
    if fmt.has_palette or fmt.is_bit_stream or fmt.is_big_endian:
        return False
    if len(frame.planes) == 1 and fmt.padded_bits_per_pixel != len(fmt.components) * (
            8 if max(c.bits for c in fmt.components) <= 8 else 16):
        return False  # bit fields (16-bit RGB) or padding (RGB0): not one byte or two a sample
    for index, plane in enumerate(frame.planes):
        components = [c for c in fmt.components if c.plane == index]
        if not components or any(c.bits > 16 or (c.width, c.height) != (plane.width, plane.height)
                                 for c in components):
            return False
    return True


def plane_array(plane: av.video.plane.VideoPlane, fmt: av.VideoFormat, index: int) -> np.ndarray:
    """A writable height×width×components view of one plane (without line padding)."""
    components = [c for c in fmt.components if c.plane == index]
    dtype = np.uint16 if max(c.bits for c in components) > 8 else np.uint8
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
    channels = len(components)
    return rows[:, : plane.width * channels].reshape(plane.height, plane.width, channels)


def plane_factors(video: av.VideoFrame) -> list[tuple[int, int]]:
    """Per plane, the picture rows and columns one of its samples covers (chroma subsampling)."""
    return [(-(-video.height // plane.height), -(-video.width // plane.width)) for plane in video.planes]


def chroma_steps(video: av.VideoFrame) -> tuple[int, int]:
    """The picture rows and columns a sample of its most subsampled component covers (2, 2 for
    4:2:0), whether the components lie in planes of their own or are packed together."""
    components = video.format.components
    return (max(-(-video.height // c.height) for c in components),
            max(-(-video.width // c.width) for c in components))


def row_bytes(video: av.VideoFrame) -> list[int] | None:
    """Per plane, the bytes at the start of each row that hold its samples (the rest of the row
    is line padding); None for a palette picture, whose second plane is the palette."""
    fmt = video.format
    if fmt.has_palette:
        return None
    if len(video.planes) == 1:  # packed: bit fields, padding bytes and whole chroma pairs (UYVY) included
        step_x = chroma_steps(video)[1]
        return [-(-(-(-video.width // step_x) * step_x) * fmt.padded_bits_per_pixel // 8)]
    used = []
    for index, plane in enumerate(video.planes):
        components = [c for c in fmt.components if c.plane == index]
        sample_bytes = 1 << max(0, (max(c.bits for c in components) - 1).bit_length() - 3)  # 8, 16 or 32 bits
        used.append(plane.width * len(components) * sample_bytes)
    return used


def plane_rows(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable height×line_size view of a plane's bytes (a palette's plane: no row)."""
    return np.frombuffer(plane, dtype=np.uint8)[:plane.height * plane.line_size].reshape(plane.height, -1)


def copy_rows(source: np.ndarray, target: np.ndarray) -> None:
    """Copy rows of bytes (`plane_rows`, or every other of them) into as many rows of a plane, as
    far along each row as both reach, line padding included."""
    width = min(source.shape[1], target.shape[1])
    target[:, :width] = source[:, :width]


def defined_padding(video: av.VideoFrame) -> av.VideoFrame:
    """`video` with the bytes between each row's last sample and the next row (line padding) set to
    zero, for the encoder: every byte of every row it is handed is then defined.

    Why: line padding is memory nobody has to initialise. Frames FFmpeg allocates
    (`make_writable`, `reformat`, new frames) leave it as malloc returned it, and decoders' SIMD
    code may store into it; an encoder whose SIMD code loads whole vectors across a row's end
    would then give output that depends on the allocator's state. None of the encoders checked
    does (x264, x265, VP9, FFV1: `tools/repro_uninit_encode.py` fills the padding with 0 and 255
    and compares; x264's own fault of that kind is inside it: `encoder_setup.repeatable_options`), so
    this guards the encoders not checked, at the cost of reading the padding. Rows below the
    picture are not covered: FFmpeg's frames carry no size for them.

    Padding that is already all zero (the decoders' pooled buffers start zeroed) is only read.
    Otherwise a frame the decoder still references is copied first (`make_writable`, which keeps
    its flags and side data): its padding can hold samples the decoder predicts from, such as
    the column an odd width crops away. Palette pictures pass unchanged.
    """
    used = row_bytes(video)
    if used is None:
        return video
    padding = [plane_rows(plane)[:, row:] for plane, row in zip(video.planes, used)]
    if not any(area.any() for area in padding):
        return video
    video.make_writable()
    for plane, row in zip(video.planes, used):
        plane_rows(plane)[:, row:] = 0
    return video
