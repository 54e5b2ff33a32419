"""OUT's video encoder and container: the encoder by name, the pixel format it encodes in, the
options a repeatable output, a container that keeps frame times only in presentation order and
an interlaced source need, the container that OUT's extension names, and what a container does
to frame times."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import av

from vidface.errors import OutputError
from vidface.io.options import EncodeOptions
from vidface.io.probe import JPEG_RANGE_FORMATS, MPEG_1_2_VIDEO, HdrMetadata, VideoInfo, bit_depth, field_shown_first

log = logging.getLogger(__name__)

# Encoders that vidface asks to code an interlaced source as fields (`interlaced_options`), in
# the order each picture's flags give (`frames.FieldMarker`); DV's chooses per block. Others code
# its frames as progressive pictures, each holding both fields (lossless ones lose nothing so).
INTERLACED_ENCODERS = {"libx264", "mpeg2video", "mpeg4", "prores_ks", "prores", "prores_aw", "dvvideo"}


def codes_fields(codec: str, options: Mapping[str, str]) -> bool:
    """Whether `codec` with `options` codes an interlaced source as fields: INTERLACED_ENCODERS,
    and the dnxhd encoder where it codes DNxHD (DNxHR has no interlaced profile)."""
    return codec in INTERLACED_ENCODERS or (codec == "dnxhd" and options.get("profile") == "dnxhd")


def video_encoder(name: str) -> av.codec.Codec:
    """The FFmpeg video encoder called `name`, or OutputError naming how to list them."""
    try:
        codec = av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        codec = None
    if codec is None or codec.type != "video":
        raise OutputError(f"unknown video encoder {name!r}; `vidface env` lists the available ones")
    return codec


def choose_pix_fmt(options: EncodeOptions, video: VideoInfo) -> str:
    """The pixel format to encode in: the requested one, else the source's if the encoder
    takes it (a format with alpha, if it also opens in it: x265 lists ones it refuses), else
    the closest format the encoder opens in: one that keeps an alpha channel
    first, then one that keeps colour (not grey, not a palette), then the same bit depth, then
    the same kind of colours (RGB or YUV: no conversion between them, which rounds), then the
    same chroma subsampling, else one that keeps every chroma sample (DV's 4:1:1 becomes 4:2:2,
    not 4:2:0, whose halved rows would mix an interlaced picture's two fields), else the one
    that keeps most.

    Odd sizes cannot be 4:2:0/4:2:2-subsampled by x264/x265, so those get 4:4:4 at the same
    bit depth rather than a changed picture size.
    """
    choice, lost = closest_pix_fmt(options, video)
    if lost:  # a format that only stores the same samples otherwise (rgb24 as bgr0) is no loss to warn of
        log.log(logging.WARNING if any(_format_distance(choice, lost)[:-1]) else logging.INFO,
                "encoder %s cannot keep pixel format %s; encoding as %s%s", options.codec, lost, choice,
                " and dropping its alpha channel" if _has_alpha(av.VideoFormat(lost)) and not _has_alpha(
                    av.VideoFormat(choice)) else "")
    return choice


def closest_pix_fmt(options: EncodeOptions, video: VideoInfo) -> tuple[str, str | None]:
    """`choose_pix_fmt`'s choice, and the format it could not keep (None where it kept IN's or
    took the requested one)."""
    codec = video_encoder(options.codec)
    supported = [f.name for f in codec.video_formats or ()]
    if options.pix_fmt is not None:
        if supported and options.pix_fmt not in supported:
            raise OutputError(
                f"encoder {options.codec} cannot encode pixel format {options.pix_fmt!r}; "
                f"choose one of: {', '.join(supported)}"
            )
        return options.pix_fmt, None
    wanted = full_range_format(options.codec, video.pix_fmt)
    odd = video.width % 2 or video.height % 2
    if odd and options.codec in ("libx264", "libx265", "h264_nvenc", "hevc_nvenc"):
        wanted = "yuv444p10le" if video.bit_depth > 8 else "yuv444p"
    if not supported or (wanted in supported and (
            not _has_alpha(av.VideoFormat(wanted)) or encoder_opens(options, wanted, video))):
        return wanted, None

    candidates = [full_range_format(options.codec, name)
                  for name in sorted(supported, key=lambda name: _format_distance(name, wanted))]
    return next((name for name in candidates if encoder_opens(options, name, video)), candidates[0]), wanted


def _format_distance(name: str, wanted: str) -> tuple[int, ...]:
    """How far pixel format `name` is from `wanted`, most important first (`choose_pix_fmt`):
    alpha lost, colour lost, bit depth (less worst), RGB for YUV or the other way, chroma samples
    (kept, added, lost), alpha added. All 0 but the last: the same samples, stored otherwise."""
    fmt, src = av.VideoFormat(name), av.VideoFormat(wanted)
    alpha_lost, alpha_added = _has_alpha(src) and not _has_alpha(fmt), _has_alpha(fmt) and not _has_alpha(src)
    colour_lost = _colours(src) > _colours(fmt)
    depth = bit_depth(name) - bit_depth(wanted)
    (width, height), (source_width, source_height) = ((f.chroma_width(64), f.chroma_height(64)) for f in (fmt, src))
    if (width, height) == (source_width, source_height):
        chroma = (0, 0)
    elif width >= source_width and height >= source_height:  # keeps every chroma sample: the fewest added
        chroma = (1, width * height)
    else:  # loses some: the most kept
        chroma = (2, -width * height)
    kind_changed = fmt.is_rgb != src.is_rgb
    return (int(alpha_lost), int(colour_lost), abs(depth) + (100 if depth < 0 else 0), int(kind_changed), *chroma,
            int(alpha_added))


def encoder_opens(options: EncodeOptions, pix_fmt: str, video: VideoInfo) -> bool:
    """Whether the encoder opens in `pix_fmt` at `video`'s size, with the settings' options and
    the profile the format needs: some list formats they refuse (x265's and VP9's with alpha)."""
    context = av.CodecContext.create(options.codec, "w")
    context.width, context.height, context.pix_fmt = video.width, video.height, pix_fmt
    context.time_base = Fraction(1, 25)
    context.options = profile_options(options.codec, pix_fmt, options.codec_options())
    try:
        context.open()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _has_alpha(fmt: av.VideoFormat) -> bool:
    return any(component.is_alpha for component in fmt.components)


def _colours(fmt: av.VideoFormat) -> int:
    """How many colour components a format stores: 3, 1 for grey or a palette's index."""
    return 1 if fmt.has_palette else sum(not component.is_alpha for component in fmt.components)


