"""`--codec auto`, the default: the encoder a run's OUT gets, from IN's codec and OUT's
container. A master keeps its codec, and its profile where its encoder would lower it; a
container with a video codec of its own gets it; other video is H.264."""

from __future__ import annotations

import dataclasses
import logging

import av

from vidface.errors import OutputError
from vidface.io.copies import container_holds, header_written
from vidface.io.encoder_setup import (PROGRAM_STREAM_FORMATS, closest_pix_fmt, encoder_opens, frame_times_kept,
                                      set_video_stream, video_codec_options, video_encoder)
from vidface.io.options import AUTO_CODEC, EncodeOptions
from vidface.io.probe import VideoInfo

log = logging.getLogger(__name__)


MASTER_ENCODERS = {"ffv1": ("ffv1",), "prores": ("prores_ks",), "dnxhd": ("dnxhd",), "cfhd": ("cfhd",),
                   "jpeg2000": ("jpeg2000",), "rawvideo": ("rawvideo",), "v210": ("v210",), "v410": ("v410",),
                   "r210": ("r210",), "png": ("png", "ffv1"), "qtrle": ("qtrle",), "utvideo": ("utvideo",),
                   "huffyuv": ("huffyuv",), "ffvhuff": ("ffvhuff",), "magicyuv": ("magicyuv",), "dvvideo": ("dvvideo",),
                   **dict.fromkeys(("dpx", "tiff", "sgi", "targa", "bmp", "ppm", "pgm"), ("ffv1", "prores_ks"))}
"""IN's codecs (canonical names) that `--codec auto` keeps, and the encoders that keep them, the
first OUT's container holds: the lossless ones, the edit suites' intermediates (ProRes, DNxHD/HR,
CineForm) and tape's DV in their own codec; an image sequence's lossless pictures (a film scan's
DPX, a plate's TIFF, PNG where OUT's container holds no PNG) in FFV1, which codes each of their
formats as it is, else (in QuickTime) ProRes 4444. A master restored into H.264 would come back
poorer than it went in, or where its tools cannot read it."""

MASTER_PROFILES = {"prores_ks": {"XQ": "4444xq"}}
"""A master's profile that its encoder, left to choose, would lower, and the encoder's name for
it: prores_ks codes 4:4:4 as 4444, never 4444 XQ (it raises ProRes LT and Standard to HQ)."""


def _master_options(options: EncodeOptions, video: VideoInfo) -> tuple[tuple[str, str], ...]:
    """The options that keep a master's own profile where `options.codec`, left to choose, codes
    another: ProRes 4444 XQ (`MASTER_PROFILES`); DNxHD, which the dnxhd encoder codes only given
    its profile and one of its bitrates (else DNxHR, which has no interlaced profile)."""
    if options.codec == "dnxhd" and video.profile == "DNXHD":
        return _dnxhd_options(options, video)
    profile = MASTER_PROFILES.get(options.codec, {}).get(video.profile)
    return (("profile", profile),) if profile else ()


def _dnxhd_options(options: EncodeOptions, video: VideoInfo) -> tuple[tuple[str, str], ...]:
    """DNxHD's profile and IN's bitrate, as the dnxhd encoder names its compression IDs (for a
    size, scan and depth, a few nominal Mbit/s: 120, 145 for 1080i 8-bit): IN's pictures are all
    one size, so the nominal rate nearest IN's measured one that the encoder opens with is IN's.
    () where none opens: the encoder's DNxHR."""
    if not video.average_rate or not video.frame_bytes:
        return ()
    measured = video.frame_bytes * 8 * float(video.average_rate) / 1e6
    fields = (("flags", "+ildct"),) if video.interlaced else ()
    for mbits in sorted(range(int(measured * 0.9), int(measured * 1.1) + 2), key=lambda rate: abs(rate - measured)):
        kept = (("profile", "dnxhd"), ("b", f"{mbits}M"))
        if encoder_opens(dataclasses.replace(options, options=(*options.options, *kept, *fields)), video.pix_fmt,
                         video):
            return kept
    return ()


