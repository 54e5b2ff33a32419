"""What a transcode is, decided before anything is written: the frame range (`TimeRange`), the
output and its encoding (`Plan`, made by `plan_transcode`), how a resumable run is cut into
segments (`Segmenting`, `Resume`), and what a run returns.

`plan_transcode` probes IN and checks OUT before anything is written (it is what --dry-run
prints); `vidface.pipeline.transcode` runs a plan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO


from vidface.errors import InputError, OutputError, OutputExists
from vidface.io.copies import CopyRange, held_streams, is_blu_ray, refused_packets, ways_on
from vidface.io.codec_choice import resolved_codec
from vidface.io.encode import ATTACHMENT_FORMATS, CHAPTER_FORMATS, OutputWriter
from vidface.io.encoder_setup import (check_frame_times_kept, choose_pix_fmt, codes_fields, keeps_sample_aspect,
                                      output_format, video_encoder)
from vidface.io.frames import Frame
from vidface.io.index import frame_range
from vidface.io.options import EncodeOptions
from vidface.io.probe import Chapter, MediaInfo, StreamInfo, probe
from vidface.io.sound import SoundFile, open_sound, sound_file
from vidface.io.source import STREAM_SEARCH_SECONDS, UNKNOWN_CODEC, open_input
from vidface.io.timecode import range_seconds
from vidface.memory import steady_allocator

if TYPE_CHECKING:
    from vidface.provenance import Provenance

log = logging.getLogger(__name__)

FrameProcessor = Callable[[Iterator[Frame]], Iterator[Frame]]
"""A streaming transform: yields every input frame exactly once, in order, possibly after a
bounded look-ahead. It runs on its own thread."""


def identity(frames: Iterator[Frame]) -> Iterator[Frame]:
    """The pass-through processor (`--model none`)."""
    return frames


@dataclass(frozen=True)
class TimeRange:
    """A preview range in seconds from the first frame (duration None runs to the end), or in
    timecode: a start of IN's own timecode, a duration counted in frames (`timecode.range_seconds`);
    and the rate an image sequence IN is read at (`probe`; None: its files' own)."""

    start: float | str = 0.0
    duration: float | str | None = None
    frame_rate: Fraction | None = None


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
    sound: SoundFile | None = None  # --audio's: its streams are copied after IN's
    provenance: Provenance | None = None  # a restoring run's: OUT gets its tag and sidecar
    overwrite: bool = False  # an existing OUT may be replaced (-y)

    @property
    def frame_count(self) -> int:
        return self.stop_frame - self.first_frame

    @property
    def never_decoded(self) -> int:
        """The range's first frames that never decode: IN's before its first decodable one
        (`VideoInfo.first_decoded`, an open GOP's leading B-frames cut from the GOP before)."""
        return max(0, min(self.info.video.first_decoded, self.stop_frame) - self.first_frame)

    @property
    def decodable_count(self) -> int:
        """The frames a run of the plan writes where the rest of IN decodes: the range's, less
        those that never decode (what its progress counts up to)."""
        return self.frame_count - self.never_decoded


def check_written(plan: Plan, frames: int) -> None:
    """InputError where a run wrote no frame; a warning where it wrote another count than IN's
    packets promise, leaving aside those that never decode (`Plan.never_decoded`)."""
    if frames == 0:
        raise InputError(f"input {str(plan.info.path)!r} gave no video frames in the requested range")
    if frames != plan.decodable_count:
        log.warning("wrote %d frames where the input's packets promised %d", frames, plan.decodable_count)


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
    The defaults are the smallest warm-up and look-ahead whose segment edges match one
    continuous pass to well under the face's own frame-to-frame change, and segments long
    enough to keep that extra work small; tools/bench_resume.py measures both (figures in
    docs/benchmarks.md).
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
        started over. restart: discard any work folder and start over. work_dir: where the
        work folder goes (None: next to OUT; see vidface.resume.work_folder).
    """

    key: Mapping[str, Any] = field(default_factory=dict)
    restart: bool = False
    segmenting: Segmenting = Segmenting()
    work_dir: Path | None = None


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
    sound: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    work_dir: Path | None = None,
) -> Plan:
    """Probe IN, check OUT and the options; raise InputError/OutputError before any write.
    keep_audio: copy IN's audio streams. sound: a sound file whose audio streams are copied after
    IN's (`vidface.io.sound`). work_dir: the render farm's work folder (`Resume.work_dir`), for
    `check_output`.

    Also holds the C allocator steady for the run (`vidface.memory.steady_allocator`), from here
    on: before a caller loads its model, whose freed buffers would otherwise move malloc's policy."""
    steady_allocator()
    input_path, output_path = Path(input_path), Path(output_path)
    check_output(input_path, output_path, overwrite=overwrite, work_dir=work_dir)
    container_format = output_format(output_path)
    info = probe(input_path, time_range.frame_rate)
    if sound is not None:
        sound = sound_file(sound, info)
        if sound.path.resolve() == output_path.resolve():
            raise OutputError(f"output {str(output_path)!r} is --audio's file; choose another output name")
    if time_range.frame_rate and info.format_name != "image2":
        log.warning("--fps sets an image sequence's rate; IN is a video and keeps its own, %g fps",
                    float(info.video.average_rate or 0))
    encode = resolved_codec(encode, info.video, container_format)
    check_frame_times_kept(encode.codec, container_format)
    pix_fmt = choose_pix_fmt(encode, info.video)
    if (info.video.interlaced and not codes_fields(encode.codec, dict(encode.options))
            and video_encoder(encode.codec).lossy):
        log.warning("%s cannot code fields: the interlaced video is written as progressive pictures, "
                    "each holding both fields; --codec libx264, mpeg2video or prores_ks keeps it interlaced",
                    encode.codec)
    aspect = info.video.sample_aspect
    if aspect != 1 and not keeps_sample_aspect(encode.codec, container_format):
        log.warning("%s files written with %s lose IN's pixel aspect %d:%d (PyAV cannot give FFmpeg's muxer "
                    "the stream's): OUT will be shown %dx%d where IN is shown %dx%d; write .mov or .mp4, or use "
                    "--codec libx264, libx265 or mpeg2video, which code it", container_format, encode.codec,
                    aspect.numerator, aspect.denominator, info.video.width, info.video.height,
                    round(info.video.width * aspect), info.video.height)
    first, stop = frame_range(info, *range_seconds(time_range.start, time_range.duration, info))
    others = [s for s in info.streams if s.index != info.video.index]
    # Attachments are files, not packets: they are copied whatever their codec, where OUT holds files.
    unknown = [s for s in others if s.codec == UNKNOWN_CODEC and s.type != "attachment"]
    video_tags = next(s.metadata for s in info.streams if s.index == info.video.index)
    timecode_tracks = [s for s in unknown if "timecode" in s.metadata and "timecode" in video_tags]
    chapter_tracks = [s for s in unknown if s.index in info.chapter_tracks and container_format in CHAPTER_FORMATS]
    held = held_streams(input_path, [s.index for s in unknown if s not in timecode_tracks + chapter_tracks],
                        container_format, is_blu_ray(output_path))
    unwritable = [s for s in unknown if s.index not in held]
    unattachable = [s for s in others if s.type == "attachment" and container_format not in ATTACHMENT_FORMATS]
    copied = tuple(s for s in others if (keep_audio or s.type != "audio") and s not in unwritable + unattachable)
    for stream in unattachable:
        log.warning("leaving out attached file #%d (%s): FFmpeg writes none into %s files (.mkv holds them)",
                    stream.index, stream.metadata.get("filename", "unnamed"), container_format)
    for stream in unwritable:
        if stream in timecode_tracks:
            log.info("timecode track #%d is written again from the video's timecode tag", stream.index)
        elif stream in chapter_tracks:
            log.info("chapter track #%d is written again from the file's chapters", stream.index)
        else:
            log.warning("leaving out stream #%d: FFmpeg cannot write its %s codec into %s files", stream.index,
                        stream.type, container_format)
    if info.chapters and container_format not in CHAPTER_FORMATS:
        log.warning("leaving out the %d chapters: FFmpeg writes none into %s files (.mkv and .mp4 hold them)",
                    len(info.chapters), container_format)
    _check_packets_taken(input_path, info, [s for s in copied if s.type == "audio"], sound, container_format)
    dropped = tuple(s for s in others if s not in copied)
    return Plan(info=info, output=output_path, container_format=container_format, encode=encode,
                pix_fmt=pix_fmt, first_frame=first, stop_frame=stop, copied=copied, dropped=dropped,
                sound=sound, overwrite=overwrite)


def _check_packets_taken(input_path: Path, info: MediaInfo, sound_streams: list[StreamInfo], sound: SoundFile | None,
                         container_format: str) -> None:
    """OutputError where OUT's muxer refuses the first packet of IN's sound or of --audio's file
    (`copies.refused_packets`), before any frame is restored."""
    sources = []
    if sound_streams:
        sources.append((lambda: open_input(input_path, info.video.average_rate), sound_streams, None))
    if sound is not None:
        sources.append((lambda: open_sound(sound.path), sound.streams, sound.label))
    for opened, streams, of_file in sources:
        with opened() as container:
            refused = refused_packets(container, [s.index for s in streams], container_format, STREAM_SEARCH_SECONDS)
        if refused:
            stream = next(s for s in streams if s.index == refused[0])
            of = f" of {of_file}" if of_file else ""
            raise OutputError(f"{container_format} files cannot take the packets of stream #{stream.index} (audio "
                              f"{stream.codec}){of}: its muxer refuses them (a damaged stream's, with its decoder "
                              f"configuration missing, or a sample format it takes only in part); "
                              f"{ways_on(container_format, 'audio', of_file)}")


def reading_plan(info: MediaInfo, first: int = 0, stop: int | None = None) -> Plan:
    """A plan that only reads: `input_frames` over frames [first, stop) of `info`'s input (stop
    None: to the end), for passes that write no video of it (comparisons, reports). It starts at
    IN's first decodable frame at the earliest (`VideoInfo.first_decoded`), as OUT does."""
    return Plan(info=info, output=info.path, container_format="", encode=EncodeOptions(), pix_fmt=info.video.pix_fmt,
                first_frame=max(first, info.video.first_decoded),
                stop_frame=info.video.frame_count if stop is None else stop, copied=())


def check_output(input_path: Path, output_path: Path, *, overwrite: bool, work_dir: Path | None = None) -> None:
    """OutputError unless OUT can be written: not IN itself, its folder writable, and not
    already there (unless overwrite); an OUT that is there has what its run left when killed at
    the end removed (`discard_finished_work`, with the render farm's `work_dir`)."""
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
        from vidface.resume import discard_finished_work

        discard_finished_work(output_path, work_dir)
        raise OutputExists(f"output {str(output_path)!r} exists; pass -y to overwrite it")




def frame_timing(plan: Plan) -> tuple[int | None, int | None, int, CopyRange]:
    """(start pts, stop pts, video shift, copy range) of the plan's frame range. The video shift
    is subtracted from the frames' pts as they are written: the range's start, so that a range
    starting later starts at 0 as the streams copied with it do; in AVI the first frame's own
    time too, since AVI counts frames from its first (its muxer puts that one at 0 whatever its
    time, and left empty frames after it for a later one: the rest came one frame late)."""
    video = plan.info.video
    first_pts = video.pts[plan.first_frame]  # a plan holds at least one frame (`frame_range`)
    start_pts = first_pts if plan.first_frame else None
    stop_pts = video.pts[plan.stop_frame] if plan.stop_frame < video.frame_count else None
    time_base = video.time_base
    shift = first_pts - video.pts[0]
    copy_range = CopyRange(
        start=None if start_pts is None else Fraction(start_pts) * time_base,
        stop=None if stop_pts is None else Fraction(stop_pts) * time_base,
        shift=shift * time_base,
    )
    video_shift = first_pts if plan.container_format == "avi" else shift
    return start_pts, stop_pts, video_shift, copy_range


def write_failed(output: Path, error: Exception) -> OutputError:
    """The one line for a write of OUT or its work files that failed: the system's reason where
    there is one (a full disk, a file-size limit, a folder removed; PyAV's errno errors are
    OSErrors too), else FFmpeg's, which is most often a stream the container cannot hold."""
    if isinstance(error, OSError) and error.errno:
        return OutputError(f"writing {str(output)!r} failed ({os.strerror(error.errno)}); run the same command "
                           "again once that is fixed")
    return OutputError(f"writing {str(output)!r} failed ({error}); "
                       "try another container (.mkv holds the most stream types)")


def output_writer(plan: Plan, temporary: Path | BinaryIO) -> OutputWriter:
    """OUT's writer, tagged with the plan's provenance if it has one (over a file in memory, it
    writes no header and is never muxed: it decides what OUT holds, as for the dry run)."""
    from vidface.provenance import container_tags

    _, _, shift, copy_range = frame_timing(plan)
    tags = {} if plan.provenance is None else container_tags(plan.container_format, plan.provenance,
                                                             plan.info.metadata)
    return OutputWriter(temporary, plan.container_format, plan.info, plan.encode, plan.pix_fmt,
                        tuple(s.index for s in plan.copied), copy_range, video_shift=shift, tags=tags,
                        chapters=output_chapters(plan, copy_range), blu_ray=is_blu_ray(plan.output), sound=plan.sound)


def output_chapters(plan: Plan, copy_range: CopyRange) -> list[Chapter]:
    """IN's chapters within the plan's range, cut to it and moved as the copied streams are
    (`copy_range`, from `frame_timing`); none where OUT's container holds none. A chapter mark
    (no length) stays if it falls in the range."""
    if plan.container_format not in CHAPTER_FORMATS:
        return []
    kept = []
    for chapter in plan.info.chapters:
        start = chapter.start if copy_range.start is None else max(chapter.start, copy_range.start)
        end = chapter.end if copy_range.stop is None else min(chapter.end, copy_range.stop)
        if end > start or (end == start == chapter.start == chapter.end):
            kept.append(replace(chapter, start=start - copy_range.shift, end=end - copy_range.shift))
    return kept

