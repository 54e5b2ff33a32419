"""What a face looks like, as a vector: dlib's ResNet face descriptor, for telling people apart.

The descriptor (128 numbers; two photos of one person lie within about 0.6 of each other, of
two people farther apart) and dlib's 5-point shape model that places its 150×150 face chip
ship inside the `face-recognition-models` package (MIT), so it works offline; dlib itself
comes from the `dlib-bin` wheels (Boost licence). dlib cuts the chip; the descriptor's network
runs on onnxruntime (vidface.faces.dlib_resnet), read from dlib's file: the same numbers, with
the GIL released. The tracker asks for descriptors only where they decide something: when a
track is confirmed, every REFRESH_HITS detections of it after, and when a face appears while a
vanished track could be its return.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from vidface.errors import VidfaceError

__all__ = ["CHIP_SIZE", "DESCRIPTOR_FILE", "FaceDescriber", "People", "SAME_PERSON_DISTANCE", "descriptor_distance",
           "descriptor_network"]

SAME_PERSON_DISTANCE = 0.5
"""Descriptor distance under which two faces are taken for one person. dlib's own threshold is
0.6 (99.38 % on LFW); a track that continues on the wrong person is worse than a new id, so
the bar is stricter."""

IDENTITY_INSTALL = "pip install dlib-bin face-recognition-models"
CHIP_SIZE = 150
"""Side of dlib's face chip, the picture its descriptor network takes."""
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
"""dlib's descriptor network, in the face-recognition-models package."""


def _model_file(name: str) -> Path:
    # face_recognition_models' __init__ imports pkg_resources, which new setuptools lack:
    # find its folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise VidfaceError(f"the face descriptor needs the face-recognition-models package: {IDENTITY_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / name


@functools.lru_cache(maxsize=1)
def _dlib_models():
    """dlib and its 5-point shape model, which place the descriptor's face chip."""
    try:
        import dlib
    except ImportError:
        raise VidfaceError(f"the face descriptor needs dlib: {IDENTITY_INSTALL}") from None
    return dlib, dlib.shape_predictor(str(_model_file("shape_predictor_5_face_landmarks.dat")))


@functools.lru_cache(maxsize=1)
def descriptor_network():
    """The descriptor's network on onnxruntime (vidface.faces.dlib_resnet), read at the first
    face described."""
    from vidface.faces.dlib_resnet import DescriptorNetwork

    path = _model_file(DESCRIPTOR_FILE)
    try:
        return DescriptorNetwork(path)
    except (OSError, ValueError) as error:
        raise VidfaceError(f"the face descriptor's network cannot be read from {path} ({error}); "
                           f"reinstall it: {IDENTITY_INSTALL}") from None


class FaceDescriber:
    """Descriptors of faces found by vidface's detector (the models load once per process)."""

    def __init__(self) -> None:
        self._dlib, self._shape = _dlib_models()

    def describe(self, rgb: np.ndarray, box: np.ndarray, pixel_shape: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
        """The 128-d descriptor (float32) of the face in `box` (x1, y1, x2, y2, frame pixels)
        of `rgb` (H×W×3 uint8 RGB), whose pixels are shown `pixel_shape` (width, height: an
        anamorphic picture's, `Frame.pixel_shape`): the face is described as it is shown, not as
        a 16:9 SD picture stores it, 64:45 narrower."""
        if pixel_shape != (1.0, 1.0):
            rgb, box = _as_shown(rgb, box, pixel_shape)
        return descriptor_network()(self.chip(rgb, box)[None])[0]

    def chip(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's CHIP_SIZE×CHIP_SIZE×3 uint8 face chip of the face in `box` of `rgb`: what the
        descriptor's network takes."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        shape = self._shape(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return self._dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=0.25)


def _as_shown(rgb: np.ndarray, box: np.ndarray, pixel_shape: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The part of `rgb` around `box` (the box's size again on every side), stretched to square
    pixels, and the box in it."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    margin_x, margin_y = x2 - x1, y2 - y1
    height, width = rgb.shape[:2]
    left, top = max(0, int(x1 - margin_x)), max(0, int(y1 - margin_y))
    right, bottom = min(width, int(np.ceil(x2 + margin_x))), min(height, int(np.ceil(y2 + margin_y)))
    scale_x, scale_y = pixel_shape
    part = rgb[top:bottom, left:right]
    shown = cv2.resize(part, (max(1, round(part.shape[1] * scale_x)), max(1, round(part.shape[0] * scale_y))),
                       interpolation=cv2.INTER_CUBIC)
    return shown, np.array([(x1 - left) * scale_x, (y1 - top) * scale_y, (x2 - left) * scale_x, (y2 - top) * scale_y])


def descriptor_distance(one: np.ndarray, others: list[np.ndarray]) -> float:
    """The smallest distance from descriptor `one` to any of `others` (inf for none)."""
    return float(min((np.linalg.norm(one - other) for other in others), default=np.inf))


class People:
    """Identity labels, from 0 in order of first appearance, each with its person's latest
    GALLERY_SIZE descriptors: tracks that look like one person (across shot cuts and long
    absences) get one label."""

    GALLERY_SIZE = 8

    def __init__(self) -> None:
        self._gallery: list[list[np.ndarray]] = []

    def label(self, descriptors: list[np.ndarray]) -> int:
        """The person nearest to any of `descriptors` within SAME_PERSON_DISTANCE, or a new one;
        their gallery learns the descriptors."""
        distances = [min(descriptor_distance(d, known) for d in descriptors) for known in self._gallery]
        nearest = int(np.argmin(distances)) if distances else -1
        if nearest < 0 or distances[nearest] > SAME_PERSON_DISTANCE:
            nearest = len(self._gallery)
            self._gallery.append([])
        self.learn(nearest, descriptors)
        return nearest

    def learn(self, person: int, descriptors: list[np.ndarray]) -> None:
        gallery = self._gallery[person]
        gallery[:] = [*gallery, *descriptors][-self.GALLERY_SIZE:]
