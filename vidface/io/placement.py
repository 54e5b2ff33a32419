"""The plan's input frames, placed by their timestamps: each decoded frame gets its output
position from where its pts stands among the input's frames (as probed), so a seek that lands
short of a frame (open GOP) is retried further back, and a frame the decoder cannot give
leaves a gap instead of shifting the frames after it."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from vidface.errors import InputError
from vidface.io.decode import decode_frames
from vidface.io.frames import Frame
from vidface.plan import frame_timing

if TYPE_CHECKING:
    from vidface.plan import Plan

log = logging.getLogger(__name__)


SEEK_BACK = 16
"""Frames by which a seek first goes further back when the frame sought does not come out
first; doubled on each further try."""


def input_frames(plan: Plan, first: int, *, resumed: bool = False) -> Iterator[Frame]:
    """The plan's frames from output position `first` to its end, in order, each with
    Frame.index its output position: the place of its pts among the input's frames (as probed),
    so a frame the decoder cannot give leaves a gap (warned about) and never shifts the frames
    after it.

    resumed: the frames must be exactly those an uninterrupted run decodes from the plan's
    first frame. Decoding from a later keyframe gives the same pictures for intact frames only:
    a damaged one (flagged corrupt, or missing) depends on where decoding began. So at the
    first damaged frame the input is decoded again from the uninterrupted run's start, and the
    rest comes from there.
    """
    placed = _placed_frames(plan, first)
    if resumed:
        placed = _as_uninterrupted(plan, placed, first)
    expected = max(first, plan.never_decoded)  # frames that never decode are no gap to warn of
    missing: list[tuple[int, int]] = []  # [first, stop) of each gap
    for position, frame in placed:
        if position > expected:
            missing.append((expected, position))
            _warn_missing(plan, missing)
        expected = position + 1
        yield dataclasses.replace(frame, index=position)
    if expected < plan.frame_count:
        missing.append((expected, plan.frame_count))
        _warn_missing(plan, missing)


def _warn_missing(plan: Plan, missing: list[tuple[int, int]]) -> None:
    """Warn of the first gap in the decoded frames, and then of every tenfold more frames."""
    count = sum(stop - first for first, stop in missing)
    if len(missing) == 1:
        first, stop = missing[0]
        log.warning("%s of %r could not be decoded; %s left out of the output", _frames(first, stop),
                    str(plan.info.path), "it is" if stop - first == 1 else "they are")
    elif len(str(count)) > len(str(count - (missing[-1][1] - missing[-1][0]))):
        log.warning("%d frames of %r could not be decoded so far (the latest: %s)", count,
                    str(plan.info.path), _frames(*missing[-1]))


def _frames(first: int, stop: int) -> str:
    """Frames [first, stop) as a warning names them: "frame 4", "frames 4-9"."""
    return f"frame {first}" if stop - first == 1 else f"frames {first}-{stop - 1}"


def _placed_frames(plan: Plan, first: int) -> Iterator[tuple[int, Frame]]:
    """(output position, frame) for the frames the decoder gives from position `first` on.

    A seek lands on a keyframe before the frame sought, which is not always enough: in an open
    GOP the frames shown just before a keyframe are decoded after it from the GOP before it
    (the decoder drops them after a seek), and some containers (MPEG-PS) seek by estimate. So
    when the frame sought does not come out first, the seek goes further back and tries again.
    A frame whose pts the probe did not see, or that comes out of order, is an InputError.
    """
    video = plan.info.video
    wanted = plan.first_frame + first
    if wanted >= plan.stop_frame:
        return
    _, stop_pts, _, _ = frame_timing(plan)
    back = 0
    while True:
        seek = max(0, wanted - back)
        frames = decode_frames(plan.info.path, start_pts=video.pts[seek] if seek else None, stop_pts=stop_pts,
                               video=video)
        head = next((frame for frame in frames if frame.pts >= video.pts[wanted]), None)
        if seek == 0 or (head is not None and head.pts == video.pts[wanted]):
            break
        frames.close()
        back = max(2 * back, SEEK_BACK)
    if head is None:
        return
    expected = first
    try:
        for frame in itertools.chain([head], frames):
            index = bisect.bisect_left(video.pts, frame.pts, plan.first_frame, plan.stop_frame)
            position = index - plan.first_frame
            if index == plan.stop_frame or video.pts[index] != frame.pts or position < expected:
                raise InputError(f"input {str(plan.info.path)!r} gave a frame at pts {frame.pts} out of place (not the "
                                 f"timestamp of frame {expected} or a later one); it may be corrupt: repair or "
                                 "re-encode it")
            expected = position + 1
            yield position, frame
    finally:
        frames.close()


def _as_uninterrupted(plan: Plan, placed: Iterator[tuple[int, Frame]], first: int
                      ) -> Iterator[tuple[int, Frame]]:
    """`placed` while its frames are intact; from the first damaged one on (flagged corrupt by
    the decoder, or missing), the frames of a decode from the plan's first frame instead."""
    expected = first
    for position, frame in placed:
        if position != expected or frame.video.is_corrupt:
            placed.close()
            log.info("frame %d of %r is damaged; decoding again from the first frame, as an uninterrupted "
                     "run does, so that the resumed output is the same", expected, str(plan.info.path))
            yield from ((p, f) for p, f in _placed_frames(plan, 0) if p >= expected)
            return
        expected += 1
        yield position, frame

