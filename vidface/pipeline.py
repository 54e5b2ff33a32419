"""The transcode path: decode → FrameProcessor → encode, as overlapping threads.

`plan_transcode` probes IN and checks OUT before anything is written (it is what --dry-run
prints); `transcode` runs a plan through a `FrameProcessor`. Decoding, processing and
encoding run on separate threads joined by bounded queues, so memory stays flat whatever the
video's length. OUT is written to a temporary file next to it and renamed only when
complete; on any failure or interruption the temporary file is removed.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import InputError, OutputError
from vidface.io.encode import CopyRange, EncodeOptions, OutputWriter, choose_pix_fmt, output_format
from vidface.io.frames import Frame
from vidface.io.index import frame_range
from vidface.io.probe import UNKNOWN_CODEC, MediaInfo, StreamInfo, probe

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
    output: Path
    frames: int
    seconds: float


def plan_transcode(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    encode: EncodeOptions = EncodeOptions(),
    time_range: TimeRange = TimeRange(),
    keep_audio: bool = True,
    overwrite: bool = False,
) -> Plan:
    """Probe IN, check OUT and the options; raise InputError/OutputError before any write."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_output(input_path, output_path, overwrite=overwrite)
    container_format = output_format(output_path)
    info = probe(input_path)
    pix_fmt = choose_pix_fmt(encode, info.video)
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
) -> TranscodeResult:
    """Run `plan`: decode its frame range, pass it through `processor`, encode and mux.

    progress: called with the number of frames written so far, after each frame. The output
    appears at plan.output only when complete.
    """
    from vidface.io.decode import decode_frames

    info, video = plan.info, plan.info.video
    start_pts = video.pts[plan.first_frame] if plan.first_frame else None
    stop_pts = video.pts[plan.stop_frame] if plan.stop_frame < video.frame_count else None
    time_base = video.time_base
    shift = 0 if start_pts is None else start_pts - video.pts[0]
    copy_range = CopyRange(
        start=None if start_pts is None else Fraction(start_pts) * time_base,
        stop=None if stop_pts is None else Fraction(stop_pts) * time_base,
        shift=shift * time_base,
    )

    temporary = plan.output.with_name(f".{plan.output.name}.{uuid.uuid4().hex[:8]}.partial")
    started = time.perf_counter()
    cancel = threading.Event()
    try:
        with OutputWriter(temporary, plan.container_format, info, plan.encode, plan.pix_fmt,
                          tuple(s.index for s in plan.copied), copy_range, video_shift=shift) as writer:
            decoded = _background(decode_frames(info.path, start_pts=start_pts, stop_pts=stop_pts),
                                  cancel, "decode")
            processed = _background(processor(decoded), cancel, "process")
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
        os.replace(temporary, plan.output)
    except av.error.FFmpegError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"writing {str(plan.output)!r} failed ({error}); "
                          "try another container (.mkv holds the most stream types)") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return TranscodeResult(output=plan.output, frames=frames, seconds=time.perf_counter() - started)


_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _background(items: Iterable, cancel: threading.Event, name: str, maxsize: int = QUEUE_FRAMES) -> Iterator:
    """Iterate `items` on a thread of its own, through a queue of at most `maxsize` items.

    An exception on the thread is re-raised in the consumer; setting `cancel` (or closing
    the returned generator) stops the thread at its next item.
    """
    buffer: queue.Queue = queue.Queue(maxsize)

    def put(item: object) -> bool:
        while not cancel.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=f"vidface-{name}", daemon=True)
    thread.start()

    def consume() -> Iterator:
        try:
            while True:
                try:
                    item = buffer.get(timeout=0.05)
                except queue.Empty:
                    if cancel.is_set() and not thread.is_alive():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            if thread.is_alive():
                cancel.set()
                thread.join()

    return consume()
