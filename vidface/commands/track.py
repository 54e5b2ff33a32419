"""`vidface track IN OUT [--tracks FILE]`: a QA video of what the faces stage sees.

Boxes, smoothed landmarks and track ids are drawn on every frame (grey boxes: predicted, not
detected); `--tracks` also writes them as JSON Lines, one line per frame in decode order.
"""

from __future__ import annotations

import argparse
import sys

from vidface.commands.options import add_option_flags, add_output_flags, options_from_flags, show_progress, time_range


def add_face_flags(parser: argparse.ArgumentParser, device: bool = True, restoring: bool = False) -> None:
    """Detection and tracking flags (vidface.faces.options.FaceOptions), and the detector's
    weights file. device: add the detector's own --device flag (commands that run a model share
    the model's instead); restoring: add the flags that choose the faces to restore and how
    they are cut (--faces, --face-match, --fields)."""
    from vidface.faces.options import RESTORE_FIELDS, FaceOptions

    group = parser.add_argument_group("faces")
    add_option_flags(group, FaceOptions, leave_out=() if restoring else RESTORE_FIELDS)
    group.add_argument("--detector-weights", default=None, metavar="PATH",
                       help="weights file for a retinaface-* detector (default: the vidface cache "
                            "folder, $XDG_CACHE_HOME/vidface/facexlib)")
    if device:
        group.add_argument("--device", default="cpu",
                           help="torch device the detector runs on, e.g. cuda (default: %(default)s)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "track",
        help="draw detected and tracked faces on a video (QA for the faces stage)",
        description="Detect and track the faces in IN and write OUT with each face's box, five "
                    "smoothed landmarks and track id drawn (grey box: predicted, not detected). "
                    "Audio and other streams are kept, as in restore.",
    )
    parser.add_argument("input", metavar="IN", help="input video, or an image sequence's pattern (scan.%%06d.dpx)")
    parser.add_argument("output", metavar="OUT", help="output video; the container follows its extension")
    parser.add_argument("--tracks", default=None, metavar="FILE",
                        help="also write the faces as JSON Lines, one line per frame: "
                             '{"frame", "pts", "time", "faces": [{"track", "identity", "box", "landmarks", '
                             '"score", "detected"}]}, in displayed-frame pixels; "identity" labels one person '
                             'across tracks, shot cuts and absences')
    add_face_flags(parser)
    add_output_flags(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidface.errors import OutputError
    from vidface.faces.draw import draw_faces
    from vidface.faces.export import TracksWriter
    from vidface.faces.hdr import sdr_rgb
    from vidface.faces.options import detector_for
    from vidface.faces.track import track_faces
    from vidface.io.frames import RGBFrame
    from vidface.models.options import device_name
    from vidface.pipeline import check_output, plan_transcode, transcode

    from vidface.faces.options import FaceOptions

    config = options_from_flags(args, FaceOptions)
    plan = plan_transcode(args.input, args.output, time_range=time_range(args), overwrite=args.overwrite)
    tracks_path = Path(args.tracks) if args.tracks else None
    if tracks_path is not None:
        check_output(Path(args.input), tracks_path, overwrite=args.overwrite)
        if tracks_path.resolve() == plan.output.resolve():
            raise OutputError(f"--tracks {str(tracks_path)!r} is the output video; choose another name")
    args.device = device_name(args.device)  # checked against this machine (a GPU asked for and missing: one line)
    detector = detector_for(config, weights=Path(args.detector_weights) if args.detector_weights else None,
                            device=args.device)
    faces_seen = set()

    def overlay(frames, tracks: TracksWriter | None):
        pictures = (RGBFrame(frame, sdr_rgb(frame)) for frame in frames)
        for picture, faces in track_faces(pictures, detector, config):
            frame = picture.frame
            if tracks is not None:
                tracks.write(frame.index, frame.pts, frame.time, faces)
            faces_seen.update(face.track_id for face in faces)
            if not faces:
                yield frame
                continue
            rgb = frame.to_rgb()
            drawn = draw_faces(rgb, faces)
            yield frame.with_rgb(drawn, (drawn != rgb).any(axis=2).astype("float32"))

    bar = None
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=plan.decodable_count, unit="frame", desc="track", file=sys.stderr, dynamic_ncols=True)
    progress = (lambda n: bar.update(n - bar.n)) if bar else None
    try:
        if tracks_path is None:
            result = transcode(plan, lambda frames: overlay(frames, None), progress=progress)
        else:
            with TracksWriter(tracks_path) as tracks:
                result = transcode(plan, lambda frames: overlay(frames, tracks), progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"{result.output}: {result.frames} frames, {len(faces_seen)} face tracks, "
          f"in {result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.1f} fps)"
          + (f"; tracks in {tracks_path}" if tracks_path else ""))
    return 0
