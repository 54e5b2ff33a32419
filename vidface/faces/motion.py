"""A face's motion model: a constant-velocity Kalman filter on its box and five landmarks, with
noise in proportion to the face's size (the same settings hold for a face 40 px or 400 px wide),
and fixed-lag Rauch-Tung-Striebel smoothing over the steps a track keeps. vidface.faces.track
runs one filter per face track; these functions are the filter's arithmetic.
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


def start_filter(face: Face, frame: int, config: FaceOptions):
    """A filter at rest on `face`, first seen in `frame`, and its first step."""
    from filterpy.kalman import KalmanFilter

    z = measurement(face)
    r, _ = noise(z, config)
    kf = KalmanFilter(dim_x=_DIM_X, dim_z=DIM_Z)
    kf.F = _TRANSITION.copy()
    kf.H = _MEASURE.copy()
    kf.x = np.concatenate([z, np.zeros(DIM_Z)])[:, None]
    velocity_var = (0.05 * face_size(z)) ** 2
    kf.P = np.diag(np.concatenate([np.diag(r), np.full(DIM_Z, velocity_var)]))
    return kf, Step(frame, kf.x.copy(), kf.x.copy(), kf.P.copy(), True, face.score)


def predict(kf, steps: deque[Step], frame: int, score: float, config: FaceOptions) -> None:
    """Carry the filter to `frame` (the next one) on its motion model; a new step for it."""
    _, q = noise(kf.x[:DIM_Z, 0], config)
    kf.predict(Q=q)
    last = steps[-1]
    last.gain = last.p_post @ _TRANSITION.T @ np.linalg.inv(kf.P)
    steps.append(Step(frame, kf.x.copy(), kf.x.copy(), kf.P.copy(), False, score))


def correct(kf, steps: deque[Step], face: Face, config: FaceOptions) -> Step:
    """Update the newest step with its detection `face`; returns that step."""
    r, _ = noise(kf.x[:DIM_Z, 0], config)
    kf.update(measurement(face)[:, None], R=r)
    step = steps[-1]
    step.x_post, step.p_post = kf.x.copy(), kf.P.copy()
    step.detected, step.score = True, face.score
    return step


def predicted(kf) -> np.ndarray:
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
