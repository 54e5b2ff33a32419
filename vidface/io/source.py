"""Opening IN: a video file, or an image sequence's files (`vidface.io.sequence`), as one
FFmpeg input with a video stream this build decodes; every way it can be unusable becomes an
InputError of one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import InputError
from vidface.io.sequence import image_sequence, sequence_rate

UNKNOWN_CODEC = "unknown"
"""`StreamInfo.codec` of a stream whose codec FFmpeg does not know: readable, never writable."""


TAG_ERRORS = "surrogateescape"
"""How tags that are not UTF-8 are read and written (PyAV's metadata_errors): their bytes pass
through to OUT unchanged, where strict decoding refused the whole file."""


LATE_STREAM_FORMATS = {"flv", "live_flv"}
"""Demuxers whose files list no streams up front: FFmpeg finds a stream at its first packet, and
looks 5 s into IN as it opens it, so a sound starting later (a recording's, a damaged header's)
was never seen nor copied. Their files are opened looking STREAM_SEARCH_SECONDS in."""

STREAM_SEARCH_SECONDS = 60
_LOOKING_FURTHER = {"analyzeduration": str(STREAM_SEARCH_SECONDS * 1_000_000), "probesize": str(2**31 - 1)}


def open_input(path: str | os.PathLike[str], frame_rate: Fraction | None = None) -> av.container.InputContainer:
    """Open IN for reading; raise InputError with one line when it is no usable video. An image
    sequence's pattern (`vidface.io.sequence`) opens its files as one video, read at `frame_rate`
    (None: `sequence_rate`'s); a video keeps its own rate."""
    path = Path(path)
    sequence = image_sequence(path)
    if sequence is not None:
        return _opened(path, str(sequence.pattern), undecodable="files FFmpeg cannot decode as pictures (an image "
                       "sequence's are DPX, TIFF, PNG or other image files; give a video as one file)",
                       format="image2", options=sequence.demuxer_options(sequence_rate(sequence, frame_rate)))
    if not path.exists():
        raise InputError(f"input {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise InputError(f"input {str(path)!r} is not a file; give a video file")
    if path.stat().st_size == 0:
        raise InputError(f"input {str(path)!r} is empty (0 bytes); give a complete video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"input {str(path)!r} is not readable; check its permissions")
    container = _opened(path, str(path))
    if container.format.name in LATE_STREAM_FORMATS:
        container.close()
        container = _opened(path, str(path), options=_LOOKING_FURTHER)
    return container


def _opened(path: Path, name: str,
            undecodable: str = "a video codec this FFmpeg build cannot decode; convert it first or see `vidface env`",
            **open_options) -> av.container.InputContainer:
    """IN (`path`, opened by FFmpeg as `name` with `open_options`), checked for a video stream
    this build decodes (InputError: IN has `undecodable`)."""
    try:
        container = av.open(name, mode="r", metadata_errors=TAG_ERRORS, **open_options)
    except av.error.FFmpegError as error:
        raise InputError(
            f"input {str(path)!r} is not a readable video ({reason(error)}); "
            "it may be truncated or not a video file"
        ) from None
    try:
        stream = first_video_stream(container, path)
        if stream.codec_context is None or stream.codec_context.codec is None:
            raise InputError(f"input {str(path)!r} has {undecodable}")
    except BaseException:
        container.close()
        raise
    return container


def first_video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not videos:
        kinds = ", ".join(f"{s.type} {codec_name(s)}" for s in container.streams) or "none"
        raise InputError(f"input {str(path)!r} has no video stream (streams: {kinds}); give a video file")
    return videos[0]


ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}
"""libvpx's decoders, for VP8/VP9 video with an alpha channel: WebM and Matroska store the alpha
beside each picture (the stream's alpha_mode tag), and FFmpeg's own decoders leave it out."""


def video_decoder(stream: av.video.stream.VideoStream) -> av.CodecContext:
    """The decoder of IN's video stream: the stream's own, or libvpx's where the stream has an
    alpha channel only that decoder gives (`ALPHA_DECODERS`)."""
    name = ALPHA_DECODERS.get(stream.codec_context.name)
    if name is None or stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE")) != "1":
        return stream.codec_context
    try:
        decoder = av.CodecContext.create(name, "r")
    except (av.error.FFmpegError, ValueError):  # a build without libvpx: the picture without its alpha
        return stream.codec_context
    decoder.width, decoder.height = stream.codec_context.width, stream.codec_context.height
    return decoder


def codec_name(stream: av.stream.Stream) -> str:
    ctx = stream.codec_context
    if ctx is not None and ctx.codec is not None:
        return ctx.codec.canonical_name
    return UNKNOWN_CODEC


def demuxed(container: av.container.InputContainer, *streams: av.stream.Stream) -> Iterator[av.Packet]:
    """`container.demux(*streams)`: the streams' packets in file order, then an empty one for each
    that flushes its decoder. Where a stream appears mid-file (an FLV whose sound starts late),
    PyAV's last step reads past its list of the streams IN was opened with and fails with
    IndexError after those empty packets: there the packets end."""
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, IndexError):
            return
        yield packet


def reason(error: av.error.FFmpegError) -> str:
    return (error.strerror or str(error)).strip().rstrip(".")
