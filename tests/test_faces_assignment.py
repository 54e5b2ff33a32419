"""The tracker's own minimum-cost assignment against SciPy's linear_sum_assignment, and its own
Kalman filter on motion it must follow."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from vidface.faces.assignment import min_cost_assignment
from vidface.faces.detect import Face
from vidface.faces.motion import DIM_Z, measurement, noise, predicted, start_filter
from vidface.faces.options import FaceOptions
from vidface.faces.track import _NO_MATCH


def random_costs(rng: np.random.Generator, rows: int, cols: int, kind: str) -> np.ndarray:
    if kind == "ties":  # few distinct values: many optimal assignments
        return rng.integers(0, 4, (rows, cols)).astype(float)
    cost = rng.random((rows, cols)) * 2.0  # the tracker's (1 - IoU) + landmark distance
    if kind == "gated":  # pairs outside the tracker's gates
        cost[rng.random((rows, cols)) < 0.5] = _NO_MATCH
    return cost


@pytest.mark.parametrize("kind", ["continuous", "gated", "ties"])
def test_the_assignment_is_a_minimum_cost_one(kind: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(400):
        rows, cols = (int(v) for v in rng.integers(0, 9, 2))
        cost = random_costs(rng, rows, cols, kind)
        got_rows, got_cols = min_cost_assignment(cost)
        want_rows, want_cols = linear_sum_assignment(cost)
        assert len(got_rows) == len(got_cols) == min(rows, cols)
        assert len(set(got_rows.tolist())) == len(got_rows) and len(set(got_cols.tolist())) == len(got_cols)
        assert (np.diff(got_rows) > 0).all()
        assert cost[got_rows, got_cols].sum() == pytest.approx(cost[want_rows, want_cols].sum(), abs=1e-9)
        if kind == "continuous":  # a single optimum: the same pairs
            assert got_rows.tolist() == want_rows.tolist() and got_cols.tolist() == want_cols.tolist()


@pytest.mark.parametrize("bad", [np.zeros(3), np.array([[0.0, np.inf]]), np.array([[np.nan]])],
                         ids=["one dimension", "infinite", "nan"])
def test_a_cost_matrix_it_cannot_solve_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        min_cost_assignment(bad)


def test_the_filter_follows_steady_motion_and_stays_a_covariance() -> None:
    """Exact measurements of a face moving 3 px right and 1 px down per frame: the filter's
    prediction for the next frame converges on it, and its covariance stays symmetric and
    positive definite (the Joseph form's purpose)."""
    config = FaceOptions()
    box = np.array([100.0, 80.0, 180.0, 190.0])
    marks = np.array([[120.0, 120], [160, 120], [140, 140], [125, 165], [155, 165]])
    step = np.array([3.0, 1.0])

    def face(frame: int) -> Face:
        return Face(box + np.tile(step, 2) * frame, marks + step * frame, 0.9)

    kf, _ = start_filter(face(0), 0, config)
    errors = []
    for frame in range(1, 40):
        _, q = noise(kf.x[:DIM_Z, 0], config)
        kf.predict(q)
        r, _ = noise(kf.x[:DIM_Z, 0], config)
        kf.update(measurement(face(frame))[:, None], r)
        errors.append(np.abs(predicted(kf) - measurement(face(frame + 1))).max())
        assert np.allclose(kf.P, kf.P.T, rtol=0, atol=1e-9 * np.abs(kf.P).max())
        assert np.linalg.eigvalsh(kf.P).min() > 0
    assert errors[0] > 1.0  # it starts at rest
    assert max(errors[-10:]) < 0.05
