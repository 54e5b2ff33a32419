"""`vidface report IN OUT REPORT`: the QA report of a restoration, one HTML page that opens
offline (vidface.report)."""

from __future__ import annotations

import argparse
import sys

from vidface.commands.options import add_output_flags, add_pair_arguments, show_progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report of what a restoration changed (tracks, flicker, contact sheet, run details)",
        description="Write REPORT, one self-contained HTML page (no network needed to open it) on OUT, the "
                    "restoration of IN: a timeline of the face tracks and shot cuts, per track the flicker of "
                    "the face in IN and in OUT, landmark jitter, face size and restoration strength, a contact "
                    "sheet of before/after crops, and the run's settings, versions and weights hashes (from "
                    "OUT's sidecar, OUT.vidface.json). The faces are the sidecar's (those restored), or with "
                    "--tracks those `vidface track` found over the same range (all of them).",
    )
    add_pair_arguments(parser, "REPORT", "HTML file to write")
    parser.add_argument("--tracks", metavar="FILE", default=None,
                        help="faces from `vidface track IN QA --tracks FILE` (same range as OUT), so that faces "
                             "left unrestored are measured too")
    add_output_flags(parser, output="REPORT", range_of="IN")
    parser.epilog = "--start/--duration apply only to an OUT without a sidecar (the sidecar says its range)."


def check_report_path(report, source, restored, *, overwrite: bool) -> None:
    """OutputError unless REPORT can be written: neither IN nor OUT, its folder writable, not
    there already (unless overwrite)."""
    from pathlib import Path

    from vidface.errors import OutputError
    from vidface.pipeline import check_output

    report = Path(report)
    for video in (source, restored):
        if report.resolve() == Path(video).resolve():
            raise OutputError(f"report {str(report)!r} is the video {str(video)!r} itself; choose another name")
    check_output(Path(source), report, overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    from vidface.io.index import frame_range
    from vidface.io.probe import probe
    from vidface.io.timecode import range_seconds
    from vidface.report import gather_report
    from vidface.report_page import write_report

    check_report_path(args.output, args.input, args.restored, overwrite=args.overwrite)
    first, count = None, None
    if args.start is not None or args.duration is not None:
        info = probe(args.input, probe(args.restored).video.average_rate)  # an image sequence at OUT's rate
        first, stop = frame_range(info, *range_seconds(args.start or 0.0, args.duration, info))
        count = stop - first
    data = gather_with_progress(args, lambda progress: gather_report(
        args.input, args.restored, tracks=args.tracks, first_frame=first, frame_count=count, progress=progress))
    write_report(args.output, data)
    print(f"{args.output}: {data.frames} frames, {len(data.tracks)} tracks, "
          f"{sum(any(t.restored) for t in data.tracks)} restored, in {data.seconds:.1f} s")
    return 0


def gather_with_progress(args: argparse.Namespace, gather):
    """Run `gather(progress)` with a bar of frames read (IN and OUT, side by side)."""
    if not show_progress(args):
        return gather(None)
    from tqdm import tqdm

    with tqdm(unit="frame", desc="report", file=sys.stderr, dynamic_ncols=True) as bar:
        return gather(lambda frames: bar.update(frames - bar.n))


def report_of_restore(args: argparse.Namespace, result, stats) -> None:
    """`vidface restore --report FILE`: the QA report of the run just done, with its timings."""
    from vidface.report import gather_report
    from vidface.report_page import write_report

    timings = {"frames": result.frames, "seconds": round(result.seconds, 1),
               "fps": round(result.frames / max(result.seconds, 1e-9), 2), "frames resumed": result.resumed}
    if stats is not None:
        timings.update({"faces restored": stats.faces, "model load wait (s)": round(stats.model_wait, 1),
                        "model time (s)": round(stats.model_seconds, 1)})
    data = gather_with_progress(args, lambda progress: gather_report(args.input, args.output, timings=timings,
                                                                     progress=progress))
    write_report(args.report, data)
    print(f"report: {args.report}")
