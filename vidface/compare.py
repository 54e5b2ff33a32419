"""A comparison video of an input ("before", IN) and its restored output ("after", OUT).

The layouts are pure functions on upright H×W×3 uint8 RGB pictures (`side_by_side`, `split`,
`wipe_divide`, `draw_labels`, all through `compose`). `plan_compare` checks the pair before
anything is written; `compare` runs it through `vidface.pipeline.transcode`: OUT is the
transcode's input, so CMP has OUT's timestamps and copied streams (audio, subtitles) and is
written atomically, and IN's frames are decoded alongside, over the range a
`vidface restore --start/--duration` preview was made from.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vidface.errors import InputError
from vidface.io.encoder_setup import choose_pix_fmt
from vidface.io.frames import Frame
from vidface.io.index import frame_range
from vidface.io.options import EncodeOptions
from vidface.io.pixels import reformatted
from vidface.io.placement import input_frames
from vidface.io.probe import VideoInfo, probe
from vidface.pipeline import Plan, TimeRange, TranscodeResult, check_output, plan_transcode, transcode
from vidface.plan import reading_plan

LAYOUTS = ("side", "split", "wipe")

WIPE_SWEEP_SECONDS = 4.0
"""Seconds the wipe's line takes from one edge to the other (then it comes back)."""

TIME_TOLERANCE = 1e-3
"""Seconds by which a frame of IN and its frame of OUT may disagree (measured from each one's
first frame): well below a frame's duration, above the rounding of another tool's time base
(Matroska's milliseconds)."""

LABELS = ("before", "after")
_LINE_COLOUR = (255, 255, 255)
_TEXT_COLOUR = (255, 255, 255)
_OUTLINE_COLOUR = (0, 0, 0)


def side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """`before` on the left, `after` on the right: twice the width."""
    return np.concatenate([before, after], axis=1)


def line_width(height: int) -> int:
    """Width in pixels of the line at a split's divide: thin, but visible at any size."""
    return max(1, round(height / 360))


