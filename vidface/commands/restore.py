"""`vidface restore IN OUT`: stream IN through the restorer into OUT, keeping every stream."""

from __future__ import annotations

import argparse
import sys

from vidface.commands.options import add_output_flags

MODELS = ("none",)
"""Restorers `--model` accepts; `none` passes frames through untouched (an I/O-only run)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore every face in a video",
        description="Restore every face in IN and write OUT. Timestamps, frame count, audio, "
                    "subtitles, metadata and rotation are kept; only the video is re-encoded.",
    )
    parser.add_argument("input", metavar="IN", help="input video")
    parser.add_argument("output", metavar="OUT", help="output video; the container follows its extension")
    parser.add_argument("--model", choices=MODELS, default="none",
                        help="face restorer (default: %(default)s; 'none' only re-encodes, to check I/O)")
    parser.add_argument("--codec", default="libx264",
                        help="video encoder, as in ffmpeg -c:v (default: %(default)s; `vidface env` lists them)")
    parser.add_argument("--crf", type=int, default=18,
                        help="constant quality for x264/x265/AV1/VP9, lower is better and bigger "
                             "(default: %(default)s, visually lossless for x264)")
    parser.add_argument("--preset", default=None,
                        help="encoder speed preset, e.g. ultrafast..veryslow for x264 "
                             "(default: the encoder's own, medium for x264)")
    parser.add_argument("--pix-fmt", default=None, metavar="FMT",
                        help="output pixel format, e.g. yuv420p10le (default: keep the source's, "
                             "so 10-bit stays 10-bit)")
    parser.add_argument("--encoder-opt", action="append", default=[], metavar="KEY=VALUE",
                        type=_key_value, help="extra encoder option, repeatable (e.g. tune=film)")
    parser.add_argument("--no-audio", action="store_true",
                        help="drop the audio streams (default: copy every one, untouched)")
    parser.add_argument("--dry-run", action="store_true",
                        help="probe IN, print what would be done, write nothing")
    add_output_flags(parser)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def run(args: argparse.Namespace) -> int:
    from vidface.io.encode import EncodeOptions
    from vidface.pipeline import TimeRange, identity, plan_transcode, transcode

    encode = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                           options=tuple(args.encoder_opt))
    plan = plan_transcode(args.input, args.output, encode=encode,
                          time_range=TimeRange(start=args.start or 0.0, duration=args.duration),
                          keep_audio=not args.no_audio, overwrite=args.overwrite)
    if args.dry_run:
        print(describe_plan(plan))
        return 0
    show = not args.no_progress and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=plan.frame_count, unit="frame", desc="restore", file=sys.stderr, dynamic_ncols=True)
    try:
        result = transcode(plan, identity, progress=(lambda n: bar.update(n - bar.n)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"{result.output}: {result.frames} frames in {result.seconds:.1f} s "
          f"({result.frames / max(result.seconds, 1e-9):.1f} fps)")
    return 0


def describe_plan(plan) -> str:
    """The --dry-run report: what is read, what is encoded, what is copied or dropped."""
    video = plan.info.video
    first = plan.first_frame
    lines = [
        f"input   {plan.info.path} ({plan.info.format_name}, {video.frame_count} frames, "
        f"{video.duration:.3f} s)",
        f"video   #{video.index} {video.codec} {video.width}x{video.height} {video.pix_fmt}"
        + (f" rotated {video.rotation}°" if video.rotation else "")
        + (" VFR" if video.variable_frame_rate else ""),
        f"frames  {plan.frame_count} (from frame {first}, "
        f"{float((video.pts[first] - video.pts[0]) * video.time_base):.3f} s)",
        f"encode  {plan.encode.codec} {plan.pix_fmt} "
        + " ".join(f"{k}={v}" for k, v in plan.encode.codec_options().items()),
        f"model   none",
    ]
    lines += [f"copy    #{s.index} {s.type} {s.codec}" + (f" [{s.language}]" if s.language else "")
              for s in plan.copied]
    lines += [f"drop    #{s.index} {s.type} {s.codec}" for s in plan.dropped]
    lines.append(f"output  {plan.output} ({plan.container_format})")
    return "\n".join(lines)
