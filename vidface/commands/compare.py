"""`vidface compare IN OUT CMP`: a video showing IN and its restored OUT together, to judge a
restoration by looking (side by side, split, or a moving wipe)."""

from __future__ import annotations

import argparse
import sys

from vidface.commands.options import (add_option_flags, add_output_flags, add_pair_arguments, options_from_flags,
                                      show_progress, time_range)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from vidface.io.options import EncodeOptions

    parser = subparsers.add_parser(
        "compare",
        help="write a before/after comparison video of IN and its restored OUT",
        description="Write CMP showing IN (before) and OUT (after) together. OUT's timestamps, audio and "
                    "other streams are kept, as in restore. IN and OUT must have the same frames: the same "
                    "count, the same times from their first frame, the same upright picture size. "
                    "--start/--duration select IN's frames, as restore's do: for a preview made with "
                    "`vidface restore IN OUT --start S --duration D`, pass the same S and D.",
    )
    add_pair_arguments(parser, "CMP", "comparison video to write; the container follows its extension")
    parser.add_argument("--layout", choices=("side", "split", "wipe"), default="side",
                        help="side: IN left, OUT right, twice IN's width; split: IN's size, IN left of a line "
                             "in the middle, OUT right of it; wipe: as split, the line sweeping across the "
                             "picture and back, 4 s from edge to edge, easing at the edges (default: %(default)s)")
    parser.add_argument("--label", action="store_true",
                        help='write "before" and "after" in the top corners of their sides')
    add_option_flags(parser.add_argument_group("encoding"), EncodeOptions)
    add_output_flags(parser, output="CMP", range_of="IN")


def run(args: argparse.Namespace) -> int:
    from vidface.compare import compare, plan_compare
    from vidface.io.options import EncodeOptions

    plan = plan_compare(args.input, args.restored, args.output, layout=args.layout, label=args.label,
                        time_range=time_range(args),
                        encode=options_from_flags(args, EncodeOptions), overwrite=args.overwrite)
    bar = None
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=plan.plan.frame_count, unit="frame", desc="compare", file=sys.stderr, dynamic_ncols=True)
    try:
        result = compare(plan, progress=(lambda n: bar.update(n - bar.n)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"{result.output}: {result.frames} frames, {args.layout} layout, in {result.seconds:.1f} s "
          f"({result.frames / max(result.seconds, 1e-9):.1f} fps)")
    return 0
