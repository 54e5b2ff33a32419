"""Paste restored crops back into the frame through the inverse alignment, with a soft mask.

The mask is built in crop space, so after the inverse warp it is sized to each face. It is the
feathered square :func:`crop_mask` (eroded and feathered in proportion to the crop), or a
per-face mask (face parsing, :mod:`vidface.faces.parsing`) multiplied by that square: no crop
edge reaches the frame at full weight whatever the mask. :class:`PasteOptions` chooses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, NamedTuple, Sequence

import numpy as np

from vidface.faces.align import FaceCrop, transform_points
from vidface.faces.parsing import PARSE_STRIDE
from vidface.fields import Rule, check, one_of, option

PASTE_MASKS = ("box", "parsing")
"""Paste masks: the feathered square of the crop; face parsing of the restored crop."""

# Fractions of the crop side: the mask reaches 0 this far inside the crop edge and its
# feathered ramp is this wide (facexlib's equivalent is ~1/10 and ~1/20 of the face side).
_MASK_MARGIN = 0.04
_MASK_FEATHER = 0.10


@dataclass(frozen=True)
class PasteOptions:
    """How restored faces are blended into the frame (the ``paste`` section of the settings).
    parse_size: 512 is the parser's training size; parsing costs a small part of what OSDFace
    itself takes per face (tools/bench.py mask; docs/benchmarks.md), so a smaller size, whose
    accuracy the random test weights cannot show, would save little."""

    section: ClassVar[str] = "paste"

    mask: str = option("box", "which part of each restored crop replaces the frame: box, the crop's feathered "
                       "square; parsing, the face alone (skin, eyes, brows, nose, mouth, ears; not hair, neck or "
                       "background) as facexlib's BiSeNet parses it, smoothed over time (temporal.mask_momentum); "
                       "it downloads parsing_bisenet.pth (53 MB) once", flag="--paste-mask",
                       rule=one_of(PASTE_MASKS))
    parse_size: int = option(512, "side, in pixels, of the picture the face parser sees (a multiple of 32)",
                             rule=Rule(lambda v: v >= PARSE_STRIDE and v % PARSE_STRIDE == 0,
                                       f"a positive multiple of {PARSE_STRIDE}"))
    parsing_weights: Path | None = option(None, "parsing_bisenet.pth file for --paste-mask parsing (default: the "
                                          "vidface cache folder, $XDG_CACHE_HOME/vidface/facexlib)",
                                          flag="--parsing-weights", metavar="PATH")

    def __post_init__(self) -> None:
        check(self)


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


class Pasted(NamedTuple):
    """What `paste_faces` made: rgb and mask as `Frame.with_rgb` takes them, a patch of the frame
    whose top-left pixel is at `origin` (x, y) (the whole frame at (0, 0), or the part the faces
    reach with some context around it); and per face the box (x0, y0, x1, y1, end exclusive) of
    the frame pixels its mask reaches, or None where it reaches none (a crop wholly outside the
    frame, or an all-zero mask)."""

    rgb: np.ndarray
    mask: np.ndarray
    origin: tuple[int, int]
    regions: list[tuple[int, int, int, int] | None]


def patch_box(boxes: Sequence[tuple[int, int, int, int]], context: int | None, width: int,
              height: int) -> tuple[int, int, int, int]:
    """The frame pixels (x0, y0, x1, y1) a `Pasted` patch covers: the box every face box reaches,
    grown by `context` pixels on each side within the frame; None: the whole frame."""
    if context is None or not boxes:
        return (0, 0, width, height) if context is None else (0, 0, 0, 0)
    return (max(0, min(b[0] for b in boxes) - context), max(0, min(b[1] for b in boxes) - context),
            min(width, max(b[2] for b in boxes) + context), min(height, max(b[3] for b in boxes) + context))


def paste_faces(frame_rgb: np.ndarray, faces: Sequence[tuple[np.ndarray, FaceCrop]],
                masks: Sequence[np.ndarray | None] | None = None, *, context: int | None = None) -> Pasted:
    """Blend restored crops into a frame.

    frame_rgb: H×W×3 RGB (displayed orientation), uint8, or uint16 in 16-bit levels (a deep
    frame, `Frame.to_rgb(deep=True)`). faces: (crop, FaceCrop) pairs, each crop size×size×3 RGB,
    uint8, uint16 or float in [0, 1]; pasted in the given order, later over earlier
    (the tracking stage yields faces sorted by track id, so the order is stable over time).
    masks: one per face, or None for all: a size×size float mask in [0, 1] in crop space (such
    as a parsed face), used times :func:`crop_mask`; None: :func:`crop_mask` alone.
    context: None for the whole frame, else the patch covers only the faces and this many frame
    pixels around them (a blend that reads neighbours needs them: `vidface.io.blend.BLEND_CONTEXT`),
    so the cost follows the faces' size, not the frame's.
    Returns a `Pasted`: rgb h×w×3 RGB of the frame's type such that frame·(1-mask) + rgb·mask
    is the layered result, mask h×w float32 in [0, 1], exactly 0 wherever no face reaches (there
    rgb equals the frame), and each face's region. No faces: the frame (an empty patch with a
    context) and a zero mask.
    """
    import cv2

    height, width = frame_rgb.shape[:2]
    top = _top(frame_rgb.dtype)
    if masks is None:
        masks = [None] * len(faces)
    if len(masks) != len(faces):
        raise ValueError(f"got {len(masks)} masks for {len(faces)} faces")
    boxes = [frame_box(crop, width, height) for _, crop in faces]
    regions: list[tuple[int, int, int, int] | None] = [None] * len(faces)
    placed = [(index, crop_rgb, crop, _face_mask(crop.size, mask), roi)
              for index, ((crop_rgb, crop), mask, roi) in enumerate(zip(faces, masks, boxes)) if roi is not None]
    px0, py0, px1, py1 = patch_box([roi for *_, roi in placed], context, width, height)
    rgb = frame_rgb[py0:py1, px0:px1].copy()
    mask_total = np.zeros(rgb.shape[:2], dtype=np.float32)
    if not placed:
        return Pasted(rgb, mask_total, (px0, py0), regions)
    # Work inside the box all faces reach: the cost follows the faces' size, not the frame's.
    ux0, uy0 = min(r[0] for *_, r in placed), min(r[1] for *_, r in placed)
    ux1, uy1 = max(r[2] for *_, r in placed), max(r[3] for *_, r in placed)
    area = (uy1 - uy0, ux1 - ux0)
    weighted = np.zeros((*area, 3), dtype=np.float32)  # Σ face · its visible weight
    # The faces' joint weight 1 - Π (1 - mask), summed as mask · (1 - so far): where the masks are
    # tiny, 1 minus a product near 1 would cancel to a few float32 steps and make rgb (Σ / weight) noise.
    area_mask = np.zeros(area, dtype=np.float32)
    for index, crop_rgb, crop, face_mask, (x0, y0, x1, y1) in placed:
        face = crop_rgb.astype(np.float32) * (top / _top(crop_rgb.dtype))
        to_roi = crop.inverse.copy()
        to_roi[:, 2] -= (x0, y0)
        roi_size = (x1 - x0, y1 - y0)
        warped = cv2.warpAffine(face, to_roi, roi_size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(face_mask, to_roi, roi_size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        regions[index] = _reach(alpha > 0, x0, y0)
        roi = (slice(y0 - uy0, y1 - uy0), slice(x0 - ux0, x1 - ux0))
        weighted[roi] = weighted[roi] * (1.0 - alpha[..., None]) + warped * alpha[..., None]
        area_mask[roi] += alpha * (1.0 - area_mask[roi])
    covered = area_mask > 0
    blended = np.clip(np.rint(weighted[covered] / area_mask[covered, None]), 0, top).astype(frame_rgb.dtype)
    union = (slice(uy0 - py0, uy1 - py0), slice(ux0 - px0, ux1 - px0))
    rgb[union][covered] = blended
    mask_total[union] = area_mask
    return Pasted(rgb, mask_total, (px0, py0), regions)


def _top(dtype: np.dtype) -> float:
    """The level that stands for full intensity in samples of `dtype`: its largest integer, 1 for floats."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _reach(reached: np.ndarray, x0: int, y0: int) -> tuple[int, int, int, int] | None:
    """The box of the True pixels of `reached` (placed at x0, y0 in the frame), or None."""
    rows, cols = np.flatnonzero(reached.any(axis=1)), np.flatnonzero(reached.any(axis=0))
    if not rows.size:
        return None
    return x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1


def _face_mask(size: int, mask: np.ndarray | None) -> np.ndarray:
    """The crop-space mask a face is pasted with: `mask` times the feathered square."""
    if mask is None:
        return crop_mask(size)
    if mask.shape != (size, size):
        raise ValueError(f"a paste mask must be {size}x{size} like its crop, got shape {mask.shape}")
    return np.clip(mask, 0.0, 1.0).astype(np.float32) * crop_mask(size)


def frame_box(crop: FaceCrop, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the frame pixels a crop reaches, clipped to the frame; None if none."""
    corners = np.array([[0, 0], [crop.size, 0], [0, crop.size], [crop.size, crop.size]], float)
    frame_corners = transform_points(crop.inverse, corners)
    x0, y0 = np.floor(frame_corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(frame_corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)
