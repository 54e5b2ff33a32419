"""Write OUT: the video re-encoded from `Frame`s, every other stream copied packet for packet.

`OutputWriter` owns one output container. `write(frame)` encodes a frame (its own pts, the
input's time base, its duration carried over) and, before each encoded video packet, muxes
the copied packets (audio, subtitles, data) that come earlier in time, read from a second
demuxer over IN. Nothing is re-encoded except the video; copied packets keep their bytes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av

from vidface.errors import OutputError
from vidface.io.copies import (CopyRange, SubtitleConverter, container_holds, copied_as, copied_packets, copy_name,
                               in_time_order)
from vidface.io.encoder_setup import output_color_range, set_video_stream, video_codec_options
from vidface.io.ffmpeg_log import logged_errors
from vidface.io.frames import FieldMarker, Frame
from vidface.io.pixels import defined_padding, reformatted
from vidface.io.options import EncodeOptions
from vidface.io.probe import FIELD_ORDERS, MPEG_1_2_VIDEO, Chapter, MediaInfo, field_shown_first
from vidface.io.sound import SoundFile, open_sound
from vidface.io.source import TAG_ERRORS, codec_name, open_input
from vidface.io.timecode import (restamp_gop, shifted_timecode, shifted_timecode_tags, start_timecode,
                                 untagged_timecode)

log = logging.getLogger(__name__)

# Muxer flag: no random IDs (Matroska's segment and track UIDs), no library version strings or
# dates, so the same frames and settings give the same file bytes in every run.
BITEXACT = {"fflags": "+bitexact"}
# Global tags that describe the file that was read, not the one written.
_STALE_TAGS = {"encoder", "duration", "major_brand", "minor_version", "compatible_brands"}
CHAPTER_FORMATS = {"matroska", "webm", "mov", "mp4", "ipod", "3gp", "3g2", "ismv", "f4v", "nut", "asf"}
"""The muxers that write chapters, measured with this FFmpeg (those tried that leave them out
without a word: AVI, MPEG-TS, MPEG-PS, FLV, MXF, raw H.264, and Ogg with video)."""
ATTACHMENT_FORMATS = {"matroska"}
"""The muxers that write attached files (fonts, cover art), measured with this FFmpeg: WebM's
and MPEG-TS's take them and leave them out without a word, the others refuse them."""
_CHAPTER_TIME_BASE = Fraction(1, 1_000_000_000)  # Matroska's nanoseconds: exact for MP4's units too


