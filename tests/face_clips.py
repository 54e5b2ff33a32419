"""Synthetic face clips with known landmark paths, built from `skimage.data.astronaut()` (and,
where two different people are needed, matplotlib's sample portrait of Grace Hopper).

A head cut out of the astronaut photo (soft elliptical edge) is warped by a known similarity
transform per frame onto a background, so the true five landmarks of every face in every frame
are known. Clips are lists of H×W×3 uint8 RGB arrays; degradations (blur, noise, JPEG),
occlusions, a shot cut and two crossing faces are options of the generators.
Used by the faces tests, the faces benchmark and the pipeline's tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np
import skimage.data

# Five landmarks of the astronaut's face in the 512×512 photo (x, y; left eye, right eye, nose,
# left mouth corner, right mouth corner, as seen). They define the "true" path of every
# generated face: CenterFace's reading of the clean, upright head refined in 8 crops (the most;
# the same truth for every setting), `read_reference_landmarks(create_detector("centerface",
# refine_crops=8))`: 3 scales × 16 sub-pixel
# shifts, each mapped back through the rendering transform (readings per scale agree within
# 0.2 px). Errors measured against it are the detector's inconsistency under motion, scale,
# rotation, resampling and degradation, not its disagreement with a human annotator (a manual
# reading agrees within 3 px).
ASTRONAUT_LANDMARKS = np.array([
    [203.63, 102.73],
    [247.56, 104.68],
    [224.46, 125.30],
    [204.25, 143.21],
    [241.88, 144.71],
])
_HEAD = (140, 20, 310, 220)  # x1, y1, x2, y2 of the head cut out of the photo
# Grace Hopper's five landmarks in matplotlib's grace_hopper.jpg (512×600), read as above (the
# refined detector, 8 crops, on the clean photo).
HOPPER_LANDMARKS = np.array([
    [224.2, 198.5],
    [309.8, 194.9],
    [267.1, 241.1],
    [232.9, 278.5],
    [304.8, 275.2],
])


@lru_cache(maxsize=1)
def head_sprite() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb H×W×3 uint8, alpha H×W float32 in [0, 1], landmarks 5×2 in sprite pixels)."""
    x1, y1, x2, y2 = _HEAD
    rgb = np.ascontiguousarray(skimage.data.astronaut()[y1:y2, x1:x2])
    height, width = rgb.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    alpha = np.clip((1.0 - radius) / 0.15, 0.0, 1.0)
    landmarks = ASTRONAUT_LANDMARKS - (x1, y1)
    for array in (rgb, alpha, landmarks):
        array.setflags(write=False)
    return rgb, alpha, landmarks