def full_range_format(codec: str, pix_fmt: str) -> str:
    """`pix_fmt`, in its full-range form where `codec` codes YUV only in full range: FFmpeg's
    JPEG encoder, as JPEG defines it, refuses limited-range YUV (the usual video levels)."""
    return JPEG_RANGE_FORMATS.get(pix_fmt, pix_fmt) if codec == "mjpeg" else pix_fmt


RANGE_IN_BITSTREAM_ENCODERS = {"libx264", "libx264rgb", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1",
                               "h264_nvenc", "hevc_nvenc", "av1_nvenc", "dnxhd", "mjpeg"}
"""Encoders whose bitstream says whether its YUV is full or limited range, in any container."""
LIMITED_RANGE_ENCODERS = {"prores", "prores_ks", "prores_aw", "mpeg1video", "mpeg2video"}
"""Encoders of codecs that are limited range by definition: their decoders say so whatever the
container says."""
RANGE_TAGGING_FORMATS = {"matroska", "webm"}
"""Containers whose stream header says the video's range, for the codecs of neither set."""


def output_color_range(codec: str, pix_fmt: str, container_format: str,
                       source_range: av.video.reformatter.ColorRange) -> av.video.reformatter.ColorRange:
    """The range OUT's YUV is coded in: the source's, except where a player would not read a
    full-range source as full range (limited range there), and full range for the full-range
    ("JPEG") formats.

    Why: decoders take video whose range no one states as limited range, and an MPEG-2 or ProRes
    decoder takes it as limited whatever is stated, so full-range samples written there as they
    are came back with their dark greys darker and their light greys lighter."""
    ranges = av.video.reformatter.ColorRange
    if pix_fmt in JPEG_RANGE_FORMATS.values():
        return ranges.JPEG
    if source_range != ranges.JPEG or av.VideoFormat(pix_fmt).is_rgb:
        return source_range
    if codec in RANGE_IN_BITSTREAM_ENCODERS or (
            container_format in RANGE_TAGGING_FORMATS and codec not in LIMITED_RANGE_ENCODERS):
        return source_range
    return ranges.MPEG


