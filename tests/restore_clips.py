"""Helpers for the restore pipeline's tests: in-memory Frames of generated face clips, and the
frame region a face's restoration may reach."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np

from vidface.faces.align import face_crop, transform_points
from vidface.io.frames import Frame


def frames_of(images: list[np.ndarray], pix_fmt: str = "rgb24", first: int = 0) -> list[Frame]:
    """Frames as a decoder would give them (1/24 s apart, numbered from `first`), pictures
    stored in `pix_fmt`."""
    frames = []
    for index, rgb in enumerate(images, start=first):
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if pix_fmt != "rgb24":
            video = video.reformat(format=pix_fmt)
        frames.append(Frame(index=index, pts=index, time_base=Fraction(1, 24), duration=1, video=video))
    return frames


def face_region(landmarks: np.ndarray, shape: tuple[int, int], grow: float = 0.1) -> np.ndarray:
    """H×W bool: the frame pixels the aligned crop of a face with these true landmarks covers,
    grown by `grow` of the crop's side (room for detection and smoothing error)."""
    crop = face_crop(landmarks, 512)
    low, high = -grow * 512, (1 + grow) * 512
    corners = transform_points(crop.inverse, np.array([[low, low], [high, low], [high, high], [low, high]]))
    region = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(region, np.round(corners).astype(np.int32), 1)
    return region.astype(bool)


def face_core(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H×W bool: the middle of the face (between the eyes and the mouth), where the paste mask
    is 1 whatever small error the tracker makes."""
    region = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    return region.astype(bool)