@lru_cache(maxsize=1)
def hopper_sprite() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grace Hopper's head as a sprite of head_sprite's size, her face placed where the
    astronaut's is (a similarity transform of the landmarks), so Poses mean the same for both:
    a second real person for identity tests."""
    import matplotlib.cbook
    from PIL import Image

    from vidface.faces.align import similarity_transform, transform_points

    astronaut, alpha, target = head_sprite()
    height, width = astronaut.shape[:2]
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as photo:
        portrait = np.asarray(photo.convert("RGB"))
    affine = similarity_transform(HOPPER_LANDMARKS, target)
    rgb = cv2.warpAffine(portrait, affine, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    landmarks = transform_points(affine, HOPPER_LANDMARKS)
    for array in (rgb, landmarks):
        array.setflags(write=False)
    return rgb, alpha, landmarks


@dataclass(frozen=True)
class Pose:
    """Where a head sits in a frame: centre of the sprite (frame pixels), scale, rotation
    (degrees, counter-clockwise as seen)."""

    x: float
    y: float
    scale: float
    angle: float

    def affine(self) -> np.ndarray:
        """2×3 sprite → frame pixels."""
        rgb, _, _ = head_sprite()
        height, width = rgb.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), self.angle, self.scale)
        matrix[:, 2] += (self.x - width / 2, self.y - height / 2)
        return matrix


@dataclass
class Clip:
    """frames: H×W×3 uint8 RGB; truth[i]: {face id: 5×2 landmarks} of the faces visible (not
    occluded) in frame i; cut: index of the first frame of the second shot, or None."""

    frames: list[np.ndarray]
    truth: list[dict[int, np.ndarray]]
    cut: int | None = None
    occluded: frozenset[int] = field(default_factory=frozenset)


def background(width: int, height: int, kind: str = "gradient") -> np.ndarray:
    """A face-free background, H×W×3 uint8 RGB: "gradient" (soft colours) or "coffee" (a photo)."""
    if kind == "coffee":
        return cv2.resize(skimage.data.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height, 150 - 50 * xx / width], axis=2)
    return rgb.astype(np.uint8)


Sprite = tuple[np.ndarray, np.ndarray, np.ndarray]  # rgb H×W×3 uint8, alpha H×W float32, landmarks 5×2


def render(base: np.ndarray, poses: list[Pose], sprites: list[Sprite] | None = None
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw heads at `poses` over `base` (later over earlier); their true landmarks.

    Pixel centres sit at integer coordinates, as in cv2.warpAffine: sprite pixel (x, y) lands on
    frame point affine @ (x, y, 1), and so do the landmarks. `sprites`: one per pose (default:
    the astronaut head for all), each of the head sprite's size, since poses are defined on it."""
    out = base.astype(np.float32)
    height, width = base.shape[:2]
    truth = []
    for pose, (rgb, alpha, landmarks) in zip(poses, sprites or [head_sprite()] * len(poses)):
        matrix = pose.affine()
        warped = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
        weight = cv2.warpAffine(alpha, matrix, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        out = out * (1 - weight) + warped * weight
        truth.append(landmarks @ matrix[:, :2].T + matrix[:, 2])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), truth


def read_reference_landmarks(detector, scales: tuple[float, ...] = (0.9, 1.0, 1.1),
                             phases: int = 4) -> np.ndarray:
    """A detector's reading of the clean, upright astronaut head, in photo pixels (5×2).

    The head is drawn by `render` over the clip background at each scale and at phases×phases
    sub-pixel positions; each reading is mapped back to photo pixels through the inverse of the
    rendering transform, and the readings are averaged, so neither the detector's grid phase
    nor one scale's resampling decides the result. `detector`: a FaceDetector."""
    width, height = 360, 320
    base = background(width, height)
    readings = []
    for scale in scales:
        for dy in range(phases):
            for dx in range(phases):
                pose = Pose(width / 2 + dx / phases, height / 2 + dy / phases, scale, 0.0)
                rgb, (truth,) = render(base, [pose])
                faces = detector.detect(rgb)
                if not faces:
                    raise AssertionError(f"no face found at scale {scale}, shift ({dx}, {dy})/{phases}")
                best = min(faces, key=lambda f: float(np.linalg.norm(f.landmarks - truth, axis=1).mean()))
                inverse = cv2.invertAffineTransform(pose.affine())
                readings.append(best.landmarks @ inverse[:, :2].T + inverse[:, 2])
    return np.mean(readings, axis=0) + (_HEAD[0], _HEAD[1])


def degrade(rgb: np.ndarray, rng: np.random.Generator, blur: float = 1.0, noise: float = 4.0,
            jpeg: int = 60) -> np.ndarray:
    """Gaussian blur (sigma px), Gaussian noise (sigma in 8-bit levels), JPEG at `jpeg` quality."""
    out = cv2.GaussianBlur(rgb, (0, 0), blur) if blur > 0 else rgb
    if noise > 0:
        out = np.clip(out + rng.normal(0, noise, out.shape), 0, 255).astype(np.uint8)
    if jpeg:
        ok, data = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        out = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


