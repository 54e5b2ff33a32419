"""`vidface faces IN_DIR OUT_DIR`: restore aligned face images with OSDFace (no video, no
detection: the job of the official inference script, done with vidface's model code)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidface.commands.options import (add_logging_flags, add_option_flags, add_progress_flag, options_from_flags,
                                      show_progress)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "faces",
        help="restore a folder of aligned face images (PNG out)",
        description="Restore every image in IN_DIR, each an aligned face crop (FFHQ alignment, as "
                    "OSDFace was trained on), and write OUT_DIR/<name>.png. Faces are restored at the "
                    "model's face size, 512 x 512 for the released weights: other square images are "
                    "resized to it first (bilinear, as the official script does) and come out at that "
                    "size; non-square images and files that are not images are refused before anything "
                    "is written. Outputs that already exist are skipped (so an interrupted run resumes) "
                    "unless -y is given.",
    )
    parser.add_argument("input", metavar="IN_DIR", type=Path, help="folder of aligned face images")
    parser.add_argument("output", metavar="OUT_DIR", type=Path, help="folder for the restored PNGs (created)")
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help="restore and replace images whose output exists (default: skip them)")
    add_progress_flag(parser)
    from vidface.models.options import ModelOptions

    add_option_flags(parser.add_argument_group("model"), ModelOptions)
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    from vidface.errors import OutputError
    from vidface.models.face_images import plan_faces, restore_faces
    from vidface.models.loading import load_osdface

    from vidface.models.options import ModelOptions

    options = options_from_flags(args, ModelOptions)
    if args.output.exists() and not args.output.is_dir():
        raise OutputError(f"OUT_DIR {args.output} exists and is not a folder; pass a folder")
    jobs = plan_faces(args.input, args.output, overwrite=args.overwrite)
    if not jobs:
        print(f"nothing to do: every image in {args.input} already has an output in {args.output} (-y to redo)")
        return 0
    model = load_osdface(options)
    args.output.mkdir(parents=True, exist_ok=True)
    show = show_progress(args)
    count = restore_faces(model, jobs, batch_size=options.batch_size, progress=show)
    print(f"restored {count} face image(s) into {args.output}")
    return 0
