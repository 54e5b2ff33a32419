"""The streams copied into OUT: whether its container holds each as it is (`copied_as`), and
text subtitles converted to the text format of a container that holds theirs not (MP4's
mov_text into Matroska, SubRip into MP4): cue for cue, at the same times, as ffmpeg's `-c:s`
converts them."""

from __future__ import annotations

import heapq
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import OutputError
from vidface.io.source import TAG_ERRORS, codec_name, demuxed

TEXT_SUBTITLE_CODECS = {"matroska": "ass", "webm": "webvtt", "mp4": "mov_text", "mov": "mov_text",
                        "ipod": "mov_text", "3gp": "mov_text", "3g2": "mov_text"}
"""Each container's own text subtitle format, which other text subtitles are converted to
(Matroska's ASS keeps the styling the others carry)."""

_MPEGTS_CODECS = {"mpeg1video", "mpeg2video", "mpeg4", "h264", "hevc", "vvc", "cavs", "avs2", "avs3", "dirac", "vc1",
                  "mp1", "mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus", "s302m",
                  "smpte_klv", "timed_id3", "dvb_subtitle", "dvb_teletext"}
_BLU_RAY_CODECS = _MPEGTS_CODECS | {"pcm_bluray", "hdmv_pgs_subtitle", "hdmv_text_subtitle"}
"""The codecs FFmpeg's MPEG-TS muxer gives a stream type (mpegtsenc.c; Blu-ray's in M2TS mode):
it writes any other as private data, which readers take for a data stream of no known codec."""


def is_blu_ray(path: str | Path) -> bool:
    """Whether OUT's name asks for a Blu-ray transport stream (.m2ts: 192-byte packets)."""
    return str(path).lower().endswith((".m2ts", ".mts"))


def container_holds(container_format: str, stream: av.stream.Stream, blu_ray: bool = False) -> bool:
    """Whether FFmpeg's `container_format` muxer stores `stream`'s packets so that a reader knows
    them again: a header written to memory with that stream alone, else beside a video (MXF's
    muxer takes PCM audio only beside one, DV's only beside DV). A muxer's `supported_codecs` says too
    little: MOV's and FLV's name codecs their header refuses (FLAC and Opus, PCM), MXF's leaves
    out one it takes (24-bit PCM), and a muxer that keeps no list names only its defaults. For
    MPEG-TS, a codec with a stream type."""
    if container_format == "mpegts":
        return codec_name(stream) in (_BLU_RAY_CODECS if blu_ray else _MPEGTS_CODECS)
    return _header_takes(container_format, stream, beside_video=False) or (
        stream.type != "video" and _header_takes(container_format, stream, beside_video=True))


_TRIAL_VIDEO = {"dv": ("dvvideo", 720, 576)}
"""The video beside which a container's muxer is tried where it takes no other (`_header_takes`):
its own codec at a size that codec codes; else MPEG-2."""


def _header_takes(container_format: str, stream: av.stream.Stream, beside_video: bool) -> bool:
    def add(trial: av.container.OutputContainer) -> None:
        if beside_video:
            codec, width, height = _TRIAL_VIDEO.get(container_format, ("mpeg2video", 64, 48))
            video = trial.add_stream(codec, rate=25)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        trial.add_stream_from_template(stream)

    return header_written(container_format, add)


def header_written(container_format: str, add_streams: Callable[[av.container.OutputContainer], object]) -> bool:
    """Whether FFmpeg's `container_format` muxer writes its header, into memory, for the streams
    `add_streams` adds to it (which may raise ValueError for one it finds the container refuses)."""
    trial = av.open(io.BytesIO(), "w", format=container_format)
    try:
        add_streams(trial)
        trial.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError):
        return False
    finally:
        _closed(trial)  # a trailer with no packets, which MXF's muxer refuses: only the header was asked


def held_streams(path: Path, indices: Iterable[int], container_format: str, blu_ray: bool = False) -> set[int]:
    """Which of IN's streams `indices` OUT's container holds as they are (`container_holds`):
    for streams of a codec FFmpeg does not know, such as a GoPro's telemetry
    track, which an MP4 or MOV takes packet for packet and Matroska refuses."""
    indices = list(indices)
    if not indices:
        return set()
    with av.open(str(path), metadata_errors=TAG_ERRORS) as source:
        return {index for index in indices if container_holds(container_format, source.streams[index], blu_ray)}


