"""Shot-cut detection from colour histograms of small thumbnails."""

from __future__ import annotations

import numpy as np

_THUMB = (64, 36)
_BINS = (16, 8, 8)  # hue, saturation, value


class ShotCutDetector:
    """Flags a frame whose colour distribution differs sharply from the previous frame's.

    The distance is the Bhattacharyya distance (0 same, 1 disjoint) between HSV histograms of a
    64×36 thumbnail: a face moving over the same background barely changes it, a new shot
    does. threshold: distance at and above which a frame starts a new shot.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def is_cut(self, rgb: np.ndarray) -> bool:
        """Whether `rgb` (H×W×3 uint8 RGB) starts a new shot; the first frame does not."""
        histogram = colour_histogram(rgb)
        previous, self._previous = self._previous, histogram
        return previous is not None and histogram_distance(previous, histogram) >= self.threshold


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalised HSV histogram (float32, sums to 1) of a 64×36 thumbnail of an RGB frame."""
    import cv2

    thumb = cv2.resize(rgb, _THUMB, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(_BINS), [0, 180, 0, 256, 0, 256])
    return (histogram / max(float(histogram.sum()), 1.0)).astype(np.float32)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance between two normalised histograms, in [0, 1]."""
    import cv2

    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))
