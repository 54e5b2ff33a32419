"""The transcode path: decode → FrameProcessor → encode, as overlapping threads.

`plan_transcode` probes IN and checks OUT before anything is written (it is what --dry-run
prints); `transcode` runs a plan through a `FrameProcessor`. Decoding, processing and
encoding run on separate threads joined by bounded queues, so memory stays flat whatever the
video's length. OUT is written to a temporary file next to it and renamed only when
complete; on any failure or interruption the temporary file is removed.

With `resume=Resume(...)` the run is resumable: the video is processed and encoded in
segments of `Segmenting.frames` frames whose packets are kept, checksummed, in a work folder
next to OUT (see vidface.resume), and the same call after an interruption continues at the
first unfinished segment. So that a resumed run gives exactly the frames of a continuous one,
every segment is processed the same way in every run: a fresh call of the processor is fed
`warmup` frames before the segment and `lookahead` frames after it, and only the segment's own
frames are kept. A continuous run decodes once, front to back, keeping those few frames in
memory; a resumed one seeks to its first needed frame. Frames are placed by their timestamps
(`input_frames`), so a seek that lands short of a frame (open GOP) is retried further back,
and a frame the decoder cannot give leaves a gap instead of shifting the frames after it. At
the end the segments' packets are muxed with the copied streams into OUT.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import io
import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import InputError, OutputError
from vidface.files import atomic_output
from vidface.io.encode import (INTERLACED_ENCODERS, CopyRange, EncodeOptions, OutputWriter, choose_pix_fmt,
                               output_format)
from vidface.io.frames import Frame
from vidface.io.index import frame_range
from vidface.io.probe import UNKNOWN_CODEC, MediaInfo, StreamInfo, probe

if TYPE_CHECKING:
    from vidface.resume import WorkFolder

log = logging.getLogger(__name__)

FrameProcessor = Callable[[Iterator[Frame]], Iterator[Frame]]
"""A streaming transform: yields every input frame exactly once, in order, possibly after a
bounded look-ahead. It runs on its own thread."""

QUEUE_FRAMES = 16
"""Frames buffered between two stages (decoded frames are a few MB each at 1080p)."""


def identity(frames: Iterator[Frame]) -> Iterator[Frame]:
    """The pass-through processor (`--model none`)."""
    return frames


@dataclass(frozen=True)
class TimeRange:
    """A preview range in seconds from the first frame; duration None runs to the end."""

    start: float = 0.0
    duration: float | None = None


@dataclass(frozen=True)
class Plan:
    """Everything decided before writing: what is read, what is written, and how."""

    info: MediaInfo
    output: Path
    container_format: str
    encode: EncodeOptions
    pix_fmt: str
    first_frame: int
    stop_frame: int
    copied: tuple[StreamInfo, ...]
    dropped: tuple[StreamInfo, ...] = field(default=())

    @property
    def frame_count(self) -> int:
        return self.stop_frame - self.first_frame


@dataclass(frozen=True)
class TranscodeResult:
    """frames: frames in OUT; resumed: of those, frames taken from an earlier run's segments."""

    output: Path
    frames: int
    seconds: float
    resumed: int = 0


@dataclass(frozen=True)
class Segmenting:
    """How a resumable run cuts the video: segments of `frames` frames, each processed with
    `warmup` frames before it and `lookahead` after it (processed, then dropped).

    Warm-up and look-ahead let a stateful processor (tracker, temporal blending) reach the
    same state at a segment's edges as in one long pass; they cost (warmup + lookahead) /
    frames of extra processing. At most `frames` frames of work are lost to an interruption.
    Measured with tools/bench_resume.py (face restorer, tiny model): next to segment edges the
    segmented output differs from one continuous pass by 0.001 8-bit levels on average (at most
    1) with 32 warm-up frames and a look-ahead of the tracker's lag (8), detecting faces in
    every frame, against 0.03 (at most 9) with 16 warm-up frames and 1.0 (at most 161) with no
    look-ahead; with the default detect-every 2, whose cadence starts afresh in each segment,
    0.035 (at most 10) at 32 and 8, against the face's own change of 7.9 levels per frame.
    32 + 8 frames around 900-frame segments is 4.4 % extra model work; the I/O cost of
    segments (their files, one keyframe each) is within measurement noise.
    """

    frames: int = 900
    warmup: int = 32
    lookahead: int = 8

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"segment frames must be >= 1, got {self.frames}")
        if self.warmup < 0 or self.lookahead < 0:
            raise ValueError(f"warm-up and look-ahead must be >= 0, got {self.warmup}, {self.lookahead}")