CONTAINER_ENCODERS = {"webm": "libvpx-vp9", "mxf": "mpeg2video", "mxf_d10": "mpeg2video",
                      "yuv4mpegpipe": "rawvideo", "dv": "dvvideo",
                      **dict.fromkeys(PROGRAM_STREAM_FORMATS, "mpeg2video")}
"""The encoder `--codec auto` takes, where IN's is no master's, for containers whose video is
their own: WebM holds VP8/VP9 alone, an MPEG program stream keeps frame times only for MPEG-1/2,
broadcast's MXF is MPEG-2 (XDCAM, D-10), Y4M holds raw pictures and a .dv file DV."""


MASTER_CONTAINERS = {"mkv": "matroska", "mov": "mov", "mxf": "mxf", "avi": "avi"}
"""The containers a master's codec is looked for in, by their extension, where OUT's holds none."""


def resolved_codec(options: EncodeOptions, video: VideoInfo, container_format: str) -> EncodeOptions:
    """`options` with `--codec auto` made an encoder: IN's where it is one of MASTER_ENCODERS and
    OUT's container holds it, else the container's own (CONTAINER_ENCODERS: VP9 in WebM, MPEG-2
    in MXF and MPEG program streams), else libx264. A master left for a lossy codec is warned
    about. A codec given by name is kept as it is."""
    if options.codec != AUTO_CODEC:
        return options
    masters = MASTER_ENCODERS.get(video.codec, ())
    fallback = CONTAINER_ENCODERS.get(container_format, "libx264")
    given = dict(options.options)
    for name in dict.fromkeys((*masters, fallback, "libx264")):
        chosen = dataclasses.replace(options, codec=name)
        if name in masters and "profile" not in given and "b" not in given:
            chosen = dataclasses.replace(chosen, options=(*options.options, *_master_options(chosen, video)))
        if _container_holds(container_format, chosen, video):
            break
    else:  # none: the container's own codec, whose checks say what is wrong
        return dataclasses.replace(options, codec=fallback)
    if masters and chosen.codec not in masters:
        holders = [f".{extension}" for extension, holder in MASTER_CONTAINERS.items()
                   if any(_container_holds(holder, dataclasses.replace(options, codec=name), video)
                          for name in masters)]
        where = (f"{container_format} files cannot hold it; to keep it, write {' or '.join(holders)}" if holders else
                 "it cannot be written with these settings (--pix-fmt, --encoder-opt)")
        kept_as = ("" if video_encoder(masters[0]).canonical_name == video.codec else
                   f" (kept as {' or '.join(masters)})")
        log.warning("OUT is encoded with %s, a lossy codec, not in IN's %s%s: %s", chosen.codec, video.codec, kept_as,
                    where)
    return chosen


def _container_holds(container_format: str, options: EncodeOptions, video: VideoInfo) -> bool:
    """Whether `container_format` holds `options.codec`'s video of IN's size, in the closest pixel
    format to IN's, keeping every frame's time: its header is written to memory. MPEG-TS writes
    one for any codec, but a reader knows only those with a stream type (`copies.container_holds`)."""
    try:
        if not frame_times_kept(options.codec, container_format):
            return False
        pix_fmt, _lost = closest_pix_fmt(options, video)
    except OutputError:
        return False

    def add(trial: av.container.OutputContainer) -> None:
        stream = trial.add_stream(options.codec, rate=video.average_rate or 25,
                                  options=video_codec_options(options, video, container_format, pix_fmt))
        set_video_stream(stream, video, pix_fmt)
        if container_format == "mpegts" and not container_holds(container_format, stream):
            raise ValueError(f"no MPEG-TS stream type for {options.codec}")

    return header_written(container_format, add)