def video_codec_options(options: EncodeOptions, video: VideoInfo, container_format: str,
                        pix_fmt: str) -> dict[str, str]:
    """Every option the video encoder is opened with: the settings' own, then what the pixel
    format (`profile_options`), an HDR source (`hdr_options`), a repeatable output
    (`repeatable_options`), the container (`in_order_options`) and an interlaced source
    (`interlaced_options`) need."""
    codec_options = profile_options(options.codec, pix_fmt, options.codec_options())
    codec_options = hdr_options(options.codec, video.hdr, codec_options)
    codec_options = repeatable_options(options.codec, codec_options)
    codec_options = in_order_options(options.codec, container_format, codec_options)
    if video.interlaced:
        codec_options = interlaced_options(options.codec, video.field_order, codec_options)
    return codec_options


DNXHR_PROFILES = {"yuv422p": "dnxhr_hq", "yuv422p10le": "dnxhr_hqx", "yuv444p10le": "dnxhr_444",
                  "gbrp10le": "dnxhr_444"}
"""The DNxHR profile for each pixel format the dnxhd encoder takes: high quality at its depth."""


def profile_options(codec: str, pix_fmt: str, options: dict[str, str]) -> dict[str, str]:
    """`options`, plus the profile that lets the dnxhd encoder code a picture of any size.

    Why: DNxHD proper codes only 1920x1080 and 1280x720, each at a few set bitrates, and the
    encoder refuses anything else; its successor DNxHR takes any size from 256x120 up. A profile
    or bitrate of the user's own wins (DNxHD at its bitrate)."""
    if codec != "dnxhd" or "profile" in options or "b" in options or pix_fmt not in DNXHR_PROFILES:
        return options
    return {"profile": DNXHR_PROFILES[pix_fmt], **options}


HDR_PARAMS = {"libx264": ("x264-params", "mastering-display", "cll"),
              "libx265": ("x265-params", "master-display", "max-cll"),
              "libsvtav1": ("svtav1-params", "mastering-display", "content-light")}
"""The encoders that write HDR10 metadata into their bitstream: the option that takes their own
parameters, and their names for the mastering display and the content's light levels."""


def hdr_options(codec: str, hdr: HdrMetadata | None, options: dict[str, str]) -> dict[str, str]:
    """`options`, plus the source's HDR10 metadata (`hdr`) for the encoders of HDR_PARAMS.

    Why: an HDR display maps the picture to its own range by this metadata; without it, OUT
    would be shown by the display's guesses rather than as IN is. The user's own parameters win
    (kept after ours)."""
    if hdr is None or codec not in HDR_PARAMS:
        return options
    key, display, light_levels = HDR_PARAMS[codec]
    params = []
    if hdr.primaries and hdr.white_point and hdr.luminance:
        def number(value: Fraction, steps_per_unit: int) -> str:
            # SVT-AV1 takes chromaticities and cd/m² as they are; x264 and x265 count steps of
            # 0.00002 (chromaticity) and 0.0001 cd/m²
            return f"{float(value):.5f}" if codec == "libsvtav1" else str(round(value * steps_per_unit))

        def point(xy: tuple[Fraction, Fraction]) -> str:
            return f"({number(xy[0], 50000)},{number(xy[1], 50000)})"

        (red, green, blue), (low, high) = hdr.primaries, hdr.luminance
        params.append(f"{display}=G{point(green)}B{point(blue)}R{point(red)}WP{point(hdr.white_point)}"
                      f"L({number(high, 10000)},{number(low, 10000)})")
    if hdr.light_levels:
        params.append(f"{light_levels}={hdr.light_levels[0]},{hdr.light_levels[1]}")
    theirs = options.get(key)
    return {**options, key: ":".join(params + ([theirs] if theirs else []))}