@dataclass(frozen=True)
class Resume:
    """Options of a resumable run (`transcode(..., resume=Resume(...))`).

    key: every setting outside the plan that changes the processed video (processor settings,
        model weights identity), JSON-serialisable; a work folder made under another key is
        started over. restart: discard any work folder and start over.
    """

    key: Mapping[str, Any] = field(default_factory=dict)
    restart: bool = False
    segmenting: Segmenting = Segmenting()


class ResumableInterrupt(KeyboardInterrupt):
    """Ctrl-C during a resumable run, after its work folder was kept; the message says how to
    resume."""


def plan_transcode(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    encode: EncodeOptions = EncodeOptions(),
    time_range: TimeRange = TimeRange(),
    keep_audio: bool = True,
    overwrite: bool = False,
) -> Plan:
    """Probe IN, check OUT and the options; raise InputError/OutputError before any write.

    Also holds the C allocator steady for the run (`steady_allocator`), from here on: before a
    caller loads its model, whose freed buffers would otherwise raise malloc's threshold."""
    steady_allocator()
    input_path, output_path = Path(input_path), Path(output_path)
    check_output(input_path, output_path, overwrite=overwrite)
    container_format = output_format(output_path)
    info = probe(input_path)
    pix_fmt = choose_pix_fmt(encode, info.video)
    if info.video.interlaced and encode.codec not in INTERLACED_ENCODERS:
        log.warning("%s cannot code fields: the interlaced video is written as progressive pictures, "
                    "each holding both fields; --codec libx264 keeps it interlaced", encode.codec)
    first, stop = frame_range(info, time_range.start, time_range.duration)
    others = [s for s in info.streams if s.index != info.video.index]
    # Attachments are files, not packets: they are copied whatever their codec.
    unwritable = [s for s in others if s.codec == UNKNOWN_CODEC and s.type != "attachment"]
    copied = tuple(s for s in others if (keep_audio or s.type != "audio") and s not in unwritable)
    video_tags = next(s.metadata for s in info.streams if s.index == info.video.index)
    for stream in unwritable:
        if "timecode" in stream.metadata and "timecode" in video_tags:
            log.info("timecode track #%d is written again from the video's timecode tag", stream.index)
        else:
            log.warning("leaving out stream #%d: FFmpeg cannot write its %s codec", stream.index, stream.type)
    dropped = tuple(s for s in others if s not in copied)
    return Plan(info=info, output=output_path, container_format=container_format, encode=encode,
                pix_fmt=pix_fmt, first_frame=first, stop_frame=stop, copied=copied, dropped=dropped)


def check_output(input_path: Path, output_path: Path, *, overwrite: bool) -> None:
    """OutputError unless OUT can be written: not IN itself, its folder writable, and not
    already there (unless overwrite)."""
    if input_path.exists() and (
        output_path.resolve() == input_path.resolve()
        or (output_path.exists() and os.path.samefile(input_path, output_path))
    ):
        raise OutputError(f"output {str(output_path)!r} is the input file; choose another output name")
    folder = output_path.parent
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {str(folder)!r} is not a folder; choose another output path")
    if not folder.is_dir():
        raise OutputError(f"output folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {str(folder)!r} is not writable; choose another output path")
    if output_path.is_dir():
        raise OutputError(f"output {str(output_path)!r} is a folder; give a file name")
    if output_path.exists() and not overwrite:
        raise OutputError(f"output {str(output_path)!r} exists; pass -y to overwrite it")


