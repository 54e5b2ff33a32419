"""Tracking and fixed-lag smoothing, fed with the true landmarks of the synthetic clips plus
detector-like noise (fast, exact control), and one end-to-end run through the stage."""

from __future__ import annotations

import numpy as np
import pytest

from face_clips import Picture, Pose, crossing_faces_clip, id_switches, jitter, match_tracks, moving_face_path
from vidface.errors import InputError
from vidface.faces.detect import Face
from vidface.faces.options import FaceOptions
from vidface.faces.track import FaceTracker, track_faces


def noisy_face(points: np.ndarray, rng: np.random.Generator, noise: float = 0.02, score: float = 0.9) -> Face:
    """A detection of the face whose true landmarks are `points`, with Gaussian landmark noise
    of `noise` × the face size (about 2.3 eye distances), as a detector's error scales."""
    eyes = float(np.linalg.norm(points[1] - points[0]))
    marks = points + rng.normal(0, noise * 2.3 * eyes, points.shape)
    centre = points.mean(axis=0)
    half = np.array([1.0, 1.35]) * eyes
    box = np.concatenate([centre - half, centre + half]) + rng.normal(0, 0.04 * 2.3 * eyes, 4)
    return Face(box, marks, score)


def path_landmarks(poses: list[Pose]) -> np.ndarray:
    from face_clips import head_sprite

    _, _, sprite_marks = head_sprite()
    return np.stack([sprite_marks @ p.affine()[:, :2].T + p.affine()[:, 2] for p in poses])


def run_tracker(detections: list[list[Face] | None], config: FaceOptions = FaceOptions(),
                cuts: set[int] = frozenset()) -> list[list]:
    tracker = FaceTracker(config)
    out: list[tuple[int, list]] = []
    for i, faces in enumerate(detections):
        out.extend(tracker.update(faces, cut=i in cuts))
    out.extend(tracker.finish())
    assert [index for index, _ in out] == list(range(len(detections)))  # every frame, in order
    return [faces for _, faces in out]


@pytest.fixture(scope="module")
def path() -> np.ndarray:
    return path_landmarks(moving_face_path(80, 640, 480, scale=1.0))