class OutputWriter:
    """Writes one output file: encodes frames, copies the other streams' packets in time order.

    Use as a context manager; `close()` flushes the encoder and the remaining copied packets.
    copy_streams: indices of IN's streams to copy. video_shift: ticks of the video time base
    subtracted from every frame's pts (a preview range starting later than 0 starts at 0).
    tags: container tags set over those kept from IN, whose timecodes move on to OUT's first
    frame (`copy_range.shift` after IN's). chapters: OUT's, on its timeline. blu_ray: OUT is a
    Blu-ray transport stream (`copies.is_blu_ray`), which FFmpeg's muxer cannot tell from a
    temporary file's name. sound: a sound file whose audio streams are copied after IN's, on
    IN's timeline (`vidface.io.sound`).

    `write` is `encode` then `mux_video`; the two halves serve resumable runs, which encode
    segments apart (`encode`, `flush_encoder` on a writer over an in-memory file that is never
    muxed) and later mux their packets into OUT with `mux_video`. Writers made with the same
    format, options and pixel format open identical encoders (same `extradata`).
    """

    def __init__(self, path: Path | BinaryIO, container_format: str, info: MediaInfo, options: EncodeOptions,
                 pix_fmt: str, copy_streams: tuple[int, ...], copy_range: CopyRange,
                 video_shift: int = 0, tags: Mapping[str, str] | None = None,
                 chapters: Sequence[Chapter] = (), blu_ray: bool = False, sound: SoundFile | None = None) -> None:
        self._shift = video_shift
        self._blu_ray = blu_ray
        video = info.video
        self._rate = video.average_rate
        # OUT's tags name its first frame: the range's first, or the first IN's decoder gives.
        undecoded = Fraction(video.pts[video.first_decoded] - video.pts[0]) * video.time_base
        self._timecode_shift = (max(copy_range.shift, undecoded), self._rate)
        start = start_timecode(info)  # IN's first frame's; then the range's
        self._range_timecode = (None if start is None or not self._rate else
                                shifted_timecode(start, round(copy_range.shift * self._rate), self._rate))
        self._groups_from: str | None = None  # the encoder's first picture's timecode, for MPEG-1/2's groups
        self._durations: dict[int, int] = {}
        self._time_base = info.video.time_base  # the frames', in which packets are handed back
        self._frames = 0
        self._resized = False
        self._mark_fields = FieldMarker(field_shown_first(info.video.field_order)) if info.video.interlaced else None
        file_tags = {**self._kept_tags(info.metadata), **(tags or {})}
        try:
            self._output = av.open(str(path) if isinstance(path, Path) else path, mode="w", format=container_format,
                                   metadata_errors=TAG_ERRORS,
                                   container_options={**_container_options(container_format, blu_ray),
                                                      **_tag_options(container_format, file_tags)})
        except (OSError, av.error.FFmpegError) as error:
            raise OutputError(f"cannot create {str(path)!r} ({error}); check the output folder") from None
        self._inputs: list[av.container.InputContainer] = []  # IN, and the sound file, open until OUT is closed
        try:
            source = open_input(info.path, info.video.average_rate)  # once: its video's tags, then its copies
            self._inputs.append(source)
            self._output.metadata.update(file_tags)
            self._stream = self._add_video_stream(info, options, pix_fmt, source)
            self._copies: dict[av.stream.Stream, av.stream.Stream] = {}  # by the input stream they copy
            self._converters: dict[av.stream.Stream, SubtitleConverter] = {}
            self._next: av.Packet | None = None
            self._packets: Iterator[av.Packet] = iter(())
            self._open_copies(source, copy_streams, copy_range, sound)
            if chapters:
                self._output.set_chapters([
                    {"id": chapter.id, "start": round(chapter.start / _CHAPTER_TIME_BASE),
                     "end": round(chapter.end / _CHAPTER_TIME_BASE), "time_base": _CHAPTER_TIME_BASE,
                     "metadata": chapter.metadata} for chapter in chapters])
            if isinstance(path, Path):
                self._write_header()
        except BaseException:
            self.close(flush=False)
            raise

    def _add_video_stream(self, info: MediaInfo, options: EncodeOptions, pix_fmt: str,
                          source: av.container.InputContainer) -> av.video.stream.VideoStream:
        """OUT's video stream, with the tags, colour, pixel aspect and fields of IN's (`source`'s)."""
        video = info.video
        rate = video.average_rate or Fraction(25)
        codec_options = video_codec_options(options, video, self._output.format.name, pix_fmt)
        try:
            stream = self._output.add_stream(options.codec, rate=rate, options=codec_options)
        except (av.error.FFmpegError, ValueError) as error:
            raise OutputError(f"cannot use encoder {options.codec!r} for {self._output.format.name} ({error})") from None
        set_video_stream(stream, video, pix_fmt)
        if video.rotation:
            stream.set_display_rotation(-video.rotation)
        src = source.streams[video.index]
        ctx = src.codec_context
        for name in ("color_primaries", "color_trc", "colorspace"):
            setattr(stream.codec_context, name, getattr(ctx, name))
        self._ranges = (video.color_range, output_color_range(options.codec, pix_fmt, self._output.format.name,
                                                              video.color_range))
        stream.codec_context.color_range = self._ranges[1]
        if src.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = src.sample_aspect_ratio
        if video.interlaced:
            stream.codec_context.field_order = FIELD_ORDERS.index(video.field_order)
        stream.metadata.update(_titled(self._kept_tags({**untagged_timecode(info), **src.metadata})))
        stream.disposition = src.disposition
        try:
            stream.codec_context.open()
        except (av.error.FFmpegError, ValueError) as error:
            why = logged_errors(stream.codec_context.open) or _reason(error)
            raise OutputError(f"encoder {options.codec} rejects these settings ({why}); "
                              "check --preset, --pix-fmt and --encoder-opt") from None
        return stream

    def _open_copies(self, source: av.container.InputContainer, copy_streams: tuple[int, ...], copy_range: CopyRange,
                     sound: SoundFile | None) -> None:
        """OUT's streams for IN's (`source`'s) `copy_streams` and the sound file's, and their packets
        in time order."""
        feeds = []
        if copy_streams:
            copied = [src for index in copy_streams if (src := self._copy(source.streams[index])) is not None]
            if copied:  # else attached files alone: no packets (demux of no stream would read every one)
                feeds.append(copied_packets(source, copied, copy_range))
        if sound is not None:
            source = open_sound(sound.path)
            self._inputs.append(source)
            copied = [self._copy(source.streams[stream.index], sound.label) for stream in sound.streams]
            feeds.append(copied_packets(source, copied, sound.range_of(copy_range)))
        self._packets = in_time_order(*feeds)

    def _copy(self, src: av.stream.Stream, sound_file: str | None = None) -> av.stream.Stream | None:
        """Add OUT's stream for the input stream `src` (of IN, or of the sound file named
        `sound_file`); None for an attached file, which OUT holds as a file."""
        index, codec = src.index, codec_name(src)
        if src.type == "attachment":
            name = src.metadata.get("filename", f"attachment{index}")
            self._output.add_attachment(name, src.mimetype or "application/octet-stream", src.data)
            return None
        converted_to = copied_as(self._output.format.name, src, self._blu_ray, sound_file) if src.type in (
            "audio", "subtitle") else None
        try:
            if converted_to is None:
                out = self._output.add_stream_from_template(src)
            else:
                log.info("stream #%d (subtitle %s) is converted to %s: %s files hold no %s", index, codec,
                         converted_to, self._output.format.name, codec)
                self._converters[src] = SubtitleConverter(self._output, src, converted_to)
                out = self._converters[src].stream
        except (av.error.FFmpegError, ValueError) as error:
            raise OutputError(f"cannot copy {copy_name(index, sound_file)} ({src.type}) into "
                              f"{self._output.format.name} ({error})") from None
        if self._output.format.name == "avi" and codec in _AUDIO_IN_FRAMES:
            _count_avi_audio_by_frames(out, index)
        out.metadata.update(_titled(self._kept_tags(src.metadata)))
        out.disposition = src.disposition
        self._copies[src] = out
        return src

    def _write_header(self) -> None:
        """Write OUT's header now, before any frame is decoded: a muxer that cannot hold the
        video (H.264 in Ogg, compressed video in Y4M) says so here, not after the first frames.
        Other failures (a full disk) go up as they are."""
        try:
            self._output.start_encoding()
        except (av.error.FFmpegError, ValueError):
            name = self._output.format.name
            if not container_holds(name, self._stream, self._blu_ray):
                raise OutputError(f"{name} files cannot hold {self._stream.codec_context.name} video; "
                                  "choose another --codec or write a .mkv") from None
            raise

    @property
    def converted(self) -> dict[int, str]:
        """IN's streams that OUT holds converted (`copies.copied_as`): index -> OUT's codec."""
        return {source.index: converter.stream.codec_context.name for source, converter in self._converters.items()}

    @property
    def frames_written(self) -> int:
        return self._frames

    def write(self, frame: Frame) -> None:
        """Encode one frame (stored orientation; converted to the output pixel format).

        The writer takes over `frame.video`: it sets the picture's pts, clears its picture type
        (so the source's keyframe positions are not forced on the encoder) and zeroes its line
        padding (`defined_padding`: the encoder must read no byte left undefined).
        """
        self.mux_video(self.encode(frame))

    def encode(self, frame: Frame) -> list[av.Packet]:
        """Encode one frame (as `write`) and return the packets the encoder gives back, not muxed,
        each with its frame's duration."""
        if frame.shared:
            raise ValueError(f"frame {frame.index} is shared: the encoder changes the pictures it is given")
        video = frame.video
        conversion = {}
        source_range, output_range = self._ranges
        if source_range != output_range:
            conversion.update(src_color_range=source_range, dst_color_range=output_range)
        size = (self._stream.width, self._stream.height)
        if (video.width, video.height) != size:
            if not self._resized:
                log.warning("IN's picture changes size at frame %d, to %dx%d: OUT keeps its first size, %dx%d, "
                            "and such frames are scaled to it", frame.index, video.width, video.height, *size)
                self._resized = True
            conversion.update(width=size[0], height=size[1])
        if conversion or video.format.name != self._stream.pix_fmt:
            video = reformatted(video, format=self._stream.pix_fmt, **conversion)
        video = defined_padding(video)
        if self._mark_fields:
            video = self._mark_fields(video)
        video.pts = frame.pts - self._shift
        video.time_base = frame.time_base
        video.pict_type = av.video.frame.PictureType.NONE
        if frame.duration:
            self._durations[video.pts] = frame.duration
        self._frames += 1
        if (self._frames == 1 and self._range_timecode is not None
                and self._stream.codec_context.codec.canonical_name in MPEG_1_2_VIDEO):
            self._groups_from = shifted_timecode(self._range_timecode, frame.index, self._rate)
        return self._finished(self._stream.encode(video))

    def flush_encoder(self) -> list[av.Packet]:
        """The packets the encoder still holds (not muxed); call once, after the last frame."""
        return self._finished(self._stream.encode(None))

    def _finished(self, packets: list[av.Packet]) -> list[av.Packet]:
        """The encoder's packets in the frames' time base, with their frames' durations, and for
        MPEG-1/2 video, IN's timecode in their groups of pictures' headers (`restamp_gop`): a
        segment's encoder counts from its own first frame, OUT's `frame.index`."""
        for packet in packets:
            if self._groups_from is not None:
                restamp_gop(memoryview(packet), self._groups_from, self._rate)
            if packet.time_base != self._time_base:  # an encoder in a coarser time base (ASF's)
                scale = packet.time_base / self._time_base
                packet.pts, packet.dts = (None if value is None else round(value * scale)
                                          for value in (packet.pts, packet.dts))
                packet.time_base = self._time_base
            duration = self._durations.pop(packet.pts, None)
            if duration:
                packet.duration = duration
        return packets

    @property
    def extradata(self) -> bytes:
        """The encoder's global headers (e.g. H.264 SPS/PPS); empty when it has none."""
        return bytes(self._stream.codec_context.extradata or b"")

    def mux_video(self, packets: list[av.Packet]) -> None:
        """Mux encoded video packets (decode order) on OUT's video stream, after the copied
        packets that come earlier in time. Packets from another writer's `encode` must come
        from an identical encoder (same `extradata`) and carry pts/dts in the video time base."""
        for packet in packets:
            packet.stream = self._stream
            if packet.dts is not None:
                self._mux_copies_until(packet.dts * packet.time_base)
            self._output.mux(packet)

    def _mux_copies_until(self, time: Fraction | None) -> None:
        """Mux copied packets whose decode time is at most `time` seconds (None: all)."""
        while True:
            if self._next is None:
                self._next = next(self._packets, None)
                if self._next is None:
                    return
            packet = self._next
            stamp = packet.dts if packet.dts is not None else packet.pts
            if time is not None and stamp is not None and stamp * packet.time_base > time:
                return
            source = packet.stream
            if source in self._converters:
                for converted in self._converters[source].convert(packet):
                    self._output.mux(converted)
            else:
                packet.stream = self._copies[source]
                self._output.mux(packet)
            self._next = None

    def close(self, flush: bool = True) -> None:
        """Flush the encoder and the rest of the copied packets (flush=True), then close."""
        try:
            if flush:
                self.mux_video(self.flush_encoder())
                self._mux_copies_until(None)
        finally:
            while self._inputs:
                self._inputs.pop().close()
            self._output.close()

    def _kept_tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """IN's `tags` as OUT keeps them: without those that describe IN's file alone, and with
        timecodes moved on to OUT's first frame."""
        return shifted_timecode_tags({k: v for k, v in tags.items() if k.lower() not in _STALE_TAGS},
                                     *self._timecode_shift)

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(flush=kind is None)


