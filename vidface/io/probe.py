"""Describe an input video (opened by `vidface.io.source`): its streams, picture, timing and tags."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from vidface.errors import InputError
from vidface.io.sequence import image_sequence
from vidface.io.source import (UNKNOWN_CODEC, codec_name, demuxed, first_video_stream, open_input, reason,
                               video_decoder)
from vidface.io.timecode import TIMECODE, gop_timecode, shifted_timecode


FIELD_ORDERS = ("unknown", "progressive", "tt", "bb", "tb", "bt")
"""FFmpeg's field orders (AVFieldOrder) by value, named as ffmpeg -field_order names them: tt and
bb are top or bottom field first (coded and shown), tb and bt coded one way and shown the other."""


def field_shown_first(field_order: str) -> str:
    """Which field of an interlaced picture in `field_order` (one of FIELD_ORDERS) is shown
    first, as FFmpeg's setfield filter and x264 name it: "bff" for bb and tb, else "tff"
    (unknown included: the order of interlaced HD)."""
    return "bff" if field_order in ("bb", "tb") else "tff"


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the input as the user sees it in `vidface probe`."""

    index: int
    type: str
    codec: str
    language: str | None
    title: str | None
    detail: str
    metadata: dict[str, str] = field(default_factory=dict)


JPEG_RANGE_FORMATS = {"yuv420p": "yuvj420p", "yuv422p": "yuvj422p", "yuv444p": "yuvj444p", "yuv411p": "yuvj411p",
                      "yuv440p": "yuvj440p"}
"""FFmpeg's full-range ("JPEG") YUV formats, by the YUV format whose levels they hold in full
range (FFmpeg's scaler converts the levels between the two)."""

MPEG_1_2_VIDEO = {"mpeg1video", "mpeg2video"}
"""The codecs (canonical names) of MPEG-1/2 video, which counts time in frames (their encoders'
time base is one frame, 1/rate, as `OutputWriter` gives them for a constant rate) and whose
groups of pictures carry a timecode (`VideoInfo.own_timecode`)."""

# FFmpeg's names of the colour tags (libavutil/pixdesc.c), for the values it knows.
MATRIX_NAMES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
                9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c",
                14: "ictcp"}
TRANSFER_NAMES = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
                  10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10",
                  15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
PRIMARIES_NAMES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
                   10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}


