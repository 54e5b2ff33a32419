"""Coordinate conventions of the faces stage, pinned with images whose points are known exactly:
Gaussian spots at sub-pixel positions, found again by their intensity-weighted centroids.

Everywhere pixel centres sit at integer coordinates (as in cv2.warpAffine and cv2.resize): the
clip renderer, the downscaled detection, and the refinement crops must all map points the way
they map pixels, or every landmark carries a constant offset.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from face_clips import ASTRONAUT_LANDMARKS, Pose, head_sprite, read_reference_landmarks, render
from vidface.faces.align import FFHQ_TEMPLATE_512, transform_points
from vidface.faces.detect import Face, RefinedDetector, ScaledDetector, create_detector


def spots(width: int, height: int, points: np.ndarray, sigma: float) -> np.ndarray:
    """H×W×3 uint8 RGB, black, with a white Gaussian spot (peak 250) centred on each point."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    grey = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)) for x, y in points)
    return np.repeat(np.rint(250 * grey)[..., None], 3, axis=2).astype(np.uint8)


def spot_centres(rgb: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroids (x, y) of the separate bright spots in `rgb`."""
    grey = rgb[..., 0].astype(np.float64)
    labels, count = ndimage.label(grey > 3)
    return np.array(ndimage.center_of_mass(grey, labels, range(1, count + 1)))[:, ::-1]


class SpotDetector:
    """A detector for five-spot 'faces': the spots' centroids in template order (two highest:
    the eyes, left to right; then the nose; then the mouth corners, left to right)."""

    def __init__(self, offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.offset = np.asarray(offset)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        centres = spot_centres(rgb)
        assert len(centres) == 5
        by_y = centres[np.argsort(centres[:, 1])]
        eyes, nose, mouth = by_y[:2], by_y[2:3], by_y[3:]
        marks = np.concatenate([eyes[np.argsort(eyes[:, 0])], nose, mouth[np.argsort(mouth[:, 0])]]) + self.offset
        box = np.concatenate([marks.min(axis=0) - 20, marks.max(axis=0) + 20])
        return [Face(box, marks, 1.0)]


def face_spots(scale: float, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """The FFHQ template's five points turned, scaled and moved: a 5×2 'face' in frame pixels."""
    angle = np.deg2rad(degrees)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (FFHQ_TEMPLATE_512 - 256.0) @ rotation.T + centre


@pytest.mark.parametrize("pose", [Pose(150.3, 120.7, 0.7, 20.0), Pose(161.8, 117.25, 1.3, -35.0)])
def test_renderer_draws_a_point_where_its_landmark_lands(pose: Pose) -> None:
    rgb, alpha, _ = head_sprite()
    height, width = rgb.shape[:2]
    point = np.array([[71.3, 96.6]])
    dot = (spots(width, height, point, 3.0), np.ones_like(alpha), np.repeat(point, 5, axis=0))
    frame, (truth,) = render(np.zeros((240, 320, 3), np.uint8), [pose], [dot])
    np.testing.assert_allclose(truth[0], transform_points(pose.affine(), point)[0])
    np.testing.assert_allclose(spot_centres(frame)[0], truth[0], atol=0.03)


def test_downscaled_detection_maps_points_back_through_pixel_centres() -> None:
    truth = face_spots(0.8, 8.0, (401.3, 297.6))
    frame = spots(800, 600, truth, 4.0)
    faces = ScaledDetector(SpotDetector(), max_side=320).detect(frame)  # 2.5× smaller
    # Plain multiplication by 2.5 would put every point (2.5 - 1) / 2 = 0.75 px down and right.
    np.testing.assert_allclose(faces[0].landmarks, truth, atol=0.05)


def test_refinement_maps_crop_readings_back_to_frame_pixels() -> None:
    truth = face_spots(0.8, 8.0, (401.3, 297.6))
    frame = spots(800, 600, truth, 4.0)
    refined = RefinedDetector(SpotDetector(offset=(3.0, -2.0)), SpotDetector()).detect(frame)
    np.testing.assert_allclose(refined[0].landmarks, truth, atol=0.05)  # first pass: 3.6 px off


def test_reference_landmarks_are_the_refined_detectors_own_reading() -> None:
    """The clips' truth (ASTRONAUT_LANDMARKS) is the refined CenterFace's reading (8 crops) of the
    clean, upright head at photo scale, averaged over 3 scales × 16 sub-pixel shifts; a quicker
    reading (one scale, 4 shifts) must agree with it within its own spread."""
    reading = read_reference_landmarks(create_detector("centerface", refine_crops=8), scales=(1.0,), phases=2)
    assert np.linalg.norm(reading - ASTRONAUT_LANDMARKS, axis=1).max() < 0.4
