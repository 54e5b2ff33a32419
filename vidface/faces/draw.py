"""The QA overlay of `vidface track`: boxes, landmarks and track ids drawn on a frame."""

from __future__ import annotations

import numpy as np

from vidface.faces.track import TrackedFace

# Track colours (RGB), cycled by track id; landmark colours in template order: left eye,
# right eye, nose, left mouth corner, right mouth corner.
_TRACK_COLOURS = ((255, 64, 64), (64, 200, 255), (255, 200, 0), (160, 255, 64), (255, 64, 255), (64, 255, 200))
_POINT_COLOURS = ((0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 255, 255), (255, 0, 255))
_PREDICTED = (160, 160, 160)


def draw_faces(rgb: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
    """A copy of `rgb` (H×W×3 uint8 RGB) with each face's box (its track's colour when
    detected, grey when predicted), its five landmarks and "#track" drawn, with "person N" (its
    identity label) where the face has one."""
    import cv2

    out = rgb.copy()
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    for face in faces:
        colour = _TRACK_COLOURS[face.track_id % len(_TRACK_COLOURS)] if face.detected else _PREDICTED
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        radius = max(1, round((x2 - x1) / 40))
        for (x, y), point_colour in zip(face.landmarks, _POINT_COLOURS):
            cv2.circle(out, (int(round(x)), int(round(y))), radius, point_colour, -1, cv2.LINE_AA)
        scale = max(0.35, thickness * 0.45)
        label = f"#{face.track_id}" + ("" if face.identity is None else f" person {face.identity}")
        cv2.putText(out, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour, thickness, cv2.LINE_AA)
    return out
