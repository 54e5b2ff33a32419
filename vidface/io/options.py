"""How the video is re-encoded (`EncodeOptions`, the ``encode`` section of the settings), kept
apart from vidface.io.encode so the settings and the command line load without PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vidface.errors import OutputError
from vidface.fields import between, check, option

# Option that sets constant quality / the speed preset, per encoder (absent: not supported).
CRF_OPTION = {"libx264": "crf", "libx265": "crf", "libsvtav1": "crf", "libvpx-vp9": "crf",
              "libvpx": "crf", "libaom-av1": "crf", "h264_nvenc": "cq", "hevc_nvenc": "cq",
              "av1_nvenc": "cq"}
PRESET_OPTION = {"libx264": "preset", "libx265": "preset", "libsvtav1": "preset",
                 "h264_nvenc": "preset", "hevc_nvenc": "preset", "av1_nvenc": "preset", "h264_qsv": "preset",
                 "hevc_qsv": "preset", "av1_qsv": "preset"}
QSCALE_ENCODERS = {"mpeg1video", "mpeg2video", "mpeg4", "msmpeg4", "msmpeg4v2", "wmv1", "wmv2", "flv", "h263",
                   "h263p", "mjpeg"}
"""FFmpeg's MPEG video family: no constant rate factor, but a fixed quantizer (ffmpeg -q:v); left
to their own rate control they aim at 200 kb/s, whatever the picture size."""
FF_QP2LAMBDA = 118
"""FFmpeg's ratio of a quantizer to its rate-distortion lambda."""
AUTO_CODEC = "auto"
"""`EncodeOptions.codec` that `vidface.io.codec_choice.resolved_codec` makes an encoder for IN and
OUT's container."""
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")

@dataclass(frozen=True)
class EncodeOptions:
    """How the video is re-encoded (the ``encode`` section of the settings; ffmpeg's -c:v, -crf,
    -preset, -pix_fmt, -x264-params...)."""

    section: ClassVar[str] = "encode"

    codec: str = option(AUTO_CODEC, "video encoder, as in ffmpeg -c:v (`vidface env` lists them); auto: IN's own "
                        "where it is lossless or an edit suite's intermediate (FFV1, ProRes, DNxHD...) and OUT's "
                        "container holds it, else the container's own where it has one (VP9 in .webm, MPEG-2 in "
                        ".mpg and .mxf), else libx264", flag="--codec")
    crf: int | None = option(18, "constant quality for x264/x265/AV1/VP9, lower is better and bigger (18 is "
                             "visually lossless for x264; ignored by encoders without one)", flag="--crf",
                             rule=between(0, 63))
    qscale: int | None = option(2, "fixed quantizer for MPEG-1/2, MPEG-4 Part 2 and MJPEG, which have no "
                                "constant rate factor (ffmpeg -q:v): 1 is best and biggest, 31 smallest; "
                                "unused where --encoder-opt b= sets a bitrate", flag="--qscale",
                                rule=between(1, 31))
    preset: str | None = option(None, "encoder speed preset, e.g. ultrafast..veryslow for x264 (default: the "
                                "encoder's own, medium for x264; encoders without presets, such as FFV1 and "
                                "ProRes, ignore it)", flag="--preset", metavar="NAME")
    pix_fmt: str | None = option(None, "output pixel format, e.g. yuv420p10le (default: keep the source's, so "
                                 "10-bit stays 10-bit)", flag="--pix-fmt", metavar="FMT")
    options: tuple[tuple[str, str], ...] = option((), "extra encoder options, applied last (--encoder-opt "
                                                  "KEY=VALUE adds to them)")

    def __post_init__(self) -> None:
        check(self)
        if self.codec in ("libx264", "libx265") and self.preset is not None and self.preset not in X26X_PRESETS:
            raise OutputError(f"unknown {self.codec} preset {self.preset!r}; choose one of: {', '.join(X26X_PRESETS)}")

    def codec_options(self) -> dict[str, str]:
        """The encoder options these settings stand for."""
        options: dict[str, str] = {}
        if self.crf is not None and self.codec in CRF_OPTION:
            options[CRF_OPTION[self.codec]] = str(self.crf)
            if self.codec.startswith("libvpx"):
                options["b"] = "0"
        if self.qscale is not None and self.codec in QSCALE_ENCODERS and "b" not in dict(self.options):
            # ffmpeg -q:v gives every frame this quality; PyAV cannot set a frame's, so the
            # quantizer and the lambda its mode decisions weigh bits by are pinned to it instead.
            lambda_ = str(self.qscale * FF_QP2LAMBDA)
            options.update(qmin=str(self.qscale), qmax=str(self.qscale), lmin=lambda_, lmax=lambda_)
        if self.preset is not None and self.codec in PRESET_OPTION:  # a preset's (fast, archival) meets FFV1 too
            options[PRESET_OPTION[self.codec]] = self.preset
        if self.codec == "libx265":
            # x264's wrapper writes the frames' closed captions by default, x265's only when asked
            options.update({"x265-params": "log-level=error", "a53cc": "1"})
        if self.codec == "jpeg2000":
            # The reversible 5/3 wavelet: lossless, as archives keep JPEG 2000 masters; FFmpeg's
            # default, the 9/7 one, rounds every sample for a few per cent less size.
            options["pred"] = "dwt53"
        options.update(dict(self.options))
        return options
