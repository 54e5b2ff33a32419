"""Decoded video frames as records that keep their timing and their source pixels.

A `Frame` carries the decoded `av.VideoFrame` untouched (stored orientation, source pixel
format and bit depth) together with its timestamp, so a stage that changes nothing passes the
source pixels to the encoder exactly. Stages that edit pixels work in upright RGB
(`Frame.to_rgb`: 8-bit, or 16-bit for a picture of more than 8 bits a sample) and hand back a
picture plus a mask (`Frame.with_rgb`): the blend happens in the source's own pixel format,
plane by plane (`vidface.io.blend`), so every pixel outside the mask keeps its stored value,
10-bit precision included, and an edit made in 16-bit RGB keeps the source's precision inside
the mask too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
import numpy as np

from vidface.io.blend import blend_box, blend_into, converted_box, cropped, inside
from vidface.io.pixels import RGB_FORMATS, addressable, chroma_steps, copy_rows, plane_rows, reformatted


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
    bottom_first: an interlaced picture's bottom field is shown first (the stream's field order:
    PyAV gives no picture's own).

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
    bottom_first: bool = False

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    @property
    def upright_shape(self) -> tuple[int, int]:
        """(height, width) of the upright picture (rotation applied)."""
        video = self.video
        return (video.width, video.height) if self.rotation in (90, 270) else (video.height, video.width)

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
        height, width = self.upright_shape
        x0, y0, x1, y1 = box or (0, 0, width, height)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"box must be a nonempty part of the {width}x{height} picture, got {box}")
        sx, sy = _stored_origin((x0, y0), (y1 - y0, x1 - x0), turn, (height, width))
        sw, sh = (x1 - x0, y1 - y0) if turn % 2 == 0 else (y1 - y0, x1 - x0)
        video = self.video
        converted = converted_box(video, (sx, sy, sx + sw, sy + sh)) if addressable(video) else (
            0, 0, video.width, video.height)
        if converted != (0, 0, video.width, video.height):
            video = cropped(video, converted)
        elif video.interlaced_frame:
            video = self.copy().video
        rgb = reformatted(video, format=RGB_FORMATS[np.dtype(np.uint16 if deep else np.uint8)]).to_ndarray()
        cx, cy = converted[:2]
        rgb = rgb[sy - cy:sy - cy + sh, sx - cx:sx - cx + sw]
        return np.ascontiguousarray(np.rot90(rgb, k=-turn))

    def copy(self) -> Frame:
        """This frame with a private copy of its picture (samples, timestamp, colour tags; not the
        decoder's flags and side data, which only the encoder reads), not shared."""
        video = self.video
        picture = av.VideoFrame(video.width, video.height, video.format.name)
        for source, target in zip(video.planes, picture.planes):
            copy_rows(plane_rows(source), plane_rows(target))
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
        height, width = self.upright_shape
        x, y = origin
        if mask.ndim != 2 or not (0 <= x and 0 <= y and x + mask.shape[1] <= width and y + mask.shape[0] <= height):
            raise ValueError(f"mask must be a 2-D patch inside the {height}x{width} picture, "
                             f"got shape {mask.shape} at {origin}")
        if rgb.shape != (*mask.shape, 3) or rgb.dtype not in RGB_FORMATS:
            raise ValueError(f"rgb must be {mask.shape[0]}x{mask.shape[1]}x3 uint8 or uint16 like the mask, "
                             f"got {rgb.shape} {rgb.dtype}")
        turn = self.rotation // 90
        stored_rgb = np.ascontiguousarray(np.rot90(rgb, k=turn))
        stored_mask = np.clip(np.rot90(mask, k=turn).astype(np.float32), 0.0, 1.0)
        stored_origin = _stored_origin(origin, mask.shape, turn, (height, width))
        if not stored_mask.any():
            return self
        frame = self.copy() if self.shared else self
        if not addressable(frame.video) or not inside(blend_box(frame.video, stored_mask, stored_origin),
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
        step_y, step_x = chroma_steps(video)
        if self.rotation in (90, 270):
            step_x, step_y = step_y, step_x
        height, width = self.upright_shape
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

    @property
    def pixel_shape(self) -> tuple[float, float]:
        return self.frame.pixel_shape

    def to_rgb(self) -> np.ndarray:
        return self.rgb


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


def _stored_origin(origin: tuple[int, int], shape: tuple[int, ...], turn: int,
                   upright: tuple[int, int]) -> tuple[int, int]:
    """The top-left pixel (x, y), in the stored picture, of an h×w patch at `origin` in the
    upright (H, W) picture, stored as np.rot90(upright, k=turn) stores it."""
    (x, y), (h, w), (height, width) = origin, shape[:2], upright
    return [(x, y), (y, width - x - w), (width - x - w, height - y - h), (height - y - h, x)][turn % 4]
