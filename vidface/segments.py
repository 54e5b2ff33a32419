"""Resumable transcodes: the video processed and encoded in segments kept in a work folder
(see vidface.resume), then muxed into OUT.

So that a resumed run gives exactly the frames of a continuous one, every segment is processed
the same way in every run: a fresh call of the processor is fed `warmup` frames before the
segment and `lookahead` frames after it, and only the segment's own frames are kept. A
continuous run decodes once, front to back, keeping those few frames in memory (`_FrameWindow`);
a resumed one seeks to its first needed frame (`vidface.io.placement.input_frames`). At the end
the segments' packets are muxed with the copied streams into OUT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from vidface.errors import OutputError
from vidface.files import AtomicFile, atomic_output, owned_temporary
from vidface.io.encode import OutputWriter
from vidface.io.frames import Frame
from vidface.io.placement import input_frames
from vidface.plan import (FrameProcessor, Plan, Resume, ResumableInterrupt, Segmenting, TranscodeResult,
                          check_written, frame_timing, output_writer, write_failed)
from vidface.provenance import TrackNumbering, entry_line, frame_entry, sidecar_for
from vidface.workers import in_background

if TYPE_CHECKING:
    from vidface.resume import SegmentRecord, WorkFolder

log = logging.getLogger(__name__)


def segment_ranges(first: int, stop: int, frames: int) -> list[tuple[int, int]]:
    """Output frame ranges [a, b) of the segments of frames [first, stop), `frames` each (the
    last one shorter)."""
    return [(a, min(a + frames, stop)) for a in range(first, stop, frames)]


def plan_key(plan: Plan, segmenting: Segmenting) -> dict[str, Any]:
    """The plan's part of a resumable run's key: what changes the encoded segments (the frames'
    rate and time base among it: an image sequence read at another --fps has the same files)."""
    video = plan.info.video
    return {"frames": [plan.first_frame, plan.stop_frame], "container": plan.container_format,
            "encode": dataclasses.asdict(plan.encode), "pix_fmt": plan.pix_fmt,
            "rate": str(video.average_rate), "time_base": str(video.time_base),
            "segmenting": dataclasses.asdict(segmenting)}


class SegmentedOutput:
    """One OUT being made of segments: its writer is open, its work folder holds the finished
    segments (`resumed` frames of them), `pending` are still to do, in any order and by anyone
    (this process, or the render farm's workers), each recorded with `add`; `segmented_output`
    muxes them into OUT at the end."""

    def __init__(self, plan: Plan, segmenting: Segmenting, work: WorkFolder, writer: OutputWriter) -> None:
        self.plan = plan
        self.segmenting = segmenting
        self.work = work
        self.writer = writer
        # Segment ranges count output positions: 0 is the plan's first frame.
        self.ranges = segment_ranges(0, plan.frame_count, segmenting.frames)
        self.resumed = sum(record.frames for record in work.finished)
        self.result: TranscodeResult | None = None

    def pending(self) -> list[tuple[int, int, int]]:
        """(segment number, first, stop) of the segments not finished yet, in order."""
        done = {record.index for record in self.work.finished}
        return [(number, first, stop) for number, (first, stop) in enumerate(self.ranges) if number not in done]

    def add(self, record: SegmentRecord, extradata: bytes | None, data: bytes | None = None,
            edits: bytes | None = None) -> None:
        """Record a finished segment: its files already in the work folder (`data` None), or its
        bytes and its sidecar entries' bytes (`edits`), written there after their checksums are
        checked."""
        from vidface.resume import edits_path

        path = self.work.path / record.file
        for content, target, digest in ((data, path, record.sha256), (edits, edits_path(path), record.edits_sha256)):
            if content is None:
                continue
            if hashlib.sha256(content).hexdigest() != digest:
                raise OutputError(f"segment {record.index} of {str(self.plan.output)!r} arrived damaged "
                                  f"(checksum mismatch)")
            with AtomicFile(target, "wb", durable=True) as written:
                written.file.write(content)
        self.work.add(record, extradata)


@contextmanager
def segmented_output(plan: Plan, resume: Resume) -> Iterator[SegmentedOutput]:
    """Open OUT's writer and the work folder, yield the run's SegmentedOutput, and when the block
    ends with every segment finished, mux them into OUT (its `result` is then set). Interrupted,
    the finished segments are kept for the next run (ResumableInterrupt says so); failed before
    any finished, the work folder is removed."""
    from vidface.resume import WorkFolder, check_unchanged, output_lock, run_key, work_folder

    started = time.perf_counter()
    segmenting = resume.segmenting
    key = run_key(plan.info.path, {"plan": plan_key(plan, segmenting), "processor": dict(resume.key)})
    with output_lock(plan.output, overwrite=plan.overwrite):  # held until the work folder is gone
        work = None
        try:
            # OUT's writer is opened first, so a stream OUT cannot hold fails before any work.
            with atomic_output(plan.output, temporary=owned_temporary(plan.output)) as temporary:
                with output_writer(plan, temporary) as writer:
                    work = WorkFolder.open(work_folder(plan.output, resume.work_dir), key, restart=resume.restart)
                    if work.extradata_sha256 not in (None, hashlib.sha256(writer.extradata).hexdigest()):
                        raise OutputError(f"the encoder's headers differ from those of the segments in "
                                          f"{str(work.path)!r}; rerun with --no-resume")
                    run = SegmentedOutput(plan, segmenting, work, writer)
                    yield run
                    if run.pending():
                        raise OutputError(f"{len(run.pending())} segments of {str(plan.output)!r} are not finished; "
                                          "run the same command again")
                    frames = _mux_segments(plan, work, writer)
                check_unchanged(plan.info.path, key["input"])
                _write_sidecar(plan, work)  # once OUT is whole: it is put in place just before OUT
        except BaseException as error:
            if work is not None and not work.finished:
                work.remove()
            if isinstance(error, (av.error.FFmpegError, OSError)):
                raise write_failed(plan.output, error) from None
            if isinstance(error, KeyboardInterrupt) and work is not None and work.finished:
                done = sum(record.frames for record in work.finished)
                raise ResumableInterrupt(f"{done} of {plan.frame_count} frames are kept in {work.path}; "
                                         "run the same command again to resume") from None
            raise
        work.remove()
    run.result = TranscodeResult(output=plan.output, frames=frames, seconds=time.perf_counter() - started,
                                 resumed=run.resumed)


def transcode_resumable(plan: Plan, processor: FrameProcessor, resume: Resume,
                        progress: Callable[[int], None] | None,
                        on_segment: Callable[[int, int], None] | None) -> TranscodeResult:
    """`transcode` in segments kept in a work folder, processed here; see the module docstring."""
    with segmented_output(plan, resume) as run:
        if progress is not None:
            progress(run.resumed)
        if run.pending():
            _process_segments(run, processor, progress, on_segment)
    return run.result


def _process_segments(run: SegmentedOutput, processor: FrameProcessor, progress: Callable[[int], None] | None,
                      on_segment: Callable[[int, int], None] | None) -> None:
    """Process and encode the pending segments into the work folder, decoding the input once
    from the first frame they need (`_FrameWindow`)."""
    plan, segmenting, todo = run.plan, run.segmenting, run.pending()
    first_needed = max(0, todo[0][1] - segmenting.warmup)
    cancel = threading.Event()
    decoded = in_background(input_frames(plan, first_needed, resumed=first_needed > 0), cancel, "decode")
    window = _FrameWindow(decoded)
    written = run.resumed

    def count(_frame: Frame) -> None:
        nonlocal written
        written += 1
        if progress is not None:
            progress(written)

    try:
        for number, first, stop in todo:
            feed = window.frames(max(0, first - segmenting.warmup), min(plan.frame_count, stop + segmenting.lookahead),
                                 output=(first, stop), keep_from=stop - segmenting.warmup)
            if on_segment is not None:
                on_segment(first, stop)
            run.add(*encode_segment(plan, processor, feed, number, first, stop, run.work.segment_path(number),
                                    cancel, count))
    finally:
        cancel.set()
        decoded.close()


def segment_feed(plan: Plan, segmenting: Segmenting, first: int, stop: int) -> Iterator[Frame]:
    """The frames a segment's processor call takes, decoded on their own (seeking, as a resumed
    run does): its warm-up frames, its own, and its look-ahead."""
    limit = min(plan.frame_count, stop + segmenting.lookahead)
    start = max(0, first - segmenting.warmup)
    frames = input_frames(plan, start, resumed=start > 0)
    try:
        for frame in frames:
            if frame.index >= limit:
                return
            yield frame
    finally:
        frames.close()


def encode_segment(plan: Plan, processor: FrameProcessor, feed: Iterator[Frame], number: int, first: int,
                   stop: int, path: Path, cancel: threading.Event,
                   on_frame: Callable[[Frame], None] | None = None) -> tuple[SegmentRecord, bytes | None]:
    """Run `feed` through a fresh call of `processor`, encode the frames of [first, stop) into
    the segment file `path` (`vidface.resume.SegmentWriter`, with their sidecar entries where the
    plan has provenance); returns its record and its encoder's headers (None when it has no
    frame). on_frame: called with each frame kept."""
    from vidface.resume import SegmentWriter

    _, _, shift, copy_range = frame_timing(plan)
    encoder = OutputWriter(io.BytesIO(), plan.container_format, plan.info, plan.encode, plan.pix_fmt,
                           (), copy_range, video_shift=shift)
    segment = SegmentWriter(path)
    edits: list[str] | None = None if plan.provenance is None else []
    try:
        processed = in_background(processor(feed), cancel, "process")
        try:
            for frame in processed:
                if first <= frame.index < stop:
                    if edits is not None and frame.edits:
                        edits.append(entry_line(frame_entry(frame)))
                    segment.write(encoder.encode(frame))
                    if on_frame is not None:
                        on_frame(frame)
        finally:
            processed.close()
        segment.write(encoder.flush_encoder())
        # frames the input could not give leave the segment short (input_frames warned)
        frames = encoder.frames_written
        return segment.finish(number, first, stop, frames, edits), encoder.extradata if frames else None
    except BaseException:
        segment.discard()
        raise
    finally:
        encoder.close(flush=False)


def _mux_segments(plan: Plan, work: WorkFolder, writer: OutputWriter) -> int:
    """Mux the finished segments' packets into OUT's writer (the copied streams interleave);
    return the frame count.

    Decode timestamps are made afresh over the joined segments (`decode_times`, with the
    largest reorder delay of any segment), so they keep increasing where two separately
    encoded segments meet, also with B-frames and a variable frame rate.
    """
    from vidface.resume import decode_times, read_segment

    records = sorted(work.finished, key=lambda record: record.index)
    frames = sum(record.frames for record in records)
    check_written(plan, frames)
    delay = max(record.reorder_delay for record in records)
    time_base = plan.info.video.time_base
    before: list[int] = []  # the largest `delay` pts of the segments so far
    for record in records:
        path = work.path / record.file
        pts = [packet.pts for packet in read_segment(path, data=False)]
        if len(pts) != record.packets:
            raise OutputError(f"work file {str(path)!r} is truncated; rerun with --no-resume")
        dts = decode_times(before + pts, delay)[len(before):]
        for packet, stamp in zip(read_segment(path), dts):  # one packet in memory at a time
            writer.mux_video([dataclasses.replace(packet, dts=stamp).to_av(time_base)])
        before = sorted(before + pts)[-delay:] if delay else []
    return frames


def _write_sidecar(plan: Plan, work: WorkFolder) -> None:
    """OUT's sidecar from the segments' entries, in frame order, with their tracks and people
    numbered across segments (`TrackNumbering`); none without provenance."""
    from vidface.resume import edits_path

    with sidecar_for(plan) as sidecar:
        if sidecar is None:
            return
        numbering = TrackNumbering()
        for record in sorted(work.finished, key=lambda record: record.index):
            with edits_path(work.path / record.file).open(encoding="utf-8") as lines:
                sidecar.add_lines(numbering.segment(lines))


class _FrameWindow:
    """Hands out consecutive ranges of a frame stream, keeping the few frames that the next
    range needs again (warm-up and look-ahead), so a continuous run decodes each frame once.

    A kept frame goes out as itself only to the range that outputs it, which changes and
    encodes it: the window keeps a copy for the ranges after (`Frame.copy`, without the
    decoder's flags and side data, which only the encoder reads). A range that needs a kept
    frame for warm-up or look-ahead alone gets it shared (`Frame.shared`: a processor changes a
    copy of it)."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self._frames = frames
        self._kept: deque[Frame] = deque()

    def frames(self, start: int, stop: int, *, output: tuple[int, int], keep_from: int) -> Iterator[Frame]:
        """Frames with index in [start, stop), in order (indices may skip: see input_frames);
        those with index in [output[0], output[1]) are this range's output. Afterwards only
        those with index >= keep_from stay in memory, unedited. Ranges must not go back before
        an earlier keep_from, nor keep_from pass stop."""
        while self._kept and self._kept[0].index < start:
            self._kept.popleft()
        for position, frame in enumerate(list(self._kept)):
            if frame.index >= stop:
                return
            yield self._hand_out(frame, output, kept_at=position)
        last = self._kept[-1].index if self._kept else start - 1
        while last + 1 < stop:
            frame = next(self._frames, None)
            if frame is None:
                break
            last = frame.index
            if frame.index < start:
                continue
            kept_at = None
            if frame.index >= keep_from:
                kept_at = len(self._kept)
                self._kept.append(frame)
            if frame.index >= stop:  # after frames the input could not give: a later range's
                break
            yield self._hand_out(frame, output, kept_at)
        while self._kept and self._kept[0].index < keep_from:
            self._kept.popleft()

    def _hand_out(self, frame: Frame, output: tuple[int, int], kept_at: int | None) -> Frame:
        """`frame` for a range with `output`; the kept frame at `kept_at` (if any) stays unedited."""
        if kept_at is None:
            return frame
        if output[0] <= frame.index < output[1]:
            self._kept[kept_at] = frame.copy()
            return frame
        return dataclasses.replace(frame, shared=True)