def moving_face_path(n_frames: int, width: int, height: int, scale: float = 0.6) -> list[Pose]:
    """One head drifting left to right, bobbing, growing and shrinking by 25 %, turning ±12°."""
    poses = []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        poses.append(Pose(x=width * (0.35 + 0.3 * t), y=height * (0.5 + 0.06 * np.sin(2 * np.pi * t)),
                          scale=scale * (1 + 0.25 * np.sin(np.pi * t)), angle=12 * np.sin(2 * np.pi * t)))
    return poses


def moving_face_clip(n_frames: int = 40, width: int = 320, height: int = 240, *, scale: float = 0.6,
                     seed: int = 0, degraded: bool = True, occluded: tuple[int, ...] = (),
                     face_free: tuple[int, ...] = ()) -> Clip:
    """One moving head. occluded: frames where a grey block hides the face; face_free: frames
    with the background only (no face at all)."""
    rng = np.random.default_rng(seed)
    base = background(width, height)
    frames, truth = [], []
    for i, pose in enumerate(moving_face_path(n_frames, width, height, scale)):
        if i in face_free:
            rgb, marks = base.copy(), {}
        else:
            rgb, (points,) = render(base, [pose])
            marks = {0: points}
            if i in occluded:
                x1, y1 = points.min(axis=0) - 25 * pose.scale / 0.6
                x2, y2 = points.max(axis=0) + 25 * pose.scale / 0.6
                rgb[max(int(y1), 0):int(y2), max(int(x1), 0):int(x2)] = 128
                marks = {}
        frames.append(degrade(rgb, rng) if degraded else rgb)
        truth.append(marks)
    return Clip(frames, truth, occluded=frozenset(occluded))


def leaving_and_returning_clip(n_frames: int = 80, width: int = 320, height: int = 240) -> Clip:
    """One head moving right, wholly out of the frame, and back in (42 frames with a part of the
    face outside, 1.7 s)."""
    rng = np.random.default_rng(1)
    base = background(width, height)
    frames, truth = [], []
    for i in range(n_frames):
        t = i / (n_frames - 1)
        rgb, (points,) = render(base, [Pose(width * (0.45 + 0.75 * np.sin(np.pi * t)), height * 0.5, 0.55, 0.0)])
        frames.append(degrade(rgb, rng))
        inside = points[:, 0].max() < width and points[:, 0].min() > 0
        truth.append({0: points} if inside else {})
    return Clip(frames, truth)


def shot_cut_clip(n_frames: int = 30, cut: int = 15, width: int = 320, height: int = 240,
                  seed: int = 0) -> Clip:
    """A head on a soft background, then from frame `cut` on the same head, nearly in the same
    place, on a different background (a photo): only the cut tells the two shots apart."""
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for i, pose in enumerate(moving_face_path(n_frames, width, height)):
        base = background(width, height, "coffee" if i >= cut else "gradient")
        rgb, (points,) = render(base, [pose])
        frames.append(degrade(rgb, rng))
        truth.append({0 if i < cut else 1: points})
    return Clip(frames, truth, cut=cut)


def crossing_faces_clip(n_frames: int = 40, width: int = 320, height: int = 240, seed: int = 0,
                        people: tuple[Sprite, Sprite] | None = None) -> Clip:
    """Two heads passing each other: face 0 moves right, face 1 moves left (drawn in front),
    at slightly different heights and scales, overlapping in the middle frames. people: their
    sprites (default: the astronaut twice)."""
    rng = np.random.default_rng(seed)
    base = background(width, height)
    frames, truth = [], []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        poses = [Pose(width * (0.2 + 0.6 * t), height * 0.45, 0.55, 5.0),
                 Pose(width * (0.8 - 0.6 * t), height * 0.55, 0.62, -5.0)]
        rgb, points = render(base, poses, list(people) if people else None)
        frames.append(degrade(rgb, rng))
        truth.append({0: points[0], 1: points[1]})
    return Clip(frames, truth)


# -- measures ------------------------------------------------------------------------------

FPS = 25  # frame rate the clips are played at


