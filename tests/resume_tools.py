"""Helpers of the resume and batch tests: a stateful processor, and a child process to kill.

`StatefulBox` is a deterministic FrameProcessor with memory and look-ahead (like a tracker
with temporal blending): the brightness it paints into a box depends on every frame it has
seen so far in the call and on the next frame. A resumed run only matches a continuous one
if every segment is processed from the same warm-up frames.

Run as a script, this module transcodes resumably with StatefulBox and can SIGKILL its own
process at a chosen point (power loss, kill -9):

    python resume_tools.py IN OUT SEGMENT WARMUP LOOKAHEAD [--codec C]
                           [--kill-at-call-start I | --kill-at-frame I]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent


class StatefulBox:
    """A FrameProcessor: each call starts afresh; `on_call_start` and `on_output` see the first
    input index of a call and each output index (the kill hooks of the child process)."""

    def __init__(self, on_call_start: Callable[[int], None] | None = None,
                 on_output: Callable[[int], None] | None = None) -> None:
        self.on_call_start = on_call_start
        self.on_output = on_output

    def __call__(self, frames: Iterator) -> Iterator:
        state = 0.0
        held = None  # (frame, its state) waiting for the next frame
        first = True
        for frame in frames:
            if first and self.on_call_start is not None:
                self.on_call_start(frame.index)
            first = False
            mean = float(frame.to_rgb().mean())
            state = 0.7 * state + 0.3 * mean
            if held is not None:
                yield self._paint(*held, upcoming=mean)
            held = (frame, state)
        if held is not None:
            yield self._paint(*held, upcoming=0.0)

    def _paint(self, frame, state: float, upcoming: float):
        if self.on_output is not None:
            self.on_output(frame.index)
        rgb = frame.to_rgb()
        height, width = rgb.shape[:2]
        mask = np.zeros((height, width), np.float32)
        mask[height // 4: height // 2, width // 4: width // 2] = 1.0
        painted = rgb.copy()
        painted[mask > 0] = np.uint8(int(state * 3 + upcoming) % 256)
        return frame.with_rgb(painted, mask)


def interrupting_box(index: int) -> StatefulBox:
    """A StatefulBox that raises KeyboardInterrupt (Ctrl-C) as output frame `index` comes out."""

    def stop(frame_index: int) -> None:
        if frame_index == index:
            raise KeyboardInterrupt

    return StatefulBox(on_output=stop)


def same_video(a: Path, b: Path) -> None:
    """Decoded frames, timestamps, durations and every copied packet are identical."""
    from media import read_video

    first, second = read_video(a, images=True), read_video(b, images=True)
    assert first.frame_pts == second.frame_pts
    assert first.durations == second.durations
    assert len(first.images) == len(second.images) > 0
    for index, (x, y) in enumerate(zip(first.images, second.images)):
        assert (x == y).all(), f"frame {index} differs"
    assert first.packets.keys() == second.packets.keys()
    for stream in first.packets:
        assert [p[:2] for p in first.packets[stream]] == [p[:2] for p in second.packets[stream]]


def transcode_resumable(source: Path, output: Path, segment: int, warmup: int, lookahead: int,
                        processor: Callable | None = None, **plan_options):
    """One resumable run of StatefulBox (or `processor`) over source -> output."""
    from vidface.pipeline import Resume, Segmenting, plan_transcode, transcode

    plan = plan_transcode(source, output, **plan_options)
    return transcode(plan, processor or StatefulBox(),
                     resume=Resume(segmenting=Segmenting(frames=segment, warmup=warmup, lookahead=lookahead)))


RESTORE_SEGMENT, RESTORE_WARMUP = 10, 4  # segments of the face restorer's resume tests


def restore_interrupted_and_resumed(source: Path, output: Path, model, **plan_options) -> Path:
    """`source` through the face restorer (default settings, batches of 4) in resumable segments
    of RESTORE_SEGMENT frames: an uninterrupted run into `reference<suffix>` next to `output`,
    then a run into `output` stopped by Ctrl-C in its 3rd segment and a rerun; checks that the
    rerun resumed after two segments and decodes to the uninterrupted run. Returns the
    uninterrupted run's file."""
    import dataclasses

    import pytest

    from vidface.config import load_settings
    from vidface.pipeline import ResumableInterrupt
    from vidface.restore import face_restorer

    settings = load_settings()
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, batch_size=4))
    restorer = face_restorer(model, settings)
    segments = (RESTORE_SEGMENT, RESTORE_WARMUP, settings.faces.lag)
    reference = output.with_name(f"reference{output.suffix}")
    transcode_resumable(source, reference, *segments, restorer, **plan_options)

    def interrupted(frames):
        for frame in restorer(frames):
            if frame.index == 2 * RESTORE_SEGMENT + settings.faces.lag:  # put out by the 3rd segment's call only
                raise KeyboardInterrupt
            yield frame

    with pytest.raises(ResumableInterrupt):
        transcode_resumable(source, output, *segments, interrupted, **plan_options)
    assert transcode_resumable(source, output, *segments, restorer, **plan_options).resumed == 2 * RESTORE_SEGMENT
    same_video(output, reference)
    return reference


def _kill_self(*_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("segment", type=int)
    parser.add_argument("warmup", type=int)
    parser.add_argument("lookahead", type=int)
    parser.add_argument("--kill-at-call-start", type=int, default=None,
                        help="SIGKILL when a processor call starts at this frame")
    parser.add_argument("--kill-at-frame", type=int, default=None, help="SIGKILL when this frame comes out")
    parser.add_argument("--codec", default="libx264")
    args = parser.parse_args(argv)
    on_start = on_output = None
    if args.kill_at_call_start is not None:
        on_start = lambda index: index == args.kill_at_call_start and _kill_self()  # noqa: E731
    if args.kill_at_frame is not None:
        on_output = lambda index: index == args.kill_at_frame and _kill_self()  # noqa: E731
    from vidface.io.options import EncodeOptions

    result = transcode_resumable(args.input, args.output, args.segment, args.warmup, args.lookahead,
                                 StatefulBox(on_start, on_output), encode=EncodeOptions(codec=args.codec))
    print(f"frames={result.frames} resumed={result.resumed}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    raise SystemExit(main())
