"""Parts of a picture converted to RGB and edited in its own pixel format.

`converted_box` is the part of a picture converted for a box of it, so that the box's pixels get
the values a whole-picture conversion gives them (`Frame.to_rgb(box=...)` converts only that
`cropped` part); `blend_into` blends RGB into a picture by a mask in the same way, plane by plane,
so every sample outside the mask keeps its stored value. A packed picture whose samples are not
whole bytes apart is edited through its `blend_twin`; `editable` says which pictures can be.
"""

from __future__ import annotations

import functools

import av
import numpy as np

from vidface.io.pixels import (RGB_FORMATS, addressable, chroma_steps, plane_array, plane_factors, plane_rows,
                               reformatted, row_bytes)


_CONVERSION_MARGIN = 16  # pixels around a box converted with it (> the chroma filter's reach)
BLEND_CONTEXT = _CONVERSION_MARGIN + 3
"""Pixels of the picture around a mask that `blend_into` reads: the margin, and the rounding of
its box to the chroma samples (up to 4 pixels a sample)."""


def converted_box(source: av.VideoFrame, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1, end exclusive; stored orientation) converted between the
    source's format and RGB for the pixels in `box`, so that they get the values a whole-picture
    conversion gives them: the box with a margin, for the chroma filter to see the same
    neighbours, aligned to the chroma subsampling; the whole picture where its size is odd (odd
    sizes convert chroma another way)."""
    height, width = source.height, source.width
    step_y, step_x = chroma_steps(source)
    if height % step_y or width % step_x:
        return 0, 0, width, height
    x0, y0, x1, y1 = box
    return (max(0, (x0 - _CONVERSION_MARGIN) // step_x * step_x), max(0, (y0 - _CONVERSION_MARGIN) // step_y * step_y),
            min(width, -(-(x1 + _CONVERSION_MARGIN) // step_x) * step_x),
            min(height, -(-(y1 + _CONVERSION_MARGIN) // step_y) * step_y))


def cropped(video: av.VideoFrame, box: tuple[int, int, int, int]) -> av.VideoFrame:
    """The pixels in `box` (stored orientation, aligned to the chroma subsampling) of a
    `addressable` picture, as a picture of their own with its colour tags (no interlaced flag)."""
    x0, y0, x1, y1 = box
    part = av.VideoFrame(x1 - x0, y1 - y0, video.format.name)
    for index, ((fy, fx), plane, target) in enumerate(zip(plane_factors(video), video.planes, part.planes)):
        samples = plane_array(plane, video.format, index)
        plane_array(target, part.format, index)[:] = samples[y0 // fy:-(-y1 // fy), x0 // fx:-(-x1 // fx)]
    part.colorspace = video.colorspace
    part.color_range = video.color_range
    return part


def blend_box(source: av.VideoFrame, mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1, end exclusive; stored orientation) that `blend_into` converts
    for `mask` (a patch at `origin`, with some nonzero value): `converted_box` of the mask's box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    ox, oy = origin
    return converted_box(source, (ox + int(cols[0]), oy + int(rows[0]), ox + int(cols[-1]) + 1,
                                  oy + int(rows[-1]) + 1))


def blend_into(source: av.VideoFrame, rgb: np.ndarray, mask: np.ndarray,
               origin: tuple[int, int] = (0, 0)) -> av.VideoFrame:
    """Blend `rgb` (h×w×3 uint8 or uint16 RGB, stored orientation, a patch whose top-left pixel
    is at `origin` (x, y), the whole picture at (0, 0)) over `source` by `mask` (h×w float32 in [0, 1])
    in the source's pixel format; samples whose mask footprint is all 0 keep their exact stored
    value. The patch must hold the pixels `blend_box` names. Returns `source`, edited in place:
    its buffers are made private first (the decoder's reference pictures are untouched), and it
    keeps everything the decoder attached to it (interlacing and field order, captions and
    other side data, colour tags).
    """
    if not mask.any():
        return source
    fmt = source.format
    if not addressable(source):
        return _blend_through_twin(source, rgb, mask, origin)
    # Convert and blend only the box around the mask: the cost follows the edited area, not the
    # frame size.
    x0, y0, x1, y1 = blend_box(source, mask, origin)
    if not inside((x0, y0, x1, y1), origin, mask.shape):
        raise ValueError(f"the patch at {origin} of shape {mask.shape} does not hold the pixels the blend "
                         f"converts, {(x0, y0, x1, y1)}")
    ox, oy = origin
    patch = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    edited = reformatted(
        av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[patch]), format=RGB_FORMATS[rgb.dtype]),
        format=fmt.name,
        dst_colorspace=source.colorspace,
        dst_color_range=source.color_range,
    )
    region = mask[patch]
    source.make_writable()
    for index, ((fy, fx), plane, new_plane) in enumerate(zip(plane_factors(source), source.planes, edited.planes)):
        out = plane_array(plane, fmt, index)
        box = (slice(y0 // fy, -(-y1 // fy)), slice(x0 // fx, -(-x1 // fx)))
        old = out[box]
        new = plane_array(new_plane, fmt, index)
        weight = _pool_mask(region, old.shape[0], old.shape[1])[:, :, None]
        mixed = np.rint(old.astype(np.float32) * (1.0 - weight) + new.astype(np.float32) * weight)
        blended = np.where(weight > 0, mixed, old).astype(out.dtype)
        for channel in _alpha_channels(fmt.name, index):
            blended[:, :, channel] = old[:, :, channel]
        out[box] = blended
    return source


def _blend_through_twin(source: av.VideoFrame, rgb: np.ndarray, mask: np.ndarray,
                        origin: tuple[int, int]) -> av.VideoFrame:
    """`blend_into` for a packed picture whose samples are not whole bytes apart (4:2:2 "UYVY"
    and "YUY2" captures, RGB with a padding byte): blended in its `blend_twin`, then converted
    back and written into its own buffer (which keeps its flags and side data)."""
    twin = blend_twin(source.format.name)
    if twin is None:
        raise ValueError(f"cannot blend into pixel format {source.format.name}")
    picture = reformatted(source, format=twin)
    picture.colorspace, picture.color_range = source.colorspace, source.color_range
    back = reformatted(blend_into(picture, rgb, mask, origin), format=source.format.name)
    source.make_writable()
    (row,) = row_bytes(source)
    plane_rows(source.planes[0])[:, :row] = plane_rows(back.planes[0])[:, :row]
    return source


def editable(video: av.VideoFrame) -> bool:
    """Whether `with_rgb` can change part of a picture of this format and keep every other
    sample as stored: planar and byte-packed formats, and packed ones with an exact
    `blend_twin`; not 16-bit RGB, 1-bit or palette pictures."""
    return addressable(video) or blend_twin(video.format.name) is not None


_TWIN_CANDIDATES = ("yuv422p", "yuv411p", "yuv420p", "yuv444p", "yuva444p", "yuv422p10le", "yuv422p12le",
                    "yuv444p10le", "yuv444p12le", "yuv444p16le", "yuva444p16le", "rgb24", "bgr24", "rgba", "gbrp",
                    "gbrap", "gbrp10le", "gbrp12le", "gbrp16le", "gbrap16le", "gray", "gray16le")
"""Formats `blend_twin` tries, those of a picture's own colour model (RGB or YUV) first."""


@functools.lru_cache(maxsize=None)
def blend_twin(format_name: str) -> str | None:
    """A format `blend_into` can address (planar, or one byte or two a sample) that holds every
    sample of the one-plane format `format_name` exactly, so that a picture converted to it and
    back is the same picture; None where there is none (16-bit RGB, which FFmpeg's scaler does
    not give back as it was, 1-bit, a palette's). Found by converting a random picture both ways."""
    fmt = av.VideoFormat(format_name)
    if any(c.plane or c.bits < 2 for c in fmt.components) or fmt.has_palette:
        return None  # more than one plane, 1-bit (dithered), or a palette
    rng = np.random.default_rng(0)
    try:
        picture = reformatted(av.VideoFrame.from_ndarray(rng.integers(0, 256, (16, 32, 3), np.uint8), format="rgb24"),
                              format="gbrp16le")
        for plane in picture.planes:  # every 16-bit value, so that no format's samples are all even
            np.frombuffer(plane, np.uint16)[:] = rng.integers(0, 65536, plane.buffer_size // 2)
        packed = reformatted(picture, format=format_name)
    except (av.error.FFmpegError, ValueError):
        return None
    (row,) = row_bytes(packed)
    samples = plane_rows(packed.planes[0])[:, :row]
    for twin in sorted(_TWIN_CANDIDATES, key=lambda name: av.VideoFormat(name).is_rgb != fmt.is_rgb):
        try:
            back = reformatted(reformatted(packed, format=twin), format=format_name)
        except (av.error.FFmpegError, ValueError):
            continue
        if np.array_equal(samples, plane_rows(back.planes[0])[:, :row]):
            return twin
    return None


@functools.lru_cache(maxsize=None)
def _alpha_channels(format_name: str, plane: int) -> tuple[int, ...]:
    """Which samples of `plane_array(plane)` in `format_name` are alpha, which a blend keeps as
    stored: a face is restored in colour, and the matte a compositor keyed stays as it was.
    Found by converting black, which gives no colour sample the largest value and alpha that."""
    fmt = av.VideoFormat(format_name)
    alpha = [c for c in fmt.components if c.is_alpha and c.plane == plane]
    if not alpha:
        return ()
    black = reformatted(av.VideoFrame.from_ndarray(np.zeros((2, 2, 3), np.uint8), format="rgb24"), format=format_name)
    samples = plane_array(black.planes[plane], fmt, plane)[0, 0]
    return tuple(int(i) for i in np.flatnonzero(samples == (1 << alpha[0].bits) - 1))


def inside(box: tuple[int, int, int, int], origin: tuple[int, int], shape: tuple[int, ...]) -> bool:
    """Whether `box` (x0, y0, x1, y1) lies in the patch of `shape` (h, w) at `origin` (x, y)."""
    (ox, oy), (height, width) = origin, shape[:2]
    return ox <= box[0] and oy <= box[1] and box[2] <= ox + width and box[3] <= oy + height


def _pool_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Average `mask` over blocks so it has height×width samples (chroma subsampling);
    edge blocks of odd-sized pictures are padded by repeating the last row/column."""
    full_h, full_w = mask.shape
    if (full_h, full_w) == (height, width):
        return mask
    fy, fx = -(-full_h // height), -(-full_w // width)
    padded = np.pad(mask, ((0, height * fy - full_h), (0, width * fx - full_w)), mode="edge")
    return padded.reshape(height, fy, width, fx).mean(axis=(1, 3))