def transcode(
    plan: Plan,
    processor: FrameProcessor = identity,
    *,
    progress: Callable[[int], None] | None = None,
    resume: Resume | None = None,
    on_segment: Callable[[int, int], None] | None = None,
) -> TranscodeResult:
    """Run `plan`: decode its frame range, pass it through `processor`, encode and mux.

    progress: called with the number of frames written so far, after each frame. The output
    appears at plan.output only when complete. resume: make the run resumable (see the module
    docstring); the processor is then called once per segment, each call starting afresh.
    on_segment: in a resumable run, called with a segment's kept frames [first, stop) (output
    positions, as Frame.index) before the processor's call for it starts, so a processor's
    counters can leave out the warm-up and look-ahead frames it processes and drops.
    """
    if resume is not None:
        from vidface.resume import output_lock

        with output_lock(plan.output):
            return _transcode_resumable(plan, processor, resume, progress, on_segment)
    info = plan.info
    started = time.perf_counter()
    cancel = threading.Event()
    try:
        with atomic_output(plan.output) as temporary:
            with _output_writer(plan, temporary) as writer:
                decoded = in_background(input_frames(plan, 0), cancel, "decode")
                processed = in_background(processor(decoded), cancel, "process")
                try:
                    for frame in processed:
                        writer.write(frame)
                        if progress is not None:
                            progress(writer.frames_written)
                finally:
                    cancel.set()
                    processed.close()
                    decoded.close()
                frames = writer.frames_written
            if frames == 0:
                raise InputError(f"input {str(info.path)!r} gave no video frames in the requested range")
            if frames != plan.frame_count:
                log.warning("wrote %d frames where the input's packets promised %d", frames, plan.frame_count)
    except av.error.FFmpegError as error:
        raise _write_failed(plan.output, error) from None
    return TranscodeResult(output=plan.output, frames=frames, seconds=time.perf_counter() - started)


MMAP_THRESHOLD = 4 * 1024 * 1024
"""Bytes from which glibc's malloc serves a block by mmap, held fixed. Measured on 720p and
320x240 clips (tiny model, CPU): glibc's initial 128 KiB made the whole run 10-13 % slower
(every frame-sized buffer mapped and zeroed anew) for a peak in 30-frame segments of +0.9 %
over one segment; 4 MiB costs no measurable speed, for +2.7 % (dynamic: up to +10 %)."""


@functools.cache
def steady_allocator() -> None:
    """Keep glibc's mmap threshold fixed at `MMAP_THRESHOLD`, once per process.

    glibc raises the threshold each time a block above it is freed (up to 32 MiB), so picture-
    sized buffers (frames, face crops) move from mmap into malloc's heaps, which keep their
    high-water mark: the peak memory of a long run then creeps up with each new stage
    (measured: +4 % over the first segments of a resumable run, mostly gone with a fixed threshold).
    Set as mallopt(M_MMAP_THRESHOLD); left alone where the user set MALLOC_MMAP_THRESHOLD_
    or the C library has no mallopt (not glibc).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library to open by None (Windows), no mallopt
        return
    m_mmap_threshold = -3  # glibc's <malloc.h>
    if not mallopt(m_mmap_threshold, MMAP_THRESHOLD):
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused; malloc keeps its dynamic threshold")


def _timing(plan: Plan) -> tuple[int | None, int | None, int, CopyRange]:
    """(start pts, stop pts, video shift, copy range) of the plan's frame range."""
    video = plan.info.video
    start_pts = video.pts[plan.first_frame] if plan.first_frame else None
    stop_pts = video.pts[plan.stop_frame] if plan.stop_frame < video.frame_count else None
    time_base = video.time_base
    shift = 0 if start_pts is None else start_pts - video.pts[0]
    copy_range = CopyRange(
        start=None if start_pts is None else Fraction(start_pts) * time_base,
        stop=None if stop_pts is None else Fraction(stop_pts) * time_base,
        shift=shift * time_base,
    )
    return start_pts, stop_pts, shift, copy_range