def split(before: np.ndarray, after: np.ndarray, divide: int) -> np.ndarray:
    """One picture: `before` in the columns left of `divide`, `after` from it on, with a line
    drawn at the divide (kept inside the picture where the divide is at an edge)."""
    height, width = after.shape[:2]
    out = after.copy()
    out[:, :divide] = before[:, :divide]
    line = line_width(height)
    left = min(max(divide - line // 2, 0), width - line)
    out[:, left:left + line] = _LINE_COLOUR
    return out


def wipe_divide(seconds: float, width: int) -> int:
    """The wipe's divide at `seconds` from the first frame: it starts in the middle and sweeps to
    the right edge, back to the left and so on, WIPE_SWEEP_SECONDS from edge to edge, slowing
    down towards each edge (a sine) so the motion has no jolt."""
    return round(width * (1 + math.sin(math.pi * seconds / WIPE_SWEEP_SECONDS)) / 2)


def draw_labels(rgb: np.ndarray, left: str = LABELS[0], right: str = LABELS[1]) -> np.ndarray:
    """A copy of `rgb` with `left` in its top-left corner and `right` in its top-right one, white
    on a black outline so they read on any picture. The text is about 1/25 of the picture's
    height, never below a legible minimum, and narrower than half the picture."""
    import cv2

    out = rgb.copy()
    height, width = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    margin = max(2, height // 50)
    widest = max(cv2.getTextSize(text, font, 1.0, 1)[0][0] for text in (left, right))
    scale = min(max(height / 540, 0.4), (width / 2 - 2 * margin) / widest)
    thickness = max(1, round(scale * 2))
    outline = thickness + max(2, round(scale * 2))
    for text, at_right in ((left, False), (right, True)):
        (text_width, text_height), _ = cv2.getTextSize(text, font, scale, outline)
        origin = (width - margin - text_width if at_right else margin, margin + text_height)
        cv2.putText(out, text, origin, font, scale, _OUTLINE_COLOUR, outline, cv2.LINE_AA)
        cv2.putText(out, text, origin, font, scale, _TEXT_COLOUR, thickness, cv2.LINE_AA)
    return out


def compose(before: np.ndarray, after: np.ndarray, layout: str, seconds: float, label: bool = False) -> np.ndarray:
    """The comparison picture of one frame pair (upright RGB of one size) in `layout`;
    seconds: the frame's time from the first frame (the wipe's position)."""
    _check_layout(layout)
    if before.shape != after.shape:
        raise ValueError(f"pictures differ in size: {before.shape} and {after.shape}")
    width = after.shape[1]
    if layout == "side":
        out = side_by_side(before, after)
    elif layout == "split":
        out = split(before, after, width // 2)
    else:
        out = split(before, after, wipe_divide(seconds, width))
    return draw_labels(out) if label else out


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")


@dataclass(frozen=True)
class ComparePlan:
    """What `compare` reads and writes, checked before anything is written.

    plan: the transcode of OUT into CMP; its `info.video` is OUT's with CMP's picture (the
    layout's size, upright, progressive), which is what the encoder is set up from. before:
    IN's frames over the chosen range, as `input_frames` reads them (its output fields are
    CMP's, unused).
    """

    plan: Plan
    before: Plan
    layout: str = "side"
    label: bool = False


def plan_compare(
    before: str | os.PathLike[str],
    after: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    layout: str = "side",
    label: bool = False,
    time_range: TimeRange = TimeRange(),
    encode: EncodeOptions = EncodeOptions(),
    overwrite: bool = False,
) -> ComparePlan:
    """Probe IN and OUT, check CMP; raise InputError/OutputError before any write.

    time_range selects IN's frames, as `vidface restore` selects a preview's: OUT is read from
    its first frame. The frame counts and the upright picture sizes must agree (the timestamps
    are checked frame by frame by `compare`).
    """
    _check_layout(layout)
    before_path, output_path = Path(before), Path(output)
    check_output(before_path, output_path, overwrite=overwrite)
    plan = plan_transcode(after, output_path, encode=encode, overwrite=overwrite)
    before_info = probe(before_path, plan.info.video.average_rate)  # an image sequence at OUT's rate
    first, stop = frame_range(before_info, time_range.start, time_range.duration)
    after_video = plan.info.video
    if before_info.video.display_size != after_video.display_size:
        raise InputError(f"{str(before_path)!r} shows {_picture(before_info.video)} pictures and "
                         f"{str(plan.info.path)!r} {_picture(after_video)}; compare needs pictures of one size")
    before = reading_plan(before_info, first, stop)
    if before.frame_count != plan.frame_count:
        chosen = "" if (first, stop) == (0, before_info.video.frame_count) else " in the range chosen"
        raise InputError(f"{str(before_path)!r} has {before.frame_count} frames{chosen} and {str(plan.info.path)!r} "
                         f"{plan.frame_count}; compare needs the same frames (for a preview made with "
                         "`vidface restore --start S --duration D`, pass the same --start and --duration)")
    width, height = after_video.display_size
    video = dataclasses.replace(after_video, width=2 * width if layout == "side" else width, height=height,
                                rotation=0, field_order="progressive", interlaced=False)
    plan = dataclasses.replace(plan, info=dataclasses.replace(plan.info, video=video),
                               pix_fmt=choose_pix_fmt(plan.encode, video))
    return ComparePlan(plan=plan, before=before, layout=layout, label=label)


def _picture(video: VideoInfo) -> str:
    width, height = video.display_size
    turned = f" (stored {video.width}x{video.height}, turned {video.rotation}°)" if video.rotation else ""
    return f"{width}x{height}{turned}"


def compare(plan: ComparePlan, *, progress: Callable[[int], None] | None = None) -> TranscodeResult:
    """Write CMP: each frame of OUT composed with IN's frame at the same time from the first.

    A pair of frames whose times differ by more than TIME_TOLERANCE (another frame rate, a
    frame one side could not decode) is an InputError, and CMP is not written.
    """
    return transcode(plan.plan, lambda frames: _composed(plan, frames), progress=progress)


def _composed(plan: ComparePlan, frames: Iterator[Frame]) -> Iterator[Frame]:
    for before, after, seconds in matched_frames(plan.before, plan.plan, frames):
        rgb = compose(before.to_rgb(), after.to_rgb(), plan.layout, seconds, plan.label)
        # Converted as OUT's frames are tagged: CMP's stream takes OUT's colour tags.
        picture = reformatted(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format=plan.plan.pix_fmt,
                              dst_colorspace=after.video.colorspace, dst_color_range=after.video.color_range)
        yield dataclasses.replace(after, video=picture, rotation=0)


def matched_frames(before: Plan, after: Plan, afters: Iterator[Frame] | None = None
                   ) -> Iterator[tuple[Frame, Frame, float]]:
    """(IN's frame, OUT's frame, seconds from the first) for each pair of frames at the same time
    from each one's first frame: `before`'s frames (read here) with `afters` (default: `after`'s,
    read here). A count or a time that differs (by more than TIME_TOLERANCE: another frame rate,
    a frame one side could not decode) is an InputError."""
    before_start = _first_time(before)
    after_start = _first_time(after)
    before_path, after_path = str(before.info.path), str(after.info.path)
    with ExitStack() as stack:
        befores = stack.enter_context(closing(input_frames(before, 0)))
        if afters is None:
            afters = stack.enter_context(closing(input_frames(after, 0)))
        for count, frame in enumerate(afters):
            previous = next(befores, None)
            if previous is None:
                raise InputError(f"{before_path!r} gave {count} frames and {after_path!r} more; "
                                 "IN and OUT need the same frames")
            seconds = frame.time - after_start
            if abs(previous.time - before_start - seconds) > TIME_TOLERANCE:
                raise InputError(f"frame {count} of {before_path!r} is at {previous.time - before_start:.3f} s and of "
                                 f"{after_path!r} at {seconds:.3f} s (from each one's first frame); IN and OUT need "
                                 "the same timestamps (the same frame rate)")
            yield previous, frame, seconds
        if next(befores, None) is not None:
            raise InputError(f"{before_path!r} gave more frames than {after_path!r}; IN and OUT need the same frames")


def _first_time(plan: Plan) -> float:
    """Seconds of the plan's first frame in its input's time base."""
    video = plan.info.video
    return float(video.pts[plan.first_frame] * video.time_base)
