"""The options of the faces stage: detection, tracking and smoothing (`FaceOptions`, the
``faces`` section of the settings), read by vidface.faces.track and vidface.faces.detect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vidface.faces.detect import (DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, DEFAULT_REFINE_CROPS, DETECTORS, REFINE_POSITIONS,
                                  FaceDetector, create_detector)
from vidface.faces.selection import FaceSelection
from vidface.fields import Rule, above, at_least, between, check, one_of, option, zero_or_at_least

RESTORE_FIELDS = ("select", "face_match", "fields")  # which faces a restore changes, and how it cuts them


def _selection(text: str) -> bool:
    try:
        FaceSelection.parse(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class FaceOptions:
    """Detection, tracking and smoothing (the ``faces`` section of the settings). Defaults were
    chosen on the synthetic clips of tools/bench_faces.py (figures in docs/benchmarks.md).

    detect_every: the detector runs on every frame all the same on a cut and while a track is
    new or missing its face. A face first seen by a run is looked for in the frames skipped
    before it, and a face a run no longer finds in those after its last hit, so it is tracked
    from the first to the last frame it is in. detect_motion: the motion at which prediction
    alone drifts (tools/bench_faces.py); with refine off, the detector runs instead. lag: at
    least detect_every - 1, or a face leaving between detector runs can go out predicted in a
    frame it already left.
    """

    section: ClassVar[str] = "faces"

    detector: str = option(DEFAULT_DETECTOR, "face detector: " + "; ".join(
        f"{name}, {spec.description}" for name, spec in DETECTORS.items()), flag="--detector",
        rule=one_of(DETECTORS))
    detect_size: int = option(DEFAULT_MAX_SIDE, "long side, in pixels, of the downscaled frame the detector sees; "
                              "0: full size (larger finds smaller faces, slower)", flag="--detect-size", metavar="PX",
                              rule=zero_or_at_least(32, "full size"))
    detector_threshold: float | None = option(None, "minimum detection score (default: the detector's own)",
                                              flag="--detector-threshold", metavar="SCORE",
                                              rule=Rule(lambda v: 0 < v < 1, "in (0, 1)"))
    refine: bool = option(True, "read each face's landmarks again in upright crops of one canonical size "
                          "(vidface.faces.detect.RefinedDetector)")
    refine_crops: int = option(DEFAULT_REFINE_CROPS, "crops per face the landmarks are read again in, at shifted "
                               "positions, and averaged (more is steadier and slower)", flag="--refine-crops",
                               metavar="N", rule=one_of(REFINE_POSITIONS))
    detect_every: int = option(2, "detect faces in every K-th frame, the tracker predicts between (1: every frame)",
                               flag="--detect-every", metavar="K", rule=at_least(1))
    detect_motion: float | None = option(0.05, "while a face moves faster than this fraction of its size per frame, "
                                         "the frames between detector runs still get the landmark refinement, "
                                         "placed by the tracker's prediction (null in a config file: never)",
                                         flag="--detect-motion", metavar="FRACTION", rule=above(0))
    max_misses: int = option(5, "detector runs a confirmed track may miss in a row before it ends (it coasts on "
                             "its prediction meanwhile)", rule=at_least(0))
    min_hits: int = option(2, "detections before a track is reported", rule=at_least(1))
    lag: int = option(8, "future frames used to smooth face positions (more is steadier and holds more frames)",
                      flag="--lag", metavar="FRAMES", rule=at_least(0))
    landmark_noise: float = option(0.015, "detector error, as a fraction of the face size (square root of the "
                                   "box area)", rule=above(0))
    box_noise: float = option(0.04, "the box's detector error, as a fraction of the face size", rule=above(0))
    motion_noise: float = option(0.01, "change of velocity per frame, as a fraction of the face size", rule=above(0))
    min_iou: float = option(0.1, "box overlap a detection needs to continue a track", rule=between(0, 1))
    max_landmark_distance: float = option(0.5, "landmark distance, as a fraction of the face size, a detection "
                                          "may be from a track's prediction to continue it", rule=above(0))
    reid_window: float = option(2.0, "seconds a face that vanished (hidden, or out of the frame) keeps its track id: "
                                "a face that appears within them, looks like it (dlib's face descriptor) and is "
                                "where it could have moved continues its track (0: never)", flag="--reid-window",
                                metavar="SECONDS", rule=at_least(0))
    select: str = option("all", "the faces to restore: all; largest (the largest face of each shot); ID[,ID...] "
                         "(people by the identity labels vidface track prints); PHOTO[,PHOTO...] (people who "
                         "match photos of one face each); every other pixel stays as decoded", flag="--faces",
                         metavar="all|largest|ID,...|PHOTO,...",
                         rule=Rule(_selection, "all, largest, ID[,ID...] or PHOTO[,PHOTO...]"))
    face_match: float = option(0.5, "face descriptor distance within which a face matches a --faces photo "
                               "(smaller is stricter; two photos of one person are mostly within 0.45, of two "
                               "people mostly beyond 0.6)", flag="--face-match", metavar="DISTANCE", rule=above(0))
    fields: bool = option(False, "restore an interlaced source field by field: each field is one moment of a video "
                          "camera or tape (not of a film transfer or a progressive segmented frame), so a face is "
                          "cut from one moment, never from two woven together, and each field gets its own "
                          "restored face", flag="--fields")
    cut_threshold: float = option(0.5, "colour-histogram distance at which a frame starts a new shot (ending "
                                  "every track)", rule=between(0, 1))

    def __post_init__(self) -> None:
        check(self)


def detector_for(config: FaceOptions, *, weights: Path | None = None, device: str = "cpu") -> FaceDetector:
    """The detector `config` asks for. weights: overrides the detector's weights file
    (RetinaFace); device: the torch device it runs on (CenterFace: onnxruntime on the CPU, torch elsewhere)."""
    return create_detector(config.detector, threshold=config.detector_threshold,
                           max_side=config.detect_size or None, refine=config.refine,
                           refine_crops=config.refine_crops,
                           weights=weights, device=device)
