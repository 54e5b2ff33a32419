"""Paste restored crops back into the frame through the inverse alignment, with a soft mask.

The mask is built in crop space (eroded and feathered in proportion to the crop), so after the
inverse warp it is sized to each face; no crop edge reaches the frame at full weight.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from vidface.faces.align import FaceCrop, transform_points

# Fractions of the crop side: the mask reaches 0 this far inside the crop edge and its
# feathered ramp is this wide (facexlib's equivalent is ~1/10 and ~1/20 of the face side).
_MASK_MARGIN = 0.04
_MASK_FEATHER = 0.10


@lru_cache(maxsize=4)
def crop_mask(size: int) -> np.ndarray:
    """Soft paste mask in crop space: size×size float32 in [0, 1], 1 in the middle, 0 at and
    near the edge, with a smooth (raised-cosine) ramp in between. Read-only."""
    coords = np.arange(size, dtype=np.float64) + 0.5
    edge_distance = np.minimum(coords, size - coords)  # to the nearest crop edge along one axis
    ramp = np.clip((edge_distance - _MASK_MARGIN * size) / (_MASK_FEATHER * size), 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    mask = np.outer(ramp, ramp).astype(np.float32)
    mask.setflags(write=False)
    return mask


def paste_faces(frame_rgb: np.ndarray, faces: Sequence[tuple[np.ndarray, FaceCrop]]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Blend restored crops into a frame.

    frame_rgb: H×W×3 uint8 RGB (displayed orientation). faces: (crop, FaceCrop) pairs, each crop
    size×size×3 RGB, uint8 or float in [0, 1]; pasted in the given order, later over earlier
    (the tracking stage yields faces sorted by track id, so the order is stable over time).
    Returns (rgb, mask) as `Frame.with_rgb` takes them: rgb H×W×3 uint8 RGB such that
    frame·(1-mask) + rgb·mask is the layered result, and mask H×W float32 in [0, 1], exactly 0
    wherever no face reaches (there rgb equals the frame). No faces: the frame and a zero mask.
    """
    import cv2

    height, width = frame_rgb.shape[:2]
    mask_total = np.zeros((height, width), dtype=np.float32)
    if not faces:
        return frame_rgb.copy(), mask_total
    weighted = np.zeros((height, width, 3), dtype=np.float32)  # Σ face · its visible weight
    keep = np.ones((height, width), dtype=np.float32)  # Π (1 - mask): weight left to the frame
    for crop_rgb, crop in faces:
        face = crop_rgb.astype(np.float32) * (1.0 if crop_rgb.dtype == np.uint8 else 255.0)
        corners = np.array([[0, 0], [crop.size, 0], [0, crop.size], [crop.size, crop.size]], float)
        frame_corners = transform_points(crop.inverse, corners)
        x0, y0 = np.floor(frame_corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(frame_corners.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        to_roi = crop.inverse.copy()
        to_roi[:, 2] -= (x0, y0)
        roi_size = (x1 - x0, y1 - y0)
        warped = cv2.warpAffine(face, to_roi, roi_size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(crop_mask(crop.size), to_roi, roi_size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        roi = (slice(y0, y1), slice(x0, x1))
        weighted[roi] = weighted[roi] * (1.0 - alpha[..., None]) + warped * alpha[..., None]
        keep[roi] *= 1.0 - alpha
    mask_total = 1.0 - keep
    covered = mask_total > 0
    rgb = frame_rgb.copy()
    rgb[covered] = np.clip(np.rint(weighted[covered] / mask_total[covered, None]), 0, 255).astype(np.uint8)
    return rgb, mask_total