def test_smoothing_removes_jitter_and_error(path: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    raw = [noisy_face(points, rng) for points in path]
    tracked = run_tracker([[face] for face in raw])
    assert all(len(faces) == 1 and faces[0].track_id == 0 and faces[0].detected for faces in tracked)
    smoothed = np.stack([faces[0].landmarks for faces in tracked])
    measured = np.stack([face.landmarks for face in raw])
    assert jitter(smoothed) / jitter(measured) < 0.33
    assert np.abs(smoothed - path).mean() < 0.6 * np.abs(measured - path).mean()


def test_fixed_lag_uses_future_frames(path: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    detections = [[noisy_face(points, rng)] for points in path]
    errors = {}
    for lag in (0, 8):
        tracked = run_tracker(detections, FaceOptions(lag=lag))
        # Without look-ahead a track is reported only from its confirming (second) detection.
        errors[lag] = np.abs(np.stack([f[0].landmarks for f in tracked[1:]]) - path[1:]).mean()
        assert all(len(f) == 1 for f in tracked[1:]) and len(tracked[0]) == (lag > 0)
    assert errors[8] < 0.8 * errors[0]  # a causal filter lags behind the motion and keeps noise


def test_coasts_through_missed_frames_without_dropping_the_face(path: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    missed = set(range(30, 34))
    detections = [[] if i in missed else [noisy_face(p, rng)] for i, p in enumerate(path)]
    tracked = run_tracker(detections, FaceOptions(max_misses=5))
    assert all(len(faces) == 1 and faces[0].track_id == 0 for faces in tracked)
    assert [faces[0].detected for faces in tracked[28:36]] == [True, True, False, False, False, False, True, True]
    eyes = np.linalg.norm(path[32, 1] - path[32, 0])
    assert np.linalg.norm(tracked[32][0].landmarks - path[32], axis=1).mean() < 0.15 * eyes


def test_a_face_gone_longer_than_max_misses_ends_its_track(path: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    gone = set(range(30, 45))
    detections = [[] if i in gone else [noisy_face(p, rng)] for i, p in enumerate(path)]
    tracked = run_tracker(detections, FaceOptions(max_misses=3, lag=8))
    assert all(not tracked[i] for i in gone)  # no predicted ghost where the face was gone
    assert {f.track_id for f in tracked[29]} == {0} and {f.track_id for f in tracked[45]} == {1}


def test_detect_every_k_frames_predicts_between(path: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    detections = [[noisy_face(p, rng)] if i % 3 == 0 else None for i, p in enumerate(path)]
    tracked = run_tracker(detections, FaceOptions(detect_every=3))
    assert len(path) % 3 == 2  # the clip ends on two frames the detector never looked at
    assert all(len(faces) == 1 and faces[0].track_id == 0 for faces in tracked)
    assert [f[0].detected for f in tracked[:6]] == [True, False, False, True, False, False]
    smoothed = np.stack([f[0].landmarks for f in tracked])
    eyes = np.linalg.norm(path[0, 1] - path[0, 0])
    assert np.linalg.norm(smoothed - path, axis=2).mean() < 0.1 * eyes


def test_single_false_detection_is_never_reported(path: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    detections = [[noisy_face(p, rng)] for p in path]
    detections[20] = detections[20] + [noisy_face(path[20] + (300.0, 0.0), rng, score=0.55)]
    tracked = run_tracker(detections, FaceOptions(min_hits=2))
    assert all(len(faces) == 1 for faces in tracked)


def test_a_shot_cut_ends_every_track(path: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    tracked = run_tracker([[noisy_face(p, rng)] for p in path], cuts={40})
    assert {f.track_id for f in tracked[39]} == {0} and {f.track_id for f in tracked[40]} == {1}
    assert all(len(faces) == 1 for faces in tracked)


def test_crossing_faces_keep_their_ids() -> None:
    clip = crossing_faces_clip(n_frames=40)
    rng = np.random.default_rng(8)
    detections = [[noisy_face(points, rng) for points in marks.values()] for marks in clip.truth]
    tracked = run_tracker(detections)
    paths = match_tracks(clip.truth, tracked)
    assert sorted(paths) == [0, 1]
    assert all(id_switches(p) == 0 for p in paths.values())
    assert {p[0] for p in paths.values()} == {0, 1}
    assert all(None not in p for p in paths.values())  # both faces reported in every frame


def test_memory_stays_flat_and_ids_are_per_tracker(path: np.ndarray) -> None:
    rng = np.random.default_rng(9)
    config = FaceOptions(lag=5)
    tracker = FaceTracker(config)
    for points in np.concatenate([path] * 5):
        tracker.update([noisy_face(points, rng)])
        assert all(len(t.steps) <= config.lag + 1 for t in tracker._tracks)
    assert len(tracker._tracks) == 1
    other = FaceTracker(config)
    for points in path[:3]:
        other.update([noisy_face(points, rng)])
    assert [t.track_id for t in other._tracks] == [0]


@pytest.mark.parametrize("field, value", [("detect_every", 0), ("min_hits", 0), ("lag", -1), ("detect_motion", 0.0)])
def test_bad_settings_name_the_value(field: str, value: int) -> None:
    with pytest.raises(InputError, match=rf"faces\.{field} must be"):
        FaceOptions(**{field: value})


class _CountingDetector:
    """Sees the clip's truth (so the stage is tested without a network) and counts its calls."""

    def __init__(self, truth: dict[int, dict[int, np.ndarray]]) -> None:
        self.truth, self.calls = truth, []
        self.rng = np.random.default_rng(10)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        index = int(rgb[0, 0, 0])
        self.calls.append(index)
        return [noisy_face(p, self.rng) for p in self.truth.get(index, {}).values()]


def _indexed_frames(count: int) -> list[Picture]:
    """Plain grey frames carrying their index in pixel (0, 0) for _CountingDetector; no cuts."""
    frames = []
    for i in range(count):
        rgb = np.full((48, 64, 3), 100, np.uint8)
        rgb[0, 0, 0] = i
        frames.append(Picture(rgb, i))
    return frames


def _tracked_holding_at_most(held: int, frames: list, detector, config: FaceOptions) -> list:
    """track_faces' output, checking that it never holds more than `held` frames (look-ahead)."""
    consumed = []

    def source():
        for frame in frames:
            consumed.append(frame)
            yield frame

    out = []
    for frame, faces in track_faces(source(), detector, config):
        assert len(consumed) - len(out) <= held
        out.append((frame, faces))
    return out


def test_stage_yields_every_frame_in_order_with_bounded_look_ahead(path: np.ndarray) -> None:
    frames = _indexed_frames(30)
    detector = _CountingDetector({i: {0: path[i] / 10} for i in range(30)})
    config = FaceOptions(detect_every=2, detect_motion=None, lag=4)
    out = _tracked_holding_at_most(config.lag + 1, frames, detector, config)
    assert [frame for frame, _ in out] == frames
    # frame 1 too: the new track is not confirmed yet (its motion is unknown)
    assert detector.calls == [0, 1, *range(3, 30, 2)]
    assert all(len(faces) == 1 for _, faces in out)


@pytest.mark.parametrize("speed, every_frame", [(0.01, False), (0.12, True)])
def test_detect_every_gives_way_to_fast_motion(path: np.ndarray, speed: float, every_frame: bool) -> None:
    """With detect_every 2, a face drifting at `speed` face sizes per frame is detected in every
    other frame when slow, and in every frame (after its track's first detections) when fast.
    Frames 0 and 1 are detected either way (a new track, motion unknown)."""
    start = path[0] / 2
    size = 2.3 * float(np.linalg.norm(start[1] - start[0]))
    moving = {i: {0: start + (speed * size * i, 0.0)} for i in range(30)}
    frames = _indexed_frames(30)
    detector = _CountingDetector(moving)
    out = list(track_faces(iter(frames), detector, FaceOptions(detect_every=2, detect_motion=0.05, lag=4)))
    assert len(out) == 30 and all(len(faces) == 1 for _, faces in out)
    later = [i for i in detector.calls if i >= 6]
    assert later == (list(range(6, 30)) if every_frame else list(range(7, 30, 2)))


@pytest.mark.parametrize("every, appears", [(2, 5), (3, 4), (3, 5)])
def test_a_face_appearing_between_detector_runs_is_tracked_from_its_first_frame(
        path: np.ndarray, every: int, appears: int) -> None:
    """With detect_every > 1, a face first seen by a detector run is looked for in the frames
    the detector skipped before it (still held for the look-ahead), so it is reported from the
    frame it appeared in; a face already tracked keeps its track and no frame is detected twice."""
    steady, arriving = path[0] / 2, path[0] / 2 + (80.0, 0.0)
    truth = {i: {0: steady, **({1: arriving} if i >= appears else {})} for i in range(20)}
    frames = _indexed_frames(20)
    detector = _CountingDetector(truth)
    out = list(track_faces(iter(frames), detector, FaceOptions(detect_every=every, detect_motion=None, lag=4)))
    ids = [sorted(f.track_id for f in faces) for _, faces in out]
    assert ids == [[0]] * appears + [[0, 1]] * (20 - appears)
    assert len(detector.calls) == len(set(detector.calls)) < 15  # frames skipped, none detected twice


@pytest.mark.parametrize("every, gone, lag", [(2, 7, 8), (2, 8, 8), (3, 10, 8), (3, 11, 8), (3, 12, 8),
                                             (3, 10, 4), (3, 11, 4), (2, 7, 1)])
def test_a_face_leaving_between_detector_runs_is_reported_until_its_last_frame(
        path: np.ndarray, every: int, gone: int, lag: int) -> None:
    """With detect_every > 1, the frames a run skipped before it missed a face are searched:
    the face is reported in each frame it is in, and never as a predicted ghost after it left,
    however short the look-ahead (frames wait, a bounded while, until the miss is settled)."""
    truth = {i: {0: path[0] / 2} for i in range(gone)}
    frames = _indexed_frames(24)
    detector = _CountingDetector(truth)
    config = FaceOptions(detect_every=every, detect_motion=None, lag=lag)
    out = _tracked_holding_at_most(max(lag, every + config.max_misses) + 1, frames, detector, config)
    assert [len(faces) for _, faces in out] == [1] * gone + [0] * (24 - gone)
    assert len(detector.calls) == len(set(detector.calls)) < 24
