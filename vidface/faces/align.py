"""Alignment to the FFHQ template: a similarity transform from five landmarks to a square crop.

The template is the standard 5-point FFHQ template (as in facexlib) at 512×512: left eye,
right eye, nose, left mouth corner, right mouth corner, with "left" the image's left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FFHQ_TEMPLATE_512 = np.array([
    [192.98138, 239.94708],
    [318.90277, 240.19360],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
])

Border = Literal["reflect", "constant"]
# Grey of facexlib's constant padding; used only with border="constant".
PAD_GREY_RGB = (132, 133, 135)


@dataclass(frozen=True, eq=False)
class FaceCrop:
    """Where a face crop comes from. affine: 2×3 float64 frame → crop pixels; inverse:
    2×3 float64 crop → frame pixels; size: the crop's side in pixels."""

    affine: np.ndarray
    inverse: np.ndarray
    size: int


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    points `src` (N×2) onto `dst` (N×2), as a 2×3 float64 matrix.

    Plain least squares over all points, deliberately not a robust (RANSAC/LMedS) fit: a robust
    fit can switch inliers between frames and make smoothed landmarks jump again.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    # u = a x - b y + tx, v = b x + a y + ty: linear in (a, b, tx, ty).
    n = len(src)
    system = np.zeros((2 * n, 4))
    system[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)])
    system[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(system, dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine matrix."""
    full = np.vstack([affine, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to points (N×2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def face_crop(landmarks: np.ndarray, size: int = 512) -> FaceCrop:
    """The crop that puts `landmarks` (5×2, frame pixels, template order) on the FFHQ template
    scaled to `size`×`size`."""
    affine = similarity_transform(landmarks, FFHQ_TEMPLATE_512 * (size / 512.0))
    return FaceCrop(affine=affine, inverse=invert_affine(affine), size=size)


def warp_face(rgb: np.ndarray, crop: FaceCrop, border: Border = "reflect") -> np.ndarray:
    """Cut the aligned face out of `rgb` (H×W×3 RGB, uint8, or uint16 in 16-bit levels): a
    size×size×3 RGB crop of the same type.

    Where the crop reaches outside the frame it is padded: "reflect" mirrors the frame (as the
    FFHQ training crops were made, so the restorer sees no hard edge), "constant" fills grey.
    """
    import cv2

    scale = np.iinfo(rgb.dtype).max // 255  # 257 for 16-bit levels: 8-bit level v is 257·v there
    if border == "reflect":
        mode, value = cv2.BORDER_REFLECT_101, 0
    elif border == "constant":
        mode, value = cv2.BORDER_CONSTANT, tuple(level * scale for level in PAD_GREY_RGB)
    else:
        raise ValueError(f"border must be 'reflect' or 'constant', got {border!r}")
    return cv2.warpAffine(rgb, crop.affine, (crop.size, crop.size), flags=cv2.INTER_LINEAR,
                          borderMode=mode, borderValue=value)