def _write_failed(output: Path, error: av.error.FFmpegError) -> OutputError:
    return OutputError(f"writing {str(output)!r} failed ({error}); "
                       "try another container (.mkv holds the most stream types)")


def _output_writer(plan: Plan, temporary: Path) -> OutputWriter:
    _, _, shift, copy_range = _timing(plan)
    return OutputWriter(temporary, plan.container_format, plan.info, plan.encode, plan.pix_fmt,
                        tuple(s.index for s in plan.copied), copy_range, video_shift=shift)


def segment_ranges(first: int, stop: int, frames: int) -> list[tuple[int, int]]:
    """Output frame ranges [a, b) of the segments of frames [first, stop), `frames` each (the
    last one shorter)."""
    return [(a, min(a + frames, stop)) for a in range(first, stop, frames)]


def plan_key(plan: Plan, segmenting: Segmenting) -> dict[str, Any]:
    """The plan's part of a resumable run's key: what changes the encoded segments."""
    return {"frames": [plan.first_frame, plan.stop_frame], "container": plan.container_format,
            "encode": dataclasses.asdict(plan.encode), "pix_fmt": plan.pix_fmt,
            "segmenting": dataclasses.asdict(segmenting)}


def _transcode_resumable(plan: Plan, processor: FrameProcessor, resume: Resume,
                         progress: Callable[[int], None] | None,
                         on_segment: Callable[[int, int], None] | None) -> TranscodeResult:
    """`transcode` in segments kept in a work folder; see the module docstring."""
    import hashlib

    from vidface.resume import WorkFolder, run_key, work_folder

    started = time.perf_counter()
    segmenting = resume.segmenting
    key = run_key(plan.info.path, {"plan": plan_key(plan, segmenting), "processor": dict(resume.key)})
    work = None
    try:
        # OUT's writer is opened first, so a stream OUT cannot hold fails before any work.
        with atomic_output(plan.output) as temporary, _output_writer(plan, temporary) as writer:
            work = WorkFolder.open(work_folder(plan.output), key, restart=resume.restart)
            if work.extradata_sha256 not in (None, hashlib.sha256(writer.extradata).hexdigest()):
                raise OutputError(f"the encoder's headers differ from those of the segments in "
                                  f"{str(work.path)!r}; rerun with --no-resume")
            # Segment ranges count output positions: 0 is the plan's first frame.
            ranges = segment_ranges(0, plan.frame_count, segmenting.frames)
            resumed = sum(record.frames for record in work.finished)
            if progress is not None:
                progress(resumed)
            if len(work.finished) < len(ranges):
                _process_segments(plan, processor, segmenting, work, ranges, resumed, progress, on_segment)
            frames = _mux_segments(plan, work, writer)
    except BaseException as error:
        if work is not None and not work.finished:
            work.remove()
        if isinstance(error, av.error.FFmpegError):
            raise _write_failed(plan.output, error) from None
        if isinstance(error, KeyboardInterrupt) and work is not None and work.finished:
            done = sum(record.frames for record in work.finished)
            raise ResumableInterrupt(f"{done} of {plan.frame_count} frames are kept in {work.path}; "
                                     "run the same command again to resume") from None
        raise
    work.remove()
    return TranscodeResult(output=plan.output, frames=frames, seconds=time.perf_counter() - started,
                           resumed=resumed)