def _container_options(container_format: str, blu_ray: bool) -> dict[str, str]:
    """The muxer's options: bitexact; for AVI, no moving of the streams when a copied one starts
    before 0 (AAC's priming). AVI writes its first frame at 0 whatever its time, and the muxer's
    move, a fraction of a frame, put the second frame a frame late; AVI's audio starts at 0
    whatever its time, so the move changes nothing there. For a Blu-ray stream, M2TS packets."""
    if container_format == "avi":
        return {**BITEXACT, "avoid_negative_ts": "disabled"}
    if container_format == "mpegts" and blu_ray:
        return {**BITEXACT, "mpegts_m2ts_mode": "1"}
    return BITEXACT


def _titled(tags: dict[str, str]) -> dict[str, str]:
    """A stream's `tags` with a QuickTime track name (FFmpeg reads MP4's and MOV's as `name`) as
    its title, which Matroska's muxer writes as the track name players show, and MP4's and MOV's
    write back as the track name."""
    names = {name.lower(): name for name in tags}
    if "title" in names or "name" not in names:
        return tags
    return {("title" if name == names["name"] else name): value for name, value in tags.items()}


# The formats whose muxer (FFmpeg's mov) writes QuickTime metadata keys when asked.
_METADATA_KEY_FORMATS = {"mov", "mp4", "ipod", "ismv"}