SAMPLE_ASPECT_CODECS = {"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "mjpeg", "dvvideo"}
"""Codecs (canonical names) whose bitstream holds a picture's sample aspect ratio, where every
container's reader finds it (DV's as 4:3 or 16:9, the two its pictures have)."""
SAMPLE_ASPECT_FORMATS = {"mov", "mp4", "ipod", "ismv", "3gp", "3g2", "mxf", "mxf_d10", "mxf_opatom"}
"""Containers whose muxer takes any encoder's sample aspect ratio (QuickTime's pasp box, MXF's
descriptor), DNxHD in MXF excepted. Matroska's and AVI's read the stream's own, which PyAV does
not set: there an anamorphic picture's aspect is kept only by the encoders above (measured on
this FFmpeg, 8.1, with `vidface restore --model none` of a 64:45 x264 source into each pair)."""


def keeps_sample_aspect(codec: str, container_format: str) -> bool:
    """Whether OUT (`codec` in `container_format`) keeps a picture's sample aspect ratio."""
    if video_encoder(codec).canonical_name in SAMPLE_ASPECT_CODECS:
        return True
    return container_format in SAMPLE_ASPECT_FORMATS and not (container_format.startswith("mxf") and codec == "dnxhd")


IN_ORDER_FORMATS = {"avi": "AVI", "asf": "ASF/WMV", "asf_stream": "ASF/WMV", "mxf": "MXF", "mxf_d10": "MXF",
                    "mxf_opatom": "MXF"}
"""Containers (FFmpeg muxer names) whose files keep every frame's timestamp only when the frames
come in presentation order: AVI and ASF store one time per packet, in decode order, and FFmpeg's
MXF muxer writes no reordering, so frames an encoder reorders (B-frames) come out at other
times."""


PROGRAM_STREAM_FORMATS = {"mpeg", "vob", "svcd", "vcd", "dvd"}
"""MPEG program stream muxers (.mpg .mpeg .vob). A pack carries the time of the first frame that
begins in it only, and readers work out the others from the MPEG-1/2 video's own frame rate and
order; in H.264 they find neither, and frames came back without times."""


def set_video_stream(stream: av.video.stream.VideoStream, video: VideoInfo, pix_fmt: str) -> None:
    """Give OUT's video stream, just added, IN's picture size, `pix_fmt` and the time bases that
    keep every frame's time in its container."""
    stream.width, stream.height, stream.pix_fmt = video.width, video.height, pix_fmt
    stream.time_base = video.time_base
    stream.codec_context.time_base = video.time_base
    if video.average_rate and not video.variable_frame_rate:
        name = stream.container.format.name
        if name in ("avi", "yuv4mpegpipe"):
            # AVI counts frames: in any finer time base its muxer writes empty frames for the
            # ticks between, and the last frame came back at its predecessor's time. Y4M
            # writes the time base as its frame rate.
            stream.time_base = 1 / video.average_rate
        if name in ("asf", "asf_stream") or stream.codec_context.codec.canonical_name in MPEG_1_2_VIDEO:
            # ASF's muxer takes a packet's duration from the encoder's time base: in a finer
            # one it wrote none, and the last frame came back at its predecessor's time.
            # MPEG-1/2 video codes its frame rate as the time base, one of its few rates.
            stream.codec_context.time_base = 1 / video.average_rate


def frame_times_kept(codec: str, container_format: str) -> bool:
    """Whether OUT's container keeps the frame times of `codec`'s video (not H.264 in an MPEG
    program stream)."""
    return container_format not in PROGRAM_STREAM_FORMATS or video_encoder(codec).canonical_name in MPEG_1_2_VIDEO


def check_frame_times_kept(codec: str, container_format: str) -> None:
    """OutputError where OUT's container would lose frame times of `codec`'s video."""
    if not frame_times_kept(codec, container_format):
        raise OutputError(f"MPEG program streams ({container_format}) keep frame times only for MPEG-1/2 video: "
                          "write a .ts or .mkv, or pass --codec mpeg2video")


def in_order_options(codec: str, container_format: str, options: dict[str, str]) -> dict[str, str]:
    """`options`, plus no B-frames for the encoders that make them by default where the container
    is one of IN_ORDER_FORMATS. A `bf` of the user's own wins (their x265-params come after ours)."""
    if container_format not in IN_ORDER_FORMATS:
        return options
    if codec in X264_ENCODERS or codec.endswith("_nvenc"):
        return {"bf": "0", **options}
    if codec == "libx265":
        params = options.get("x265-params")
        return {**options, "x265-params": "bframes=0" + (f":{params}" if params else "")}
    return options


X264_ENCODERS = {"libx264", "libx264rgb"}
X264_REPEATABLE_ASM = "AVX2"
"""The SIMD level x264 is limited to on CPUs with AVX-512 (`repeatable_options`)."""


def repeatable_options(codec: str, options: dict[str, str]) -> dict[str, str]:
    """`options`, plus what makes `codec` give the same bits for the same frames in every run.

    Why: x264's AVX-512 code reads memory it never wrote (seen in its macroblock-tree pass:
    with x264-params no-mbtree=1 the AVX-512 build is repeatable), so on CPUs with AVX-512 its
    output depended on what the allocator happened to hand out: the same input gave other bits
    under another MALLOC_PERTURB_, and a resumed run could not match an uninterrupted one
    (`tools/repro_uninit_encode.py` shows it). x264's other SIMD levels are bit-exact with its C
    code, so on such CPUs x264 is limited to AVX2, which gives the bits that machines without
    AVX-512 give. Options the user gave win: their x264-params are kept after ours (an `asm=` of
    theirs overrides).
    """
    if codec not in X264_ENCODERS or not cpu_has_avx512():
        return options
    params = options.get("x264-params")
    return {**options, "x264-params": f"asm={X264_REPEATABLE_ASM}" + (f":{params}" if params else "")}


def cpu_has_avx512() -> bool:
    """Whether this CPU runs AVX-512."""
    from vidface.machine import cpu_has

    return cpu_has("AVX512F")


def interlaced_options(codec: str, field_order: str, options: dict[str, str]) -> dict[str, str]:
    """`options` plus what makes `codec` (where it `codes_fields`) code an interlaced
    source's frames as fields, shown in `field_order` (one of probe.FIELD_ORDERS): the
    ildct/ilme flags, and for x264 the field order in its params. Options the user gave win;
    their x264-params are kept after ours.

    x264 codes interlaced video in one thread: with several, about one run in ten gives other
    bits for the same frames, and a resumed run must encode its segments exactly as an
    uninterrupted run would."""
    if not codes_fields(codec, options):
        return options
    options = {"flags": "+ildct+ilme", **options}
    if codec != "libx264":
        return options
    params = options.get("x264-params")
    ours = f"{field_shown_first(field_order)}=1:threads=1"
    return {**options, "x264-params": ours + (f":{params}" if params else "")}


def output_format(path: Path) -> str:
    """FFmpeg's muxer for OUT's extension, or OutputError listing common ones."""
    extension = path.suffix.lower().lstrip(".")
    names = []
    for name in sorted(av.formats_available):
        try:
            fmt = av.ContainerFormat(name, "w")
        except (ValueError, av.error.FFmpegError):
            continue
        if extension and extension in fmt.extensions:
            names.append(name)
    if not names:
        raise OutputError(
            f"cannot tell the container format from output name {path.name!r}; "
            "end it in .mp4, .mkv, .mov or .webm"
        )
    preferred = {"mkv": "matroska", "mp4": "mp4", "mov": "mov", "webm": "webm", "m4v": "ipod"}  # not raw m4v
    chosen = preferred.get(extension) if preferred.get(extension) in names else (
        extension if extension in names else names[0])
    if chosen == "image2":  # a still or an image sequence's files, each needing resume and provenance of its own
        raise OutputError(f"output {path.name!r} names an image; vidface writes video files: end it in .mkv "
                          "(FFV1 keeps an image sequence's pictures sample for sample) or .mov")
    return chosen
