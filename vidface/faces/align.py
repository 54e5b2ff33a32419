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

    def within(self, x: int, y: int) -> FaceCrop:
        """This crop, placed on the part of the frame whose top-left pixel is frame pixel (x, y)."""
        affine, inverse = self.affine.copy(), self.inverse.copy()
        affine[:, 2] += self.affine[:, :2] @ (x, y)
        inverse[:, 2] -= (x, y)
        return FaceCrop(affine=affine, inverse=inverse, size=self.size)


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


def face_crop(landmarks: np.ndarray, size: int = 512, pixel_shape: tuple[float, float] = (1.0, 1.0)) -> FaceCrop:
    """The crop that puts `landmarks` (5×2, frame pixels, template order) on the FFHQ template
    scaled to `size`×`size`. pixel_shape: the (width, height) a frame pixel is shown at
    (`Frame.pixel_shape`): an anamorphic picture's faces are stored narrower than they are, and
    the crop shows them as displayed, as the model learnt faces."""
    shape = np.asarray(pixel_shape, dtype=np.float64)
    affine = similarity_transform(np.asarray(landmarks, dtype=np.float64) * shape, FFHQ_TEMPLATE_512 * (size / 512.0))
    affine[:, :2] *= shape  # first stretch the frame's pixels to their displayed shape
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


def warp_source_box(crop: FaceCrop, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1, end exclusive) of a width×height frame that `warp_face` reads
    for `crop` with the reflecting border: those under the crop and their interpolation's
    neighbours, and the mirror images of those beyond the frame's edges. A part of the frame that
    holds them (placed with `FaceCrop.within`) gives the same crop, within the rounding of the
    crop's position, since on every side where the crop mirrors the frame this box reaches the
    frame's edge."""
    corners = np.array([[0, 0], [crop.size, 0], [0, crop.size], [crop.size, crop.size]], float)
    points = transform_points(crop.inverse, corners)
    reach = 2  # the bilinear neighbour, and the warp's fixed-point rounding of positions
    box = []
    for low, high, side in ((points[:, 0].min(), points[:, 0].max(), width),
                            (points[:, 1].min(), points[:, 1].max(), height)):
        first, last, edge = int(np.floor(low)) - reach, int(np.ceil(high)) + reach, side - 1
        if first < 0:
            last = max(last, -first)  # BORDER_REFLECT_101 reads pixel k for pixel -k
        if last > edge:
            first = min(first, 2 * edge - last)
        box.append((max(first, 0), min(last, edge) + 1))
    (x0, x1), (y0, y1) = box
    return x0, y0, x1, y1