def _tag_options(container_format: str, tags: Mapping[str, str]) -> dict[str, str]:
    """For a QuickTime-family muxer that would leave out some of the file's `tags`, the option
    that writes them all as QuickTime metadata keys (as an iPhone writes its make, model, place
    and date): its own boxes hold a fixed set of names per format (MP4 drops a camera's make
    and model, MOV a description, both an archive's own names and every com.apple.quicktime
    key). Found by writing `tags` into a header in memory and reading them back."""
    if container_format not in _METADATA_KEY_FORMATS or not tags:
        return {}
    trial = io.BytesIO()
    with av.open(trial, "w", format=container_format, metadata_errors=TAG_ERRORS) as output:
        output.metadata.update(tags)
        output.add_mux_stream("mov_text").time_base = Fraction(1, 1000)
        output.start_encoding()
    with av.open(io.BytesIO(trial.getvalue()), metadata_errors=TAG_ERRORS) as written:
        kept = {name.lower() for name in written.metadata}  # FFmpeg matches names in any case
    return {} if all(name.lower() in kept for name in tags) else {"movflags": "+use_metadata_tags"}


_AUDIO_IN_FRAMES = {"aac", "ac3"}
"""Audio coded in frames of one duration and of varying sizes. Read from an AVI, such a stream
carries its WAVEFORMATEX block align (the largest frame's size), which FFmpeg's AVI muxer writes
as the stream's sample size: readers then timed the copy by its bytes (an AVI restored into
AVI read back its first five AAC packets at 0, and its track a fifth as long)."""


def _count_avi_audio_by_frames(stream: av.stream.Stream, index: int) -> None:
    """Write `stream`, a copy of an `_AUDIO_IN_FRAMES` stream into AVI, with no block align, so
    that AVI counts its frames (as FFmpeg writes these codecs when it encodes them). PyAV sets a
    codec option only as it opens a context: this opens the copy's decoder, whose parameters
    (those written) stay the source's."""
    context = stream.codec_context
    context.options = {"block_align": "0"}
    try:
        context.open()
    except (av.error.FFmpegError, ValueError) as error:
        raise OutputError(f"cannot copy stream #{index} ({context.name}) into avi with its frame times "
                          f"({_reason(error)}); write a .mkv instead") from None


def _reason(error: Exception) -> str:
    """FFmpeg's own explanation where PyAV has one (its last log line), else the error text."""
    text = str(error)
    marker = "last error log:"
    return text.split(marker, 1)[1].strip() if marker in text else text
