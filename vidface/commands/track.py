"""`vidface track IN OUT [--tracks FILE]`: a QA video of what the faces stage sees.

Boxes, smoothed landmarks and track ids are drawn on every frame (grey boxes: predicted, not
detected); `--tracks` also writes them as JSON Lines, one line per frame in decode order.
"""

from __future__ import annotations

import argparse
import sys

from vidface.commands.options import (add_output_flags, non_negative_int, open_unit_interval, positive_float,
                                      positive_int, show_progress)


def add_face_flags(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """Detection and tracking flags (defaults: vidface.faces.track.TrackerConfig). device: add
    the detector's own --device flag (commands that run a model share the model's instead)."""
    from vidface.faces.detect import DETECTORS, REFINE_POSITIONS
    from vidface.faces.track import TrackerConfig

    defaults = TrackerConfig()
    group = parser.add_argument_group("faces")
    group.add_argument("--detector", choices=tuple(DETECTORS), default=None,
                       help="face detector: " + "; ".join(f"{name}, {spec.description}" for name, spec in
                                                            DETECTORS.items()) + f" (default: {defaults.detector})")
    group.add_argument("--detector-weights", default=None, metavar="PATH",
                       help="weights file for a retinaface-* detector (default: the vidface cache "
                            "folder, $XDG_CACHE_HOME/vidface/facexlib)")
    group.add_argument("--detect-every", type=positive_int, default=None, metavar="K",
                       help=f"detect faces in every K-th frame, the tracker predicts between "
                            f"(default: {defaults.detect_every}; 1: every frame; 3 is faster with slightly looser boxes)")
    group.add_argument("--detect-motion", type=positive_float, default=None, metavar="FRACTION",
                       help=f"while a face moves faster than this fraction of its size per frame, the frames "
                            f"between detector runs still get the landmark refinement, placed by the tracker's "
                            f"prediction (default: {defaults.detect_motion})")
    group.add_argument("--refine-crops", type=int, choices=tuple(REFINE_POSITIONS), default=None, metavar="N",
                       help=f"crops per face the landmarks are read again in, at shifted positions, and averaged "
                            f"({', '.join(map(str, REFINE_POSITIONS))}; default: {defaults.refine_crops}; more is steadier and slower)")
    group.add_argument("--detect-size", type=non_negative_int, default=None, metavar="PX",
                       help=f"long side of the downscaled frame the detector sees; 0: full size "
                            f"(default: {defaults.detect_size}; larger finds smaller faces, slower)")
    group.add_argument("--detector-threshold", type=open_unit_interval, default=None, metavar="SCORE",
                       help="minimum detection score (default: the detector's own, 0.5 for centerface)")
    group.add_argument("--lag", type=non_negative_int, default=None, metavar="FRAMES",
                       help=f"future frames used to smooth face positions (default: {defaults.lag}; "
                            f"more is steadier, holds more frames in memory)")
    if device:
        group.add_argument("--device", default="cpu",
                           help="torch device for retinaface-* detectors, e.g. cuda (default: %(default)s)")


def face_config(args: argparse.Namespace):
    """The TrackerConfig the face flags ask for."""
    import dataclasses

    from vidface.faces.track import TrackerConfig

    given = {key.removeprefix("faces."): value for key, value in face_overrides(args).items() if value is not None}
    return dataclasses.replace(TrackerConfig(), **given)


def face_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The face flags as settings overrides (``{"faces.lag": 4, ...}``); None: not given."""
    return {"faces.detector": args.detector, "faces.detect_every": args.detect_every,
            "faces.detect_motion": args.detect_motion, "faces.refine_crops": args.refine_crops,
            "faces.detect_size": args.detect_size, "faces.detector_threshold": args.detector_threshold,
            "faces.lag": args.lag}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "track",
        help="draw detected and tracked faces on a video (QA for the faces stage)",
        description="Detect and track the faces in IN and write OUT with each face's box, five "
                    "smoothed landmarks and track id drawn (grey box: predicted, not detected). "
                    "Audio and other streams are kept, as in restore.",
    )
    parser.add_argument("input", metavar="IN", help="input video")
    parser.add_argument("output", metavar="OUT", help="output video; the container follows its extension")
    parser.add_argument("--tracks", default=None, metavar="FILE",
                        help="also write the faces as JSON Lines, one line per frame: "
                             '{"frame", "pts", "time", "faces": [{"track", "box", "landmarks", "score", '
                             '"detected"}]}, in displayed-frame pixels')
    add_face_flags(parser)
    add_output_flags(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidface.errors import OutputError
    from vidface.faces.draw import draw_faces
    from vidface.faces.export import TracksWriter
    from vidface.faces.track import detector_for, track_faces
    from vidface.pipeline import TimeRange, check_output, plan_transcode, transcode

    config = face_config(args)
    plan = plan_transcode(args.input, args.output, time_range=TimeRange(start=args.start or 0.0,
                                                                        duration=args.duration),
                          overwrite=args.overwrite)
    tracks_path = Path(args.tracks) if args.tracks else None
    if tracks_path is not None:
        check_output(Path(args.input), tracks_path, overwrite=args.overwrite)
        if tracks_path.resolve() == plan.output.resolve():
            raise OutputError(f"--tracks {str(tracks_path)!r} is the output video; choose another name")
    detector = detector_for(config, weights=Path(args.detector_weights) if args.detector_weights else None,
                            device=args.device)
    faces_seen = set()

    def overlay(frames, tracks: TracksWriter | None):
        for frame, faces in track_faces(frames, detector, config):
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

        bar = tqdm(total=plan.frame_count, unit="frame", desc="track", file=sys.stderr, dynamic_ncols=True)
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