def _process_segments(plan: Plan, processor: FrameProcessor, segmenting: Segmenting, work: WorkFolder,
                      ranges: list[tuple[int, int]], written: int, progress: Callable[[int], None] | None,
                      on_segment: Callable[[int, int], None] | None) -> None:
    """Process and encode the segments after the finished ones into the work folder."""
    from vidface.resume import SegmentWriter

    todo = ranges[len(work.finished):]
    first_needed = max(0, todo[0][0] - segmenting.warmup)
    _, _, shift, _ = _timing(plan)
    cancel = threading.Event()
    decoded = in_background(input_frames(plan, first_needed, resumed=first_needed > 0), cancel, "decode")
    window = _FrameWindow(decoded)
    try:
        for number, (first, stop) in enumerate(todo, start=len(work.finished)):
            feed = window.frames(max(0, first - segmenting.warmup), min(plan.frame_count, stop + segmenting.lookahead),
                                 output=(first, stop), keep_from=stop - segmenting.warmup)
            encoder = OutputWriter(io.BytesIO(), plan.container_format, plan.info, plan.encode, plan.pix_fmt,
                                   (), CopyRange(), video_shift=shift)
            segment = SegmentWriter(work.segment_path(number))
            try:
                if on_segment is not None:
                    on_segment(first, stop)
                processed = in_background(processor(feed), cancel, "process")
                try:
                    for frame in processed:
                        if first <= frame.index < stop:
                            segment.write(encoder.encode(frame))
                            written += 1
                            if progress is not None:
                                progress(written)
                finally:
                    processed.close()
                segment.write(encoder.flush_encoder())
                # frames the input could not give leave the segment short (input_frames warned)
                frames = encoder.frames_written
                work.add(segment.finish(number, first, stop, frames), encoder.extradata if frames else None)
            except BaseException:
                segment.discard()
                raise
            finally:
                encoder.close(flush=False)
    finally:
        cancel.set()
        decoded.close()


def _mux_segments(plan: Plan, work: WorkFolder, writer: OutputWriter) -> int:
    """Mux the finished segments' packets into OUT's writer (the copied streams interleave);
    return the frame count.

    Decode timestamps are made afresh over the joined segments (`decode_times`, with the
    largest reorder delay of any segment), so they keep increasing where two separately
    encoded segments meet, also with B-frames and a variable frame rate.
    """
    from vidface.resume import decode_times, read_segment

    frames = sum(record.frames for record in work.finished)
    if frames == 0:
        raise InputError(f"input {str(plan.info.path)!r} gave no video frames in the requested range")
    if frames != plan.frame_count:
        log.warning("wrote %d frames where the input's packets promised %d", frames, plan.frame_count)
    delay = max(record.reorder_delay for record in work.finished)
    time_base = plan.info.video.time_base
    before: list[int] = []  # the largest `delay` pts of the segments so far
    for record in work.finished:
        path = work.path / record.file
        pts = [packet.pts for packet in read_segment(path, data=False)]
        if len(pts) != record.packets:
            raise OutputError(f"work file {str(path)!r} is truncated; rerun with --no-resume")
        dts = decode_times(before + pts, delay)[len(before):]
        for packet, stamp in zip(read_segment(path), dts):  # one packet in memory at a time
            writer.mux_video([dataclasses.replace(packet, dts=stamp).to_av(time_base)])
        before = sorted(before + pts)[-delay:] if delay else []
    return frames


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
    expected = first
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
        log.warning("frames %d-%d of %r could not be decoded; they are left out of the output",
                    first, stop - 1, str(plan.info.path))
    elif len(str(count)) > len(str(count - (missing[-1][1] - missing[-1][0]))):
        log.warning("%d frames of %r could not be decoded so far (the latest: %d-%d)", count,
                    str(plan.info.path), missing[-1][0], missing[-1][1] - 1)


def _placed_frames(plan: Plan, first: int) -> Iterator[tuple[int, Frame]]:
    """(output position, frame) for the frames the decoder gives from position `first` on.

    A seek lands on a keyframe before the frame sought, which is not always enough: in an open
    GOP the frames shown just before a keyframe are decoded after it from the GOP before it
    (the decoder drops them after a seek), and some containers (MPEG-PS) seek by estimate. So
    when the frame sought does not come out first, the seek goes further back and tries again.
    A frame whose pts the probe did not see, or that comes out of order, is an InputError.
    """
    from vidface.io.decode import decode_frames

    video = plan.info.video
    wanted = plan.first_frame + first
    if wanted >= plan.stop_frame:
        return
    _, stop_pts, _, _ = _timing(plan)
    back = 0
    while True:
        seek = max(0, wanted - back)
        frames = decode_frames(plan.info.path, start_pts=video.pts[seek] if seek else None, stop_pts=stop_pts)
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