class Picture:
    """A frame for track_faces: an RGB picture behind to_rgb(), the index-th of a clip at FPS."""

    pixel_shape = (1.0, 1.0)

    def __init__(self, rgb: np.ndarray, index: int) -> None:
        self.rgb = rgb
        self.time = index / FPS

    def to_rgb(self) -> np.ndarray:
        return self.rgb


class CountingPasses:
    """A refined detector that counts its full-frame runs (`detected`) and its refinement-only
    passes (`refined`), for the tracking stage's choice between them."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.detected = self.refined = 0

    def detect(self, rgb: np.ndarray) -> list:
        self.detected += 1
        return self.detector.detect(rgb)

    def refine(self, rgb: np.ndarray, seeds: list) -> list:
        self.refined += 1
        return self.detector.refine(rgb, seeds)


def jitter(points: np.ndarray) -> float:
    """RMS second difference of a landmark path (T×5×2, pixels): frame-to-frame shake that a
    smooth motion does not have."""
    return float(np.sqrt((np.diff(points, n=2, axis=0) ** 2).sum(axis=-1).mean()))


def crop_error(estimate: np.ndarray, truth: np.ndarray, size: int = 512) -> float:
    """How far a crop aligned on `estimate` (5×2) is from the crop aligned on `truth`: the mean
    distance, in pixels of the size×size crop, between where the true landmarks land in each."""
    from vidface.faces.align import face_crop, transform_points

    true_crop, est_crop = face_crop(truth, size), face_crop(estimate, size)
    return float(np.linalg.norm(transform_points(est_crop.affine, truth)
                                - transform_points(true_crop.affine, truth), axis=1).mean())


class LandmarkErrors(NamedTuple):
    """Landmark errors over a clip, in pixels of each frame's true size×size crop: `landmark`,
    the mean distance of each estimated landmark from the true one; `offset`, the mean
    distance of the per-landmark average error (a constant offset: how this detector places
    landmarks); `varying`, the mean distance from that average (what changes frame to frame,
    what tracking and smoothing act on)."""

    landmark: float
    offset: float
    varying: float


def error_parts(estimates: np.ndarray, truth: np.ndarray, size: int = 512) -> LandmarkErrors:
    """Errors of landmark estimates against the truth (both T×5×2 frame pixels), measured in
    the true crop and split as `LandmarkErrors` describes."""
    from vidface.faces.align import face_crop, transform_points

    errors = []
    for estimate, true in zip(estimates, truth):
        affine = face_crop(true, size).affine
        errors.append(transform_points(affine, estimate) - transform_points(affine, true))
    errors = np.asarray(errors)
    offset = errors.mean(axis=0)
    return LandmarkErrors(float(np.linalg.norm(errors, axis=-1).mean()), float(np.linalg.norm(offset, axis=-1).mean()),
                          float(np.linalg.norm(errors - offset, axis=-1).mean()))


def match_tracks(truth: list[dict[int, np.ndarray]], tracked: list[list]) -> dict[int, list[int | None]]:
    """For each true face, the track id nearest to it in each frame (None: no track within
    half the eye distance). tracked[i]: the TrackedFace list of frame i."""
    paths: dict[int, list[int | None]] = {}
    for i, (marks, faces) in enumerate(zip(truth, tracked)):
        for face_id, points in marks.items():
            eyes = float(np.linalg.norm(points[1] - points[0]))
            best = min(faces, default=None,
                       key=lambda f: float(np.linalg.norm(f.landmarks - points, axis=1).mean()))
            near = best is not None and np.linalg.norm(best.landmarks - points, axis=1).mean() < eyes / 2
            paths.setdefault(face_id, [None] * len(truth))[i] = best.track_id if near else None
    return paths


def id_switches(path: list[int | None]) -> int:
    """Changes of track id along one true face's path (gaps ignored)."""
    ids = [track for track in path if track is not None]
    return sum(a != b for a, b in zip(ids, ids[1:]))
