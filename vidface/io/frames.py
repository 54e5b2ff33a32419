"""Decoded video frames as records that keep their timing and their source pixels.

A `Frame` carries the decoded `av.VideoFrame` untouched (stored orientation, source pixel
format and bit depth) together with its timestamp, so a stage that changes nothing passes the
source pixels to the encoder exactly. Stages that edit pixels work in upright RGB
(`Frame.to_rgb`: 8-bit, or 16-bit for a picture of more than 8 bits a sample) and hand back a
picture plus a mask (`Frame.with_rgb`): the blend happens in the source's own pixel format,
plane by plane, so every pixel outside the mask keeps its stored value, 10-bit precision
included, and an edit made in 16-bit RGB keeps the source's precision inside the mask too.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter


@dataclass(frozen=True)
class Frame:
    """One video frame in presentation order.

    index: 0-based position in the output. pts/duration: in `time_base` units, as decoded
    (duration None when the source does not say). video: the decoded picture in its stored
    orientation and source pixel format. rotation: clockwise degrees (0, 90, 180, 270) that
    turn the stored picture upright. edits: what a processor replaced in the picture, as JSON-ready
    records (the faces a restorer pasted, `vidface.provenance`); empty for an untouched frame.
    pixel_aspect: the width a stored pixel is shown at over its height (the stream's sample
    aspect ratio: 64:45 for 16:9 PAL SD, whose pictures hold everything narrower than shown).

    Ownership: a frame's picture belongs to whoever holds the frame, who may change it in place
    (`with_rgb`; the encoder sets its timestamp and zeroes its padding), unless `shared` says
    another holder reads the same picture later (a resumable run's next segment warms up on
    it): then `with_rgb` changes a private copy, and the encoder refuses it.
    """

    index: int
    pts: int
    time_base: Fraction
    duration: int | None
    video: av.VideoFrame
    rotation: int = 0
    edits: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    shared: bool = False
    pixel_aspect: Fraction = Fraction(1)

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    @property
    def pixel_shape(self) -> tuple[float, float]:
        """The shape (width, height) an upright pixel is shown at (`pixel_aspect`, turned with
        the picture): (1, 1) for square pixels."""
        aspect = float(self.pixel_aspect)
        return (1.0, aspect) if self.rotation in (90, 270) else (aspect, 1.0)

    @property
    def deep(self) -> bool:
        """Whether the picture has more than 8 bits a sample (10-bit video, 16-bit RGB, ...): an
        edit that should keep that precision works in `to_rgb(deep=True)`."""
        return max(component.bits for component in self.video.format.components) > 8

    def to_rgb(self, deep: bool = False, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """The picture as H×W×3 RGB, upright (rotation applied): uint8, or with `deep` uint16
        (16-bit levels, 0-65535). An interlaced picture is converted as one frame, as its `copy`
        (which has no interlaced flag) is, so a frame and its copy give the same RGB; FFmpeg
        would otherwise convert the fields apart.

        box: only the upright pixels (x0, y0, x1, y1, end exclusive), the same values the whole
        picture's conversion gives there; only they and a margin around them are converted
        (`converted_box`), so the cost follows the box, not the picture."""
        turn = self.rotation // 90
        height, width = _upright_size(self.video, self.rotation)
        x0, y0, x1, y1 = box or (0, 0, width, height)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"box must be a nonempty part of the {width}x{height} picture, got {box}")
        sx, sy = _stored_origin((x0, y0), (y1 - y0, x1 - x0), turn, (height, width))
        sw, sh = (x1 - x0, y1 - y0) if turn % 2 == 0 else (y1 - y0, x1 - x0)
        video = self.video
        converted = converted_box(video, (sx, sy, sx + sw, sy + sh)) if _blendable(video) else (
            0, 0, video.width, video.height)
        if converted != (0, 0, video.width, video.height):
            video = _cropped(video, converted)
        elif video.interlaced_frame:
            video = self.copy().video
        rgb = reformatted(video, format=_RGB_FORMATS[np.dtype(np.uint16 if deep else np.uint8)]).to_ndarray()
        cx, cy = converted[:2]
        rgb = rgb[sy - cy:sy - cy + sh, sx - cx:sx - cx + sw]
        return np.ascontiguousarray(np.rot90(rgb, k=-turn))

    def copy(self) -> Frame:
        """This frame with a private copy of its picture (samples, timestamp, colour tags; not the
        decoder's flags and side data, which only the encoder reads), not shared."""
        video = self.video
        picture = av.VideoFrame(video.width, video.height, video.format.name)
        for source, target in zip(video.planes, picture.planes):
            width = min(source.line_size, target.line_size)
            rows = np.frombuffer(source, np.uint8)[:source.height * source.line_size].reshape(source.height, -1)
            out = np.frombuffer(target, np.uint8)[:target.height * target.line_size].reshape(target.height, -1)
            out[:, :width] = rows[:, :width]
        picture.pts = video.pts
        if video.time_base is not None:
            picture.time_base = video.time_base
        picture.colorspace = video.colorspace
        picture.color_range = video.color_range
        return replace(self, video=picture, shared=False)

    def with_rgb(self, rgb: np.ndarray, mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> Frame:
        """This frame with `rgb` blended over its picture by `mask`: the picture is changed in
        place (`blend_into`), so it keeps what the decoder attached to it (field order,
        captions, ...); a shared frame's picture is copied first (`copy`) and the copy returned.

        rgb: h×w×3 RGB, uint8 or uint16 (16-bit levels, as `to_rgb(deep=True)`), upright, a
        patch of the picture whose top-left pixel is at `origin` (x, y) in upright pixels (the
        whole picture at (0, 0)). mask: h×w float32 in [0, 1]; 1 takes `rgb`. The blend is done
        in the source pixel format, per plane, with the mask averaged over each chroma sample's
        footprint: wherever the mask is 0 (for chroma: over the whole footprint) the stored
        sample values are kept exactly, at the source's bit depth.
        The blend converts the picture around the mask (`blend_box`): a patch that holds
        BLEND_CONTEXT pixels of the picture around its mask is used as it is, else the picture's
        own RGB fills in.
        """
        height, width = _upright_size(self.video, self.rotation)
        x, y = origin
        if mask.ndim != 2 or not (0 <= x and 0 <= y and x + mask.shape[1] <= width and y + mask.shape[0] <= height):
            raise ValueError(f"mask must be a 2-D patch inside the {height}x{width} picture, "
                             f"got shape {mask.shape} at {origin}")
        if rgb.shape != (*mask.shape, 3) or rgb.dtype not in _RGB_FORMATS:
            raise ValueError(f"rgb must be {mask.shape[0]}x{mask.shape[1]}x3 uint8 or uint16 like the mask, "
                             f"got {rgb.shape} {rgb.dtype}")
        turn = self.rotation // 90
        stored_rgb = np.ascontiguousarray(np.rot90(rgb, k=turn))
        stored_mask = np.clip(np.rot90(mask, k=turn).astype(np.float32), 0.0, 1.0)
        stored_origin = _stored_origin(origin, mask.shape, turn, (height, width))
        if not stored_mask.any():
            return self
        frame = self.copy() if self.shared else self
        if not _blendable(frame.video) or not _inside(blend_box(frame.video, stored_mask, stored_origin),
                                                      stored_origin, stored_mask.shape):
            whole = np.rot90(frame.to_rgb(deep=rgb.dtype == np.uint16), k=turn).copy()
            whole_mask = np.zeros(whole.shape[:2], np.float32)
            ox, oy = stored_origin
            rows, cols = slice(oy, oy + stored_mask.shape[0]), slice(ox, ox + stored_mask.shape[1])
            whole[rows, cols], whole_mask[rows, cols] = stored_rgb, stored_mask
            stored_rgb, stored_mask, stored_origin = whole, whole_mask, (0, 0)
        blend_into(frame.video, stored_rgb, stored_mask, stored_origin)
        return frame

    def blend_reach(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The upright pixels (x0, y0, x1, y1, end exclusive) that `with_rgb` may change when its
        mask is nonzero only inside `box`: a chroma sample covers several pixels, and changes
        with any of them, so the box grows by the subsampling less one on each side."""
        video = self.video
        step_y, step_x = _chroma_steps(video)
        if self.rotation in (90, 270):
            step_x, step_y = step_y, step_x
        height, width = _upright_size(video, self.rotation)
        x0, y0, x1, y1 = box
        return (max(0, x0 - step_x + 1), max(0, y0 - step_y + 1), min(width, x1 + step_x - 1),
                min(height, y1 + step_y - 1))


@dataclass(frozen=True, eq=False)
class RGBFrame:
    """A frame with its upright RGB picture, converted once for the stages that read it
    (detection, tracking, alignment)."""

    frame: Frame
    rgb: np.ndarray

    @property
    def time(self) -> float:
        return self.frame.time

    def to_rgb(self) -> np.ndarray:
        return self.rgb


_RGB_FORMATS = {np.dtype(np.uint8): "rgb24", np.dtype(np.uint16): "rgb48le"}
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


class FieldMarker:
    """Marks pictures interlaced, shown top or bottom field first (`shown_first`: "tff" or
    "bff"), as FFmpeg's setfield filter does, passing their samples through untouched.

    Why: the encoders that code fields (mpeg2video, ProRes, x264, ...) and those that store a
    field order per picture (FFV1, DV) read it from each picture's flags, and a picture made
    here (a copy, a conversion to the encoder's pixel format) has none: it would be coded
    bottom field first, or as progressive. A marker takes pictures of the first one's size,
    format and colour tags."""

    def __init__(self, shown_first: str) -> None:
        self._shown_first = shown_first
        self._graph: Any = None

    def __call__(self, video: av.VideoFrame) -> av.VideoFrame:
        """`video`, marked (the same samples, timestamp and tags)."""
        if self._graph is None:
            self._graph = self._filter_graph(video)
        self._graph.push(video)
        return self._graph.pull()

    def _filter_graph(self, template: av.VideoFrame) -> Any:
        import av.filter

        graph = av.filter.Graph()
        source = graph.add(
            "buffer", video_size=f"{template.width}x{template.height}", pix_fmt=str(int(template.format)),
            time_base=str(template.time_base or Fraction(1, 1000)), pixel_aspect="1/1",
            colorspace=str(template.colorspace), range=str(template.color_range))
        setfield, sink = graph.add("setfield", self._shown_first), graph.add("buffersink")
        source.link_to(setfield)
        setfield.link_to(sink)
        graph.configure()
        return graph


def _upright_size(video: av.VideoFrame, rotation: int) -> tuple[int, int]:
    if rotation in (90, 270):
        return video.width, video.height
    return video.height, video.width


_CONVERSION_MARGIN = 16  # pixels around a box converted with it (> the chroma filter's reach)
BLEND_CONTEXT = _CONVERSION_MARGIN + 3
"""Pixels of the picture around a mask that `blend_into` reads: the margin, and the rounding of
its box to the chroma samples (up to 4 pixels a sample)."""


def blend_box(source: av.VideoFrame, mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1, end exclusive; stored orientation) that `blend_into` converts
    for `mask` (a patch at `origin`, with some nonzero value): `converted_box` of the mask's box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    ox, oy = origin
    return converted_box(source, (ox + int(cols[0]), oy + int(rows[0]), ox + int(cols[-1]) + 1,
                                  oy + int(rows[-1]) + 1))


def converted_box(source: av.VideoFrame, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1, end exclusive; stored orientation) converted between the
    source's format and RGB for the pixels in `box`, so that they get the values a whole-picture
    conversion gives them: the box with a margin, for the chroma filter to see the same
    neighbours, aligned to the chroma subsampling; the whole picture where its size is odd (odd
    sizes convert chroma another way)."""
    height, width = source.height, source.width
    step_y, step_x = _chroma_steps(source)
    if height % step_y or width % step_x:
        return 0, 0, width, height
    x0, y0, x1, y1 = box
    return (max(0, (x0 - _CONVERSION_MARGIN) // step_x * step_x), max(0, (y0 - _CONVERSION_MARGIN) // step_y * step_y),
            min(width, -(-(x1 + _CONVERSION_MARGIN) // step_x) * step_x),
            min(height, -(-(y1 + _CONVERSION_MARGIN) // step_y) * step_y))


def _cropped(video: av.VideoFrame, box: tuple[int, int, int, int]) -> av.VideoFrame:
    """The pixels in `box` (stored orientation, aligned to the chroma subsampling) of a
    `_blendable` picture, as a picture of their own with its colour tags (no interlaced flag)."""
    x0, y0, x1, y1 = box
    part = av.VideoFrame(x1 - x0, y1 - y0, video.format.name)
    for index, ((fy, fx), plane, target) in enumerate(zip(_plane_factors(video), video.planes, part.planes)):
        samples = _plane_array(plane, video.format, index)
        _plane_array(target, part.format, index)[:] = samples[y0 // fy:-(-y1 // fy), x0 // fx:-(-x1 // fx)]
    part.colorspace = video.colorspace
    part.color_range = video.color_range
    return part


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
    if not _blendable(source):
        return _blend_through_twin(source, rgb, mask, origin)
    # Convert and blend only the box around the mask: the cost follows the edited area, not the
    # frame size.
    x0, y0, x1, y1 = blend_box(source, mask, origin)
    if not _inside((x0, y0, x1, y1), origin, mask.shape):
        raise ValueError(f"the patch at {origin} of shape {mask.shape} does not hold the pixels the blend "
                         f"converts, {(x0, y0, x1, y1)}")
    ox, oy = origin
    patch = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    edited = reformatted(
        av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[patch]), format=_RGB_FORMATS[rgb.dtype]),
        format=fmt.name,
        dst_colorspace=source.colorspace,
        dst_color_range=source.color_range,
    )
    region = mask[patch]
    source.make_writable()
    for index, ((fy, fx), plane, new_plane) in enumerate(zip(_plane_factors(source), source.planes, edited.planes)):
        out = _plane_array(plane, fmt, index)
        box = (slice(y0 // fy, -(-y1 // fy)), slice(x0 // fx, -(-x1 // fx)))
        old = out[box]
        new = _plane_array(new_plane, fmt, index)
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
    (row,) = _row_bytes(source)
    _rows(source.planes[0])[:, :row] = _rows(back.planes[0])[:, :row]
    return source


def editable(video: av.VideoFrame) -> bool:
    """Whether `with_rgb` can change part of a picture of this format and keep every other
    sample as stored: planar and byte-packed formats, and packed ones with an exact
    `blend_twin`; not 16-bit RGB, 1-bit or palette pictures."""
    return _blendable(video) or blend_twin(video.format.name) is not None


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
    for twin in sorted(_TWIN_CANDIDATES, key=lambda name: av.VideoFormat(name).is_rgb != fmt.is_rgb):
        try:
            back = reformatted(reformatted(packed, format=twin), format=format_name)
        except (av.error.FFmpegError, ValueError):
            continue
        (row,) = _row_bytes(packed)
        if np.array_equal(_rows(packed.planes[0])[:, :row], _rows(back.planes[0])[:, :row]):
            return twin
    return None


@functools.lru_cache(maxsize=None)
def _alpha_channels(format_name: str, plane: int) -> tuple[int, ...]:
    """Which samples of `_plane_array(plane)` in `format_name` are alpha, which a blend keeps as
    stored: a face is restored in colour, and the matte a compositor keyed stays as it was.
    Found by converting black, which gives no colour sample the largest value and alpha that."""
    fmt = av.VideoFormat(format_name)
    alpha = [c for c in fmt.components if c.is_alpha and c.plane == plane]
    if not alpha:
        return ()
    black = reformatted(av.VideoFrame.from_ndarray(np.zeros((2, 2, 3), np.uint8), format="rgb24"), format=format_name)
    samples = _plane_array(black.planes[plane], fmt, plane)[0, 0]
    return tuple(int(i) for i in np.flatnonzero(samples == (1 << alpha[0].bits) - 1))


def _inside(box: tuple[int, int, int, int], origin: tuple[int, int], shape: tuple[int, ...]) -> bool:
    """Whether `box` (x0, y0, x1, y1) lies in the patch of `shape` (h, w) at `origin` (x, y)."""
    (ox, oy), (height, width) = origin, shape[:2]
    return ox <= box[0] and oy <= box[1] and box[2] <= ox + width and box[3] <= oy + height


def _stored_origin(origin: tuple[int, int], shape: tuple[int, ...], turn: int,
                   upright: tuple[int, int]) -> tuple[int, int]:
    """The top-left pixel (x, y), in the stored picture, of an h×w patch at `origin` in the
    upright (H, W) picture, stored as np.rot90(upright, k=turn) stores it."""
    (x, y), (h, w), (height, width) = origin, shape[:2], upright
    return [(x, y), (y, width - x - w), (width - x - w, height - y - h), (height - y - h, x)][turn % 4]


def _chroma_steps(video: av.VideoFrame) -> tuple[int, int]:
    """The picture rows and columns a sample of its most subsampled component covers (2, 2 for
    4:2:0), whether the components lie in planes of their own or are packed together."""
    components = video.format.components
    return (max(-(-video.height // c.height) for c in components),
            max(-(-video.width // c.width) for c in components))


def _plane_factors(video: av.VideoFrame) -> list[tuple[int, int]]:
    """Per plane, the picture rows and columns one of its samples covers (chroma subsampling)."""
    return [(-(-video.height // plane.height), -(-video.width // plane.width)) for plane in video.planes]


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
    used = _row_bytes(video)
    if used is None:
        return video
    padding = [_rows(plane)[:, row:] for plane, row in zip(video.planes, used)]
    if not any(area.any() for area in padding):
        return video
    video.make_writable()
    for plane, row in zip(video.planes, used):
        _rows(plane)[:, row:] = 0
    return video


def _row_bytes(video: av.VideoFrame) -> list[int] | None:
    """Per plane, the bytes at the start of each row that hold its samples (the rest of the row
    is line padding); None for a palette picture, whose second plane is the palette."""
    fmt = video.format
    if fmt.has_palette:
        return None
    if len(video.planes) == 1:  # packed: bit fields, padding bytes and whole chroma pairs (UYVY) included
        step_x = _chroma_steps(video)[1]
        return [-(-(-(-video.width // step_x) * step_x) * fmt.padded_bits_per_pixel // 8)]
    used = []
    for index, plane in enumerate(video.planes):
        components = [c for c in fmt.components if c.plane == index]
        sample_bytes = 1 << max(0, (max(c.bits for c in components) - 1).bit_length() - 3)  # 8, 16 or 32 bits
        used.append(plane.width * len(components) * sample_bytes)
    return used


def _rows(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable height×line_size view of a plane's bytes."""
    return np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)


def _blendable(frame: av.VideoFrame) -> bool:
    """Formats whose planes hold whole samples of one size: planar or packed-per-pixel."""
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


def _plane_array(plane: av.video.plane.VideoPlane, fmt: av.VideoFormat, index: int) -> np.ndarray:
    """A writable height×width×components view of one plane (without line padding)."""
    components = [c for c in fmt.components if c.plane == index]
    dtype = np.uint16 if max(c.bits for c in components) > 8 else np.uint8
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
    channels = len(components)
    return rows[:, : plane.width * channels].reshape(plane.height, plane.width, channels)


def _pool_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Average `mask` over blocks so it has height×width samples (chroma subsampling);
    edge blocks of odd-sized pictures are padded by repeating the last row/column."""
    full_h, full_w = mask.shape
    if (full_h, full_w) == (height, width):
        return mask
    fy, fx = -(-full_h // height), -(-full_w // width)
    padded = np.pad(mask, ((0, height * fy - full_h), (0, width * fx - full_w)), mode="edge")
    return padded.reshape(height, fy, width, fx).mean(axis=(1, 3))