@dataclass(frozen=True)
class ColourTags:
    """The colour the video says it is coded in, as its first frame carries it (FFmpeg's names;
    None where it says nothing): the YUV matrix, the transfer (smpte2084 is HDR10's PQ,
    arib-std-b67 is HLG) and the primaries. OUT keeps them."""

    matrix: str | None = None
    transfer: str | None = None
    primaries: str | None = None

    @classmethod
    def of(cls, frame: av.VideoFrame) -> ColourTags:
        return cls(MATRIX_NAMES.get(frame.colorspace), TRANSFER_NAMES.get(frame.color_trc),
                   PRIMARIES_NAMES.get(frame.color_primaries))


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10's static metadata, as the video's first frame carries it: the mastering display's
    red, green and blue primaries and white point (CIE 1931 x, y) and its least and greatest
    luminance (cd/m², SMPTE ST 2086), and the content's greatest light level and greatest frame
    average (MaxCLL, MaxFALL in cd/m², CTA-861.3). None where the video does not say."""

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None
    white_point: tuple[Fraction, Fraction] | None = None
    luminance: tuple[Fraction, Fraction] | None = None
    light_levels: tuple[int, int] | None = None


@dataclass(frozen=True)
class VideoInfo:
    """The video stream vidface decodes (the input's first video stream).

    rotation: clockwise degrees that turn the stored picture upright (display matrix).
    field_order: one of FIELD_ORDERS, as the decoder reports it; interlaced: the frames hold
    two fields (from the field order, or the first frame's flag where the order is unknown).
    width/height: stored size; `display_size` is the upright size. pts: presentation
    timestamps of every frame, sorted, in `time_base` units (from the packets, no decode).
    hdr: the HDR10 metadata of its first frame, None where it carries none. colour: the colour
    tags of its first frame. own_timecode: the timecode the video's pictures carry themselves,
    counted to the first frame: MPEG-1/2 video's first group of pictures'
    (`timecode.gop_timecode`), a DPX image's header's; None where they carry none.
    sample_aspect: the width a stored pixel is shown at over its height (64:45 for 16:9 PAL SD;
    1 where the stream does not say). profile: the
    codec's profile as FFmpeg names it ("HQ", "XQ" for ProRes), None where unsaid. color_range: its
    levels, full (JPEG: as the stream says, or a full-range "yuvj" format), limited (MPEG) or
    unsaid (UNSPECIFIED, which players take as limited).
    decode_times: where IN's packets carry their times in decode order rather than the frames'
    (H.264 with B-frames in AVI or ASF, which store one time per packet), those times as the
    packets come; None otherwise (see `vidface.io.decode.decode_frames`).
    frame_bytes: the mean size of its coded pictures in bytes (an image sequence's: its first file's).
    first_decoded: the index in `pts` of the first frame the decoder gives from the start (0
    but where IN starts with frames that never decode, such as an open group of pictures' leading
    B-frames cut from the group before them); IN's timecode names frame 0 all the same.
    """

    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    rotation: int
    time_base: Fraction
    average_rate: Fraction | None
    pts: tuple[int, ...] = field(repr=False)
    field_order: str = "progressive"
    interlaced: bool = False
    decode_times: tuple[int, ...] | None = field(default=None, repr=False)
    hdr: HdrMetadata | None = None
    color_range: av.video.reformatter.ColorRange = av.video.reformatter.ColorRange.UNSPECIFIED
    colour: ColourTags = ColourTags()
    own_timecode: str | None = None
    sample_aspect: Fraction = Fraction(1)
    profile: str | None = None
    first_decoded: int = 0
    frame_bytes: float = 0.0

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) upright."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def variable_frame_rate(self) -> bool:
        """True when the frames are not evenly spaced (one tick of jitter is tolerated)."""
        steps = {b - a for a, b in zip(self.pts, self.pts[1:])}
        return bool(steps) and max(steps) - min(steps) > 1

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last (its span estimated from its
        predecessor's when the stream does not say)."""
        if not self.pts:
            return 0.0
        last_step = self.pts[-1] - self.pts[-2] if len(self.pts) > 1 else 0
        return float((self.pts[-1] + last_step - self.pts[0]) * self.time_base)


@dataclass(frozen=True)
class Chapter:
    """A chapter of the input: from `start` to `end` seconds on its timeline, its tags (title)."""

    id: int
    start: Fraction
    end: Fraction
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MediaInfo:
    """chapter_tracks: the streams that hold a MOV/MP4's chapter titles (`_chapter_tracks`)."""

    path: Path
    format_name: str
    duration: float | None
    metadata: dict[str, str]
    video: VideoInfo
    streams: tuple[StreamInfo, ...]
    chapters: tuple[Chapter, ...] = ()
    chapter_tracks: tuple[int, ...] = ()


def probe(path: str | os.PathLike[str], frame_rate: Fraction | None = None) -> MediaInfo:
    """Describe IN: streams, the video's size, rotation, pixel format, timestamps and frame count.

    Reads every packet of the file (no decoding beyond the first frame), so frame count and
    constant/variable frame rate are exact rather than taken from the header. frame_rate: the
    rate an image sequence is read at (`source.open_input`); its frames are its files, one a tick of
    1/rate, so only its first file is read.
    """
    path = Path(path)
    sequence = image_sequence(path)
    with open_input(path, frame_rate) as container:
        stream = first_video_stream(container, path)
        decoder = video_decoder(stream)
        scan = _scan_video(container, stream, decoder, path, None if sequence is None else len(sequence.numbers))
        pts, first = scan.pts, scan.first
        ctx = stream.codec_context
        field_order = FIELD_ORDERS[ctx.field_order] if 0 <= ctx.field_order < len(FIELD_ORDERS) else "unknown"
        if field_order == "unknown" and ctx.name == "dvvideo" and ctx.height in (480, 576) and first.interlaced_frame:
            field_order = "bb"  # standard-definition DV is bottom field first; FFmpeg does not say it
        pix_fmt = decoder.pix_fmt or "unknown"
        rate = _frame_rate(stream, pts)
        video = VideoInfo(
            index=stream.index,
            codec=codec_name(stream),
            width=ctx.width,
            height=ctx.height,
            pix_fmt=pix_fmt,
            bit_depth=bit_depth(pix_fmt),
            rotation=clockwise_rotation(first),
            time_base=stream.time_base,
            average_rate=rate,
            pts=pts,
            field_order=field_order,
            interlaced=field_order not in ("progressive", "unknown") or (
                field_order == "unknown" and bool(first.interlaced_frame)),
            decode_times=scan.decode_times,
            hdr=_hdr_metadata(first),
            color_range=(av.video.reformatter.ColorRange.JPEG if pix_fmt in JPEG_RANGE_FORMATS.values()
                         else av.video.reformatter.ColorRange(ctx.color_range)),
            colour=ColourTags.of(first),
            own_timecode=scan.timecode and shifted_timecode(scan.timecode, -scan.named, rate or Fraction(0)),
            sample_aspect=stream.sample_aspect_ratio or Fraction(1),
            profile=ctx.profile,
            first_decoded=_first_decoded(pts, scan.decode_times, first),
            frame_bytes=scan.frame_bytes,
        )
        streams = tuple(stream_info(s, video) for s in container.streams)
        chapters = tuple(Chapter(chapter["id"], chapter["start"] * chapter["time_base"],
                                 chapter["end"] * chapter["time_base"], dict(chapter["metadata"]))
                         for chapter in container.chapters())
        return MediaInfo(
            path=path,
            format_name=container.format.name,
            duration=container.duration / av.time_base if container.duration else None,
            metadata=dict(container.metadata),
            video=video,
            streams=streams,
            chapters=chapters,
            chapter_tracks=_chapter_tracks(container, len(chapters)),
        )


def _frame_rate(stream: av.video.stream.VideoStream, pts: tuple[int, ...]) -> Fraction | None:
    """The video's frame rate: FFmpeg's where the frames' times agree with it (within 1 % of their
    usual rate, else of their mean rate), else their mean rate. The usual rate first: a recording
    with a pause runs at its rate, which MPEG-2 can code, not at its mean. FFmpeg's raw DV reader
    says 60000 fps for 29.97 fps, which put the frames of an AVI made from it at other times and
    made MPEG-2's encoder refuse it."""
    rates = [Fraction(rate) for rate in (stream.average_rate, stream.guessed_rate) if rate]
    if len(pts) < 2 or pts[-1] == pts[0]:
        return rates[0] if rates else None
    mean = (len(pts) - 1) / ((pts[-1] - pts[0]) * stream.time_base)
    steps = sorted(b - a for a, b in zip(pts, pts[1:]))
    usual = 1 / (steps[len(steps) // 2] * stream.time_base) if steps[len(steps) // 2] else mean
    rate = next((rate for measured in (usual, mean) for rate in rates if abs(rate / measured - 1) < Fraction(1, 100)),
                mean)
    return _rational(rate)


_RATIONAL_LIMIT = 2**31 - 1
"""The largest numerator or denominator of FFmpeg's rationals (AVRational: two 32-bit ints)."""


def _rational(value: Fraction) -> Fraction:
    """`value`, or the nearest fraction FFmpeg's rationals hold: a mean rate from odd time bases
    (a damaged file's) can need more than 32 bits, which PyAV refuses to hand to an encoder."""
    if value.numerator <= _RATIONAL_LIMIT and value.denominator <= _RATIONAL_LIMIT:
        return value
    return value.limit_denominator(max(1, int(_RATIONAL_LIMIT / max(value, 1))))


def _hdr_metadata(frame: av.VideoFrame) -> HdrMetadata | None:
    """The HDR10 metadata `frame` carries (FFmpeg's AVMasteringDisplayMetadata: 10 rationals,
    then whether the primaries and the luminance are set; AVContentLightMetadata: two unsigned
    integers), None where it carries none."""
    found: dict[str, object] = {}
    try:
        side_data = list(frame.side_data)
    except ValueError:  # a kind PyAV does not know (FFmpeg 8's EXIF, on TIFF and JPEG pictures)
        return None
    for data in side_data:
        if data.type == av.sidedata.sidedata.Type.MASTERING_DISPLAY_METADATA:
            numbers = np.frombuffer(bytes(data), np.int32, count=22)
            values = [Fraction(int(n), int(d)) if d else Fraction(0) for n, d in numbers[:20].reshape(-1, 2)]
            has_primaries, has_luminance = numbers[20:]
            if has_primaries:
                found["primaries"] = tuple(zip(values[0:6:2], values[1:6:2]))
                found["white_point"] = (values[6], values[7])
            if has_luminance:
                found["luminance"] = (values[8], values[9])
        elif data.type == av.sidedata.sidedata.Type.CONTENT_LIGHT_LEVEL:
            found["light_levels"] = tuple(int(n) for n in np.frombuffer(bytes(data), np.uint32, count=2))
    return HdrMetadata(**found) if found else None


def _chapter_tracks(container: av.container.InputContainer, chapters: int) -> tuple[int, ...]:
    """The streams in which a MOV/MP4 keeps its `chapters` titles, one sample per chapter: FFmpeg
    reads the chapters from them and shows them as data streams of no codec. Writing the chapters
    makes such a track again where the output needs one."""
    if not chapters or not container.format.name.startswith("mov"):
        return ()
    return tuple(stream.index for stream in container.streams
                 if stream.type == "data" and codec_name(stream) == UNKNOWN_CODEC and stream.frames == chapters)


class _Scan(NamedTuple):
    """What `_scan_video` finds: every frame's pts (sorted), the packets' times in decode order
    where those are not the frames' (`VideoInfo.decode_times`, else None), the first decoded
    frame (its rotation and interlacing describe the video), the pictures' own timecode and the
    index in `pts` of the frame it names, and the packets' mean size in bytes."""

    pts: tuple[int, ...]
    decode_times: tuple[int, ...] | None
    first: av.VideoFrame
    timecode: str | None
    named: int
    frame_bytes: float


def _scan_video(container: av.container.InputContainer, stream: av.video.stream.VideoStream, decoder: av.CodecContext,
                path: Path, files: int | None) -> _Scan:
    """IN's video as its packets give it (`_Scan`). An image sequence of `files` files is read up
    to its first frame: its pts count its files.

    MPEG-1/2 video's is read from the packets up to the first keyframe's, whose header the first
    group's is; it names the group's first picture shown, the earliest of the group's packets,
    which follows any packets of a group cut off before it (a recording started mid-group).
    Other codecs' decoders give the first picture's (a DPX header's) as its tag."""
    pts: list[int] = []
    dts: list[int | None] = []
    first: av.VideoFrame | None = None
    timecode: str | None = None
    group: list[int] = []  # pts of the first group of pictures' packets
    sizes = 0
    settled = stream.codec_context.name not in MPEG_1_2_VIDEO
    try:
        for packet in demuxed(container, stream):
            if not settled:
                header = gop_timecode(bytes(packet))
                settled = header is not None and timecode is not None or header is None and packet.is_keyframe
                timecode = timecode or header
                if timecode is not None and not settled and packet.pts is not None:
                    group.append(packet.pts)
            if first is None:
                for frame in decoder.decode(packet):
                    first = frame
                    break
            if packet.size and packet.pts is not None:
                pts.append(packet.pts)
                dts.append(packet.dts)
                sizes += packet.size
            if files is not None and first is not None:
                pts = list(range(files))
                break
    except av.error.FFmpegError as error:
        raise InputError(
            f"input {str(path)!r} cannot be read to the end ({reason(error)}); it may be truncated"
        ) from None
    if not pts or first is None:
        raise InputError(f"input {str(path)!r} has no decodable video frames; give a complete video file")
    # A decoder that reorders frames, fed packets whose times only ever grow: the times are
    # the packets' own, in decode order, and not those of the frames the decoder puts out.
    in_decode_order = (stream.codec_context.has_b_frames and None not in dts
                       and all(a < b for a, b in zip(pts, pts[1:])))
    pts.sort()
    if stream.codec_context.name not in MPEG_1_2_VIDEO:
        timecode = _picture_timecode(first)
    named = bisect.bisect_left(pts, min(group)) if group and not in_decode_order else 0
    return _Scan(tuple(pts), tuple(dts) if in_decode_order else None, first, timecode, named,
                 sizes / (len(pts) if files is None else 1))


def _picture_timecode(frame: av.VideoFrame) -> str | None:
    """The timecode a decoder gives a picture as its tag (a DPX header's); None where it gives
    none, or where the picture's tags are not UTF-8 (a TIFF's may be anything)."""
    try:
        timecode = frame.metadata.get("timecode", "")
    except UnicodeDecodeError:
        return None
    return timecode if TIMECODE.match(timecode) else None


def _first_decoded(pts: tuple[int, ...], decode_times: tuple[int, ...] | None, first: av.VideoFrame) -> int:
    """`VideoInfo.first_decoded`: how many frames' pts come before the first decoded frame's.
    Packets timed in decode order say nothing of which frames are shown first: 0 there."""
    if decode_times is not None or first.pts is None:
        return 0
    at = bisect.bisect_left(pts, first.pts)
    return at if at < len(pts) and pts[at] == first.pts else 0


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of a pixel format (8 when FFmpeg does not know the format)."""
    try:
        return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)
    except ValueError:
        return 8


def clockwise_rotation(frame: av.VideoFrame) -> int:
    """Clockwise degrees (0/90/180/270) that turn a decoded frame upright, from its display
    matrix (FFmpeg reports the counter-clockwise angle of the matrix)."""
    return int(round(-frame.rotation / 90.0)) % 4 * 90


def stream_info(stream: av.stream.Stream, video: VideoInfo | None = None) -> StreamInfo:
    """`stream` as `vidface probe` lists it; the video vidface decodes at `video`'s frame rate."""
    ctx = stream.codec_context
    if stream.type == "video" and ctx is not None and stream.disposition & av.stream.Disposition.attached_pic:
        detail = f"{ctx.width}x{ctx.height} {ctx.pix_fmt} cover art"  # one picture: no frame rate
    elif stream.type == "video" and ctx is not None:
        rate = video.average_rate if video and stream.index == video.index else stream.average_rate or stream.guessed_rate
        detail = f"{ctx.width}x{ctx.height} {ctx.pix_fmt}" + (f" {float(rate):.3f} fps" if rate else "")
    elif stream.type == "audio" and ctx is not None:
        layout = ctx.layout.name if ctx.layout else f"{ctx.channels} ch"
        detail = f"{ctx.sample_rate} Hz {layout}"
    else:
        detail = ""
    return StreamInfo(
        index=stream.index,
        type=stream.type,
        codec=codec_name(stream),
        language=stream.metadata.get("language") or None,
        title=stream.metadata.get("title") or stream.metadata.get("name") or None,  # MP4's track name
        detail=detail,
        metadata=dict(stream.metadata),
    )