def refused_packets(container: av.container.InputContainer, indices: Iterable[int], container_format: str,
                    within: float) -> list[int]:
    """Of `container`'s streams `indices` that `container_format` holds (`container_holds`),
    those whose first packet (in the file's first `within` seconds) its muxer refuses, written
    after its header into memory: a damaged file's sound without its decoder configuration (an
    FLV's AAC header), or a sample format the muxer takes only in part (16-bit PCM in MP4), which
    would otherwise stop the run where the first packet comes."""
    streams = [container.streams[index] for index in indices]
    first: dict[av.stream.Stream, av.Packet] = {}
    for packet in demuxed(container, *streams):
        if packet.size and packet.stream not in first:
            first[packet.stream] = packet
        stamp = packet.pts if packet.pts is not None else packet.dts
        if len(first) == len(streams) or stamp is not None and stamp * packet.time_base > within:
            break
    refused = []
    for stream, packet in first.items():
        if not container_holds(container_format, stream):
            continue  # refused as a stream (`copied_as`), with its own message
        trial = av.open(io.BytesIO(), "w", format=container_format)
        try:
            packet.stream = trial.add_stream_from_template(stream)
            trial.start_encoding()
        except (av.error.FFmpegError, ValueError):
            _closed(trial)
            continue  # a stream this muxer takes only beside a video (MXF's and DV's PCM): not tried
        try:
            trial.mux(packet)
            trial.close()  # its trailer: the interleaving muxer may write the packet only here
        except (av.error.FFmpegError, ValueError):
            refused.append(stream.index)
            _closed(trial)
    return sorted(refused)


def _closed(trial: av.container.OutputContainer) -> None:
    """Close a trial in memory whose answer is known: its trailer may fail, which says nothing more."""
    try:
        trial.close()
    except (av.error.FFmpegError, ValueError):
        pass


def copied_as(container_format: str, stream: av.stream.Stream, blu_ray: bool = False,
              sound_file: str | None = None) -> str | None:
    """How IN's audio or subtitle `stream` (or a stream of `sound_file`, `--audio`'s) goes into
    OUT: None as it is, else the text subtitle codec it is converted to; OutputError where OUT's
    container holds neither."""
    codec = codec_name(stream)
    if not codec or container_holds(container_format, stream, blu_ray):
        return None
    if stream.type == "subtitle" and stream.codec_context.codec.text_sub and container_format in TEXT_SUBTITLE_CODECS:
        return TEXT_SUBTITLE_CODECS[container_format]
    raise OutputError(f"{container_format} files cannot hold {copy_name(stream.index, sound_file)} ({stream.type} "
                      f"{codec}); {ways_on(container_format, stream.type, sound_file)}")


def copy_name(index: int, sound_file: str | None = None) -> str:
    """How messages name IN's stream `index`, or `sound_file`'s (`--audio`'s)."""
    return f"stream #{index}" + (f" of {sound_file}" if sound_file else "")


def ways_on(container_format: str, stream_type: str, sound_file: str | None = None) -> str:
    """What can be done about a stream OUT's container refuses: another container, leaving IN's
    sound out, else converting it first."""
    ways = [] if container_format == "matroska" else ["write a .mkv instead"]
    ways += ["pass --no-audio"] if stream_type == "audio" and sound_file is None else []
    return " or ".join(ways) or "convert that stream with another tool first"


def copied_packets(container: av.container.InputContainer, streams: list[av.stream.Stream],
                    copy_range: CopyRange) -> Iterator[av.Packet]:
    """The packets of `streams` in file order, those starting in the range, shifted (their
    decoders' empty flush packets left out)."""
    for packet in demuxed(container, *streams):
        if not packet.size:
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is not None and (copy_range.start is not None or copy_range.stop is not None):
            time = stamp * packet.time_base
            if copy_range.start is not None and time < copy_range.start:
                continue
            if copy_range.stop is not None and time >= copy_range.stop:
                continue
        if copy_range.shift:
            ticks = round(copy_range.shift / packet.time_base)
            if packet.pts is not None:
                packet.pts -= ticks
            if packet.dts is not None:
                packet.dts -= ticks
        yield packet


def in_time_order(*packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """The packets of several inputs, each in its file order, merged by their decode times (IN's
    copied streams and `--audio`'s sound file)."""
    return heapq.merge(*packets, key=lambda packet: (packet.dts if packet.dts is not None else packet.pts or 0)
                       * packet.time_base)


@dataclass(frozen=True)
class CopyRange:
    """Which copied packets to keep and how to shift them: those starting in [start, stop)
    seconds (None: unbounded), moved earlier by `shift` seconds."""

    start: Fraction | None = None
    stop: Fraction | None = None
    shift: Fraction = Fraction(0)


class SubtitleConverter:
    """Converts the packets of text subtitle stream `source` to `codec` on a new stream of
    `output`: each cue decoded to FFmpeg's ASS events and encoded again, with its packet's time
    and duration (a cue the source codec leaves empty, mov_text's gap filler, is left out)."""

    def __init__(self, output: av.container.OutputContainer, source: av.stream.Stream, codec: str) -> None:
        self._decoder = source.codec_context
        self._decoder.open()  # its ASS header is made as it opens
        self.stream = output.add_stream(codec)
        encoder = self.stream.codec_context
        encoder.time_base = source.time_base
        encoder.subtitle_header = self._decoder.subtitle_header

    def convert(self, packet: av.Packet) -> Iterator[av.Packet]:
        """OUT's packets for `packet` of the source stream (times already moved as copies are)."""
        cues = self._decoder.decode2(packet)
        if cues is None or not len(cues):
            return
        converted = self.stream.codec_context.encode_subtitle(cues)
        converted.pts = converted.dts = packet.pts
        converted.duration = packet.duration or round(
            Fraction(cues.end_display_time - cues.start_display_time, 1000) / packet.time_base)
        converted.time_base = packet.time_base
        converted.stream = self.stream
        yield converted
