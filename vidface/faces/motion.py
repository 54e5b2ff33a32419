"""A face's motion model: a constant-velocity Kalman filter on its box and five landmarks, with
noise in proportion to the face's size (the same settings hold for a face 40 px or 400 px wide),
and fixed-lag Rauch-Tung-Striebel smoothing over the steps a track keeps. vidface.faces.track
runs one filter per face track; these functions are the filter's arithmetic.

The filter is written here in numpy (filterpy's KalmanFilter formulas, in the same order, so
tracks are the same to the last bit): importing filterpy also imports scipy.stats, which holds
the GIL through a long stretch at the start of every run, while the model loads beside it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vidface.faces.detect import Face
from vidface.faces.options import FaceOptions

DIM_Z = 14  # box (4) + landmarks (10)
_DIM_X = 2 * DIM_Z  # positions, then velocities
_TRANSITION = np.block([[np.eye(DIM_Z), np.eye(DIM_Z)], [np.zeros((DIM_Z, DIM_Z)), np.eye(DIM_Z)]])
_MEASURE = np.hstack([np.eye(DIM_Z), np.zeros((DIM_Z, DIM_Z))])
_IDENTITY = np.eye(_DIM_X)
_ACCEL_BLOCK = np.array([[0.25, 0.5], [0.5, 1.0]])  # discrete white-noise acceleration, dt = 1


@dataclass(eq=False)
class Step:
    """One frame of one track: predicted and filtered state, and the RTS gain to the next step."""

    frame: int
    x_prior: np.ndarray
    x_post: np.ndarray
    p_post: np.ndarray
    detected: bool
    score: float
    gain: np.ndarray | None = None  # P_post Fᵀ P_prior(next)⁻¹, set when the next step exists


def measurement(face: Face) -> np.ndarray:
    """A detection as the filter measures it: box, then landmarks, 14 values."""
    return np.concatenate([np.asarray(face.box, float).reshape(4), np.asarray(face.landmarks, float).reshape(10)])


def face_size(z: np.ndarray) -> float:
    """The side of the square as large as the box of measurement vector `z`."""
    width, height = z[2] - z[0], z[3] - z[1]
    return float(np.sqrt(max(width, 1.0) * max(height, 1.0)))


def noise(z: np.ndarray, config: FaceOptions) -> tuple[np.ndarray, np.ndarray]:
    """(R, Q) for a face whose current measurement vector is z."""
    size = face_size(z)
    r = np.full(DIM_Z, (config.landmark_noise * size) ** 2)
    r[:4] = (config.box_noise * size) ** 2
    q = np.kron(_ACCEL_BLOCK, np.eye(DIM_Z)) * (config.motion_noise * size) ** 2
    return np.diag(r), q


@dataclass(eq=False)
class MotionFilter:
    """A Kalman filter's state: x (28×1: measurement vector, then its velocity) and its
    covariance P (28×28)."""

    x: np.ndarray
    P: np.ndarray

    def predict(self, q: np.ndarray) -> None:
        """One frame on the constant-velocity model, with process noise `q`."""
        self.x = _TRANSITION @ self.x
        self.P = _TRANSITION @ self.P @ _TRANSITION.T + q

    def update(self, z: np.ndarray, r: np.ndarray) -> None:
        """Fold in measurement `z` (14×1) with noise `r`; the covariance in Joseph form, which
        stays symmetric and positive definite through rounding."""
        innovation = z - _MEASURE @ self.x
        pht = self.P @ _MEASURE.T
        gain = pht @ np.linalg.inv(_MEASURE @ pht + r)
        self.x = self.x + gain @ innovation
        i_kh = _IDENTITY - gain @ _MEASURE
        self.P = i_kh @ self.P @ i_kh.T + gain @ r @ gain.T


def start_filter(face: Face, frame: int, config: FaceOptions) -> tuple[MotionFilter, Step]:
    """A filter at rest on `face`, first seen in `frame`, and its first step."""
    z = measurement(face)
    r, _ = noise(z, config)
    velocity_var = (0.05 * face_size(z)) ** 2
    kf = MotionFilter(np.concatenate([z, np.zeros(DIM_Z)])[:, None],
                      np.diag(np.concatenate([np.diag(r), np.full(DIM_Z, velocity_var)])))
    return kf, Step(frame, kf.x.copy(), kf.x.copy(), kf.P.copy(), True, face.score)


def predict(kf: MotionFilter, steps: deque[Step], frame: int, score: float, config: FaceOptions) -> None:
    """Carry the filter to `frame` (the next one) on its motion model; a new step for it."""
    _, q = noise(kf.x[:DIM_Z, 0], config)
    kf.predict(q)
    last = steps[-1]
    last.gain = last.p_post @ _TRANSITION.T @ np.linalg.inv(kf.P)
    steps.append(Step(frame, kf.x.copy(), kf.x.copy(), kf.P.copy(), False, score))


def correct(kf: MotionFilter, steps: deque[Step], face: Face, config: FaceOptions) -> Step:
    """Update the newest step with its detection `face`; returns that step."""
    r, _ = noise(kf.x[:DIM_Z, 0], config)
    kf.update(measurement(face)[:, None], r)
    step = steps[-1]
    step.x_post, step.p_post = kf.x.copy(), kf.P.copy()
    step.detected, step.score = True, face.score
    return step


def predicted(kf: MotionFilter) -> np.ndarray:
    """The measurement vector the filter expects in the next frame, on its motion model."""
    return (_TRANSITION @ kf.x)[:DIM_Z, 0]


def smoothed(steps: deque[Step], frame: int) -> np.ndarray:
    """Fixed-lag RTS: the measurement vector at `frame`, smoothed backwards from the newest step."""
    first = steps[0].frame
    smooth = steps[-1].x_post
    for k in range(len(steps) - 2, frame - first - 1, -1):
        step, after = steps[k], steps[k + 1]
        smooth = step.x_post + step.gain @ (smooth - after.x_prior)
    return smooth[:DIM_Z, 0]