class _FrameWindow:
    """Hands out consecutive ranges of a frame stream, keeping the few frames that the next
    range needs again (warm-up and look-ahead), so a continuous run decodes each frame once.

    A processor may edit the frames it is given in place, so a frame goes out as itself only
    to the range that outputs it; a range that needs it for warm-up or look-ahead alone gets a
    copy (`Frame.copy`, without the decoder's flags and side data, which only the encoder reads)."""

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
            self._kept[kept_at] = frame.copy()  # its output is this range's; later ranges only warm up on it
            return frame
        return frame.copy()


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Worker:
    """A daemon thread that runs one job after another (see `_WorkerPool`)."""

    def __init__(self, pool: _WorkerPool) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[tuple[str, Callable[[], None]]] = queue.SimpleQueue()
        self.stage = ""
        self.thread = threading.Thread(target=self._loop, name="vidface-idle", daemon=True)
        self.thread.start()

    def run(self, stage: str, job: Callable[[], None]) -> None:
        self.stage = stage
        self._jobs.put((stage, job))

    def _loop(self) -> None:
        while True:
            stage, job = self._jobs.get()
            self.thread.name = f"vidface-{stage}"
            job()  # never raises: in_background's job hands every exception to its consumer
            self.thread.name = "vidface-idle"
            self._pool.release(self)


class _WorkerPool:
    """Threads for `in_background`, kept when idle and reused by later calls.

    A resumable run starts its stages afresh for every segment; on new threads each time, the
    C allocator (glibc's per-thread arenas) and torch's per-thread OpenMP team would be set up
    again and again, and the process's peak memory crept up segment after segment. A job goes
    to an idle thread that last ran the same stage, so a stage keeps its arena and its OpenMP
    threads; there are never more threads than stages that ran at one time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def start(self, stage: str, job: Callable[[], None]) -> None:
        with self._lock:
            same = [worker for worker in self._idle if worker.stage == stage]
            worker = same[-1] if same else self._idle[-1] if self._idle else None
            if worker is not None:
                self._idle.remove(worker)
        if worker is None:
            worker = _Worker(self)
        worker.run(stage, job)

    def release(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)


_WORKERS = _WorkerPool()


def in_background(items: Iterable, cancel: threading.Event, name: str, maxsize: int = QUEUE_FRAMES) -> Iterator:
    """Iterate `items` on a worker thread (named vidface-`name` while it runs), through a queue
    of at most `maxsize` items.

    An exception on the thread is re-raised in the consumer; setting `cancel` (or closing the
    returned generator before its end, which sets `cancel`) stops the thread at its next item.
    The consumer's generator returns only once the thread is done with `items` (closed it), so
    the thread can at once take the next call's work.
    """
    buffer: queue.Queue = queue.Queue(maxsize)
    done = threading.Event()

    def put(item: object) -> bool:
        while not cancel.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            iterator = iter(items)
            try:
                for item in iterator:
                    if not put(item):
                        return
                put(_END)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))
        finally:
            done.set()

    _WORKERS.start(name, work)

    ended = False

    def stop() -> None:
        if not ended:
            cancel.set()
        done.wait()

    def consume() -> Iterator:
        nonlocal ended
        try:
            while True:
                try:
                    item = buffer.get(timeout=0.05)
                except queue.Empty:
                    if done.is_set() and buffer.empty():
                        return
                    continue
                if item is _END:
                    ended = True
                    return
                if isinstance(item, _Failure):
                    ended = True
                    raise item.error
                yield item
        finally:
            stop()

    return _Consumer(consume(), stop)


class _Consumer(Iterator):
    """The consumer's side of `in_background`. Unlike a bare generator's, its close() also
    stops and waits for the worker when no item was taken yet (a generator never started skips
    its `finally`), so whoever owns the worker's source may close that source right after."""

    def __init__(self, items: Iterator, stop: Callable[[], None]) -> None:
        self._items = items
        self._stop = stop

    def __next__(self):
        return next(self._items)

    def close(self) -> None:
        self._items.close()
        self._stop()
