"""Small test videos made with PyAV, for every area's tests.

`write_video` writes a video with any mix of codec, pixel format, size, variable frame rate,
rotation, B-frames, audio tracks, subtitles and metadata; `read_video` reads back what a test
needs to compare (frame pts, pixel format, rotation, every non-video packet's bytes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidface.io.encoder_setup import repeatable_options
from vidface.io.frames import FieldMarker
from vidface.io.pixels import plane_rows, row_bytes
from vidface.io.probe import FIELD_ORDERS
from vidface.io.source import open_input

ImageSource = Callable[[int], np.ndarray] | np.ndarray


@dataclass(frozen=True)
class AudioTrack:
    """An audio stream to write: codec, sample rate, channels, language tag."""

    codec: str = "aac"
    rate: int = 48000
    channels: int = 2
    language: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Subtitles:
    """A text subtitle stream (SubRip in Matroska, mov_text in MP4): one cue per second."""

    language: str | None = "eng"
    cues: int = 2


def moving_pattern(width: int, height: int) -> Callable[[int], np.ndarray]:
    """H×W×3 uint8 RGB frames: a gradient plus a bright square that moves one step per frame."""

    def image(index: int) -> np.ndarray:
        y, x = np.mgrid[0:height, 0:width]
        rgb = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                        np.full_like(x, (index * 37) % 256)], axis=-1).astype(np.uint8)
        side = max(4, min(width, height) // 5)
        left = (index * 3) % max(1, width - side)
        rgb[height // 3: height // 3 + side, left: left + side] = 255
        return rgb

    return image


def write_video(
    path: str | Path,
    *,
    frames: int = 24,
    size: tuple[int, int] = (96, 64),
    fps: int | Fraction = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    bframes: int | None = None,
    vfr: bool = False,
    rotation: int = 0,
    images: ImageSource | None = None,
    audio: Sequence[AudioTrack] | AudioTrack | str | None = None,
    audio_seconds: float | None = None,
    subtitles: Subtitles | None = None,
    metadata: dict[str, str] | None = None,
    video_metadata: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
    attachments: dict[str, bytes] | None = None,
    fields: str | None = None,
    chapters: Sequence[tuple[float, float, str]] = (),
    sample_aspect: Fraction | None = None,
    bitexact: bool = False,
) -> Path:
    """Write a test video and return its path; the container follows the file's extension.

    size: (width, height) stored. images: a function of the frame index or an N×H×W×3 uint8
    RGB array (default: `moving_pattern`). vfr: frames are 1, 2, 6, 3 ticks of a 1/(3*fps)
    time base apart in turn, so the mean rate stays fps while no two neighbours agree.
    rotation: clockwise degrees a player turns the picture (stored in the display matrix).
    audio: a codec name, one AudioTrack or several; audio_seconds defaults to the video's length.
    attachments: file name → bytes, attached to a Matroska file (fonts, cover art).
    fields: "tff" or "bff" marks every frame interlaced with that field order (FFmpeg's setfield
    filter), for encoders asked to code fields (codec_options flags +ildct+ilme).
    sample_aspect: the width a stored pixel is shown at over its height (64:45 for 16:9 PAL SD).
    chapters: (start, end, title), in seconds. bitexact: the muxer writes no random IDs or
    versions (FFmpeg's bitexact mode), so the same arguments give the same bytes in every run.
    """
    path = Path(path)
    width, height = size
    source = images if images is not None else moving_pattern(width, height)
    if isinstance(audio, str):
        audio = [AudioTrack(codec=audio)]
    elif isinstance(audio, AudioTrack):
        audio = [audio]
    tracks = list(audio or [])
    time_base = 1 / Fraction(3 * fps) if vfr else 1 / Fraction(fps)
    steps = [1, 2, 6, 3] if vfr else [1]
    video_pts = np.concatenate([[0], np.cumsum([steps[i % len(steps)] for i in range(frames - 1)])]).astype(int)
    seconds = float((int(video_pts[-1]) + steps[0]) * time_base) if frames else 0.0
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"} if bitexact else None) as container:
        container.metadata.update(metadata or {})
        options = {"x265-params": "log-level=error"} if codec == "libx265" else {}
        if bframes is not None:
            options["bf"] = str(bframes)
        options.update(codec_options or {})
        # as vidface encodes: the same test video in every run, whatever the CPU and allocator
        video = container.add_stream(codec, rate=fps, options=repeatable_options(codec, options))
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.metadata.update(video_metadata or {})
        if fields:
            video.codec_context.field_order = FIELD_ORDERS.index("tt" if fields == "tff" else "bb")
        if rotation:
            video.set_display_rotation(-rotation)
        if sample_aspect:
            video.codec_context.sample_aspect_ratio = sample_aspect
        audio_streams = []
        for track in tracks:
            stream = container.add_stream(track.codec, rate=track.rate)
            stream.layout = "stereo" if track.channels == 2 else "mono"
            if track.language:
                stream.metadata["language"] = track.language
            if track.title:
                stream.metadata["title"] = track.title
            audio_streams.append((track, stream))
        for name, data in (attachments or {}).items():
            container.add_attachment(name, "application/octet-stream", data)
        subtitle_stream = None
        if subtitles is not None:
            codec_name = "mov_text" if path.suffix.lower() in (".mp4", ".mov", ".m4v") else "subrip"
            subtitle_stream = container.add_mux_stream(codec_name)
            subtitle_stream.time_base = Fraction(1, 1000)
            if subtitles.language:
                subtitle_stream.metadata["language"] = subtitles.language
        container.set_chapters([{"id": number, "start": round(start * 1000), "end": round(end * 1000),
                                 "time_base": Fraction(1, 1000), "metadata": {"title": title}}
                                for number, (start, end, title) in enumerate(chapters, 1)])
        mark = FieldMarker(fields) if fields else None
        for index in range(frames):
            rgb = source(index) if callable(source) else source[index]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format=pix_fmt)
            frame.pts = int(video_pts[index])
            frame.time_base = time_base
            container.mux(video.encode(mark(frame) if mark else frame))
        container.mux(video.encode())
        for track, stream in audio_streams:
            _write_audio(container, stream, track, audio_seconds if audio_seconds is not None else seconds)
        if subtitle_stream is not None:
            for cue in range(subtitles.cues):
                text = f"cue {cue}".encode()
                if codec_name == "mov_text":
                    text = len(text).to_bytes(2, "big") + text
                packet = av.Packet(text)
                packet.stream = subtitle_stream
                packet.pts = packet.dts = cue * 1000
                packet.duration = 800
                packet.time_base = Fraction(1, 1000)
                container.mux(packet)
    return path


def _one_filter(name: str, args: str | None = None, **source):
    """A configured FFmpeg filter graph: frames pushed in (add_buffer's `source` arguments) go
    through the filter `name` (`args`) to a sink to pull them from."""
    import av.filter

    graph = av.filter.Graph()
    buffer, middle, sink = graph.add_buffer(**source), graph.add(name, args), graph.add("buffersink")
    buffer.link_to(middle)
    middle.link_to(sink)
    graph.configure()
    return graph


def damaged_video(path: Path) -> Path:
    """An MP4 that decodes until its middle and then fails (FFmpeg refuses a broken packet): 60
    frames (GOPs of 15, B-frames) with 400 random bytes written over the middle of the file."""
    path = write_video(path, frames=60, size=(160, 96), bframes=3, codec_options={"g": "15"})
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at:at + 400] = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def from_second_group(path: Path, cut: Path) -> Path:
    """Raw MPEG-2 video `path` from its second group of pictures on (its sequence header first),
    written to `cut`: an open group's leading B-frames then lack the group they were made from."""
    data = path.read_bytes()
    second_group = data.index(b"\x00\x00\x01\xb8", data.index(b"\x00\x00\x01\xb8") + 4)
    cut.write_bytes(data[data.rindex(b"\x00\x00\x01\xb3", 0, second_group):])
    return cut


def write_image_sequence(folder: Path, name: str, images: Sequence[np.ndarray], *, codec: str, pix_fmt: str,
                         first: int) -> list[Path]:
    """`images` (H×W×3 uint8 RGB) written as the image files `name` (FFmpeg's printf form, such
    as "scan.%07d.dpx") numbered from `first`, in `pix_fmt`; their paths."""
    height, width = images[0].shape[:2]
    pattern = str(folder).replace("%", "%%") + os.sep + name  # FFmpeg reads the whole path as printf's
    with av.open(pattern, "w", format="image2", options={"start_number": str(first)}) as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index, rgb in enumerate(images):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return [folder / (name % (first + index)) for index in range(len(images))]


def stored_samples(path: str | Path) -> list[bytes]:
    """Every frame's stored samples, plane by plane, without line padding (of an image sequence
    too, given its pattern: `vidface.io.source.open_input`)."""
    with open_input(path) as container:
        return [plane_rows(plane)[:, :used].tobytes() for frame in container.decode(video=0)
                for plane, used in zip(frame.planes, row_bytes(frame))]


def write_audio_only(path: str | Path, track: AudioTrack = AudioTrack(), seconds: float = 0.5,
                     time_reference: int | None = None) -> Path:
    """A file with one audio stream and no video (a sound file; for "no video stream" checks).
    time_reference: a Broadcast WAV's time of day at its first sample, in samples since midnight."""
    path = Path(path)
    bext = None if time_reference is None else {"write_bext": "1"}
    with av.open(str(path), mode="w", options=bext) as container:
        if time_reference is not None:
            container.metadata["time_reference"] = str(time_reference)
        stream = container.add_stream(track.codec, rate=track.rate)
        stream.layout = "stereo" if track.channels == 2 else "mono"
        _write_audio(container, stream, track, seconds)
    return path


def _write_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                 track: AudioTrack, seconds: float) -> None:
    samples = int(round(seconds * track.rate))
    chunk = 1024
    t = np.arange(samples) / track.rate
    wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    planar = np.tile(wave, (track.channels, 1))
    for start in range(0, samples, chunk):
        part = np.ascontiguousarray(planar[:, start:start + chunk])
        frame = av.AudioFrame.from_ndarray(part, format="fltp",
                                           layout="stereo" if track.channels == 2 else "mono")
        frame.sample_rate = track.rate
        frame.pts = start
        frame.time_base = Fraction(1, track.rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


@dataclass
class VideoSummary:
    """What tests compare between an input and an output."""

    frame_pts: list[Fraction]
    durations: list[Fraction | None]
    duration: Fraction | None
    pix_fmt: str
    size: tuple[int, int]
    rotation: int
    codec: str
    metadata: dict[str, str]
    stream_types: list[str]
    stream_codecs: list[str]
    stream_metadata: list[dict[str, str]]
    packets: dict[int, list[tuple[bytes, Fraction | None, Fraction | None]]] = field(repr=False)
    attachments: dict[str, bytes] = field(repr=False)
    images: list[np.ndarray] = field(repr=False)


def read_video(path: str | Path, *, images: bool = False) -> VideoSummary:
    """Decode the first video stream (presentation pts in seconds as Fractions, frame durations
    as decoded, the stream's own duration where the container stores one,
    pixel format, stored size, clockwise rotation) and collect every other stream's packets
    (bytes, pts and duration in seconds). images=True also keeps each frame as stored RGB."""
    frame_pts: list[Fraction] = []
    durations: list[Fraction | None] = []
    pictures: list[np.ndarray] = []
    packets: dict[int, list[tuple[bytes, Fraction | None, Fraction | None]]] = {}
    rotation = 0
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        tb = video.time_base
        for packet in container.demux():
            if packet.stream.index == video.index:
                for frame in packet.decode():
                    frame_pts.append(frame.pts * tb)
                    durations.append(frame.duration * tb if frame.duration else None)
                    rotation = int(round(-frame.rotation / 90.0)) % 4 * 90
                    if images:
                        pictures.append(frame.to_ndarray(format="rgb24"))
            elif packet.size:
                ptb = packet.stream.time_base
                packets.setdefault(packet.stream.index, []).append(
                    (bytes(packet), None if packet.pts is None else packet.pts * ptb,
                     packet.duration * ptb if packet.duration else None))
        return VideoSummary(
            frame_pts=frame_pts,
            durations=durations,
            duration=video.duration * tb if video.duration else None,
            pix_fmt=video.codec_context.pix_fmt,
            size=(video.codec_context.width, video.codec_context.height),
            rotation=rotation,
            codec=video.codec_context.codec.name,
            metadata=dict(container.metadata),
            stream_types=[s.type for s in container.streams],
            stream_codecs=[s.codec_context.codec.canonical_name if s.codec_context else "" for s in container.streams],
            stream_metadata=[dict(s.metadata) for s in container.streams],
            packets=packets,
            attachments={s.metadata.get("filename", ""): s.data for s in container.streams
                         if s.type == "attachment"},
            images=pictures,
        )


def field_orders(path: str | Path) -> str:
    """Each decoded frame's scan as FFmpeg's showinfo filter reports it, one letter per frame:
    T (interlaced, top field first), B (bottom field first) or P (progressive). PyAV has no
    per-frame field order of its own."""
    import re

    import av.logging

    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as container:
            stream = container.streams.video[0]
            graph = _one_filter("showinfo", template=stream)
            for frame in container.decode(stream):
                graph.push(frame)
                graph.pull()
    finally:
        av.logging.set_level(None)
    return "".join(match.group(1) for _, _, message in logs for match in [re.search(r" i:([TBP])", message)] if match)


def with_captions(source: str | Path, path: str | Path) -> Path:
    """`source` (H.264 in MPEG-TS, without B-frames) remuxed into MPEG-TS `path` with a closed-caption pair
    (CEA-608 in an A/53 SEI message, as broadcast H.264 carries it) added to every picture: frame
    n's pair is (0xa0 + n % 64, 0xc1)."""
    import re

    path = Path(path)
    with av.open(str(source)) as container, av.open(str(path), "w", format="mpegts") as output:
        stream = container.streams.video[0]
        out = output.add_stream_from_template(stream)
        for number, packet in enumerate(p for p in container.demux(stream) if p.size):
            data = bytes(packet)
            cc_data = bytes([0x41, 0xFF, 0xFC, 0xA0 + number % 64, 0xC1, 0xFF])  # one 608 pair, field 1
            payload = b"\xb5\x00\x31GA94\x03" + cc_data  # ITU-T T.35: USA, ATSC, "GA94", cc_data
            sei = b"\x00\x00\x00\x01\x06" + bytes([4, len(payload)]) + payload + b"\x80"
            first_slice = re.search(rb"\x00\x00\x00?\x01[\x01\x05\x21\x25\x41\x45\x61\x65]", data).start()
            captioned = av.Packet(data[:first_slice] + sei + data[first_slice:])
            captioned.pts, captioned.dts, captioned.time_base = packet.pts, packet.dts, packet.time_base
            captioned.is_keyframe = packet.is_keyframe
            captioned.stream = out
            output.mux(captioned)
    return path


def captions(path: str | Path) -> list[bytes | None]:
    """Each decoded frame's closed-caption data (A/53 cc_data triplets), None where it has none."""
    from av.sidedata.sidedata import Type

    with av.open(str(path)) as container:
        return [None if (data := frame.side_data.get(Type.A53_CC)) is None else bytes(data)
                for frame in container.decode(video=0)]


def subtitle_cues(path: str | Path) -> list[tuple[float, float, str]]:
    """The first subtitle stream's cues, decoded: (start, end) in seconds and the text of each."""
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        cues = []
        for packet in container.demux(stream):
            decoded = stream.codec_context.decode2(packet) if packet.size else None
            for cue in decoded or ():
                start = packet.pts * packet.time_base
                cues.append((float(start), float(start + packet.duration * packet.time_base),
                             cue.ass.decode().split(",", 8)[8]))
        return cues
