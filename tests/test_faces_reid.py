"""A face that vanishes for a moment (hidden, or out of the frame) and comes back keeps its track
id: the tracker recognises it by dlib's face descriptor and by where it could have moved."""

from __future__ import annotations

import numpy as np
import pytest

from face_clips import (FPS, Clip, Picture, Pose, background, degrade, id_switches, match_tracks,
                        moving_face_clip, render)
from vidface.faces.detect import create_detector
from vidface.faces.identity import SAME_PERSON_DISTANCE, FaceDescriber
from vidface.faces.options import FaceOptions
from vidface.faces.track import track_faces


def _tracked(clip: Clip, **options) -> list[list]:
    frames = (Picture(rgb, i) for i, rgb in enumerate(clip.frames))
    return [faces for _, faces in track_faces(frames, create_detector(), FaceOptions(**options))]


def _ids(tracked: list[list]) -> list[int]:
    """Track ids in order of first appearance."""
    seen: list[int] = []
    for faces in tracked:
        seen += [face.track_id for face in faces if face.track_id not in seen]
    return seen


def _leaving_and_returning_clip(n_frames: int = 80, width: int = 320, height: int = 240) -> Clip:
    """One head moving right, wholly out of the frame, and back in (42 frames with a part of the
    face outside, 1.7 s)."""
    rng = np.random.default_rng(1)
    base = background(width, height)
    frames, truth = [], []
    for i in range(n_frames):
        t = i / (n_frames - 1)
        rgb, (points,) = render(base, [Pose(width * (0.45 + 0.75 * np.sin(np.pi * t)), height * 0.5, 0.55, 0.0)])
        frames.append(degrade(rgb, rng))
        inside = points[:, 0].max() < width and points[:, 0].min() > 0
        truth.append({0: points} if inside else {})
    return Clip(frames, truth)


@pytest.mark.parametrize("hidden", [10, 40])
def test_a_face_hidden_for_a_while_keeps_its_id(hidden: int) -> None:
    clip = moving_face_clip(40 + hidden, occluded=tuple(range(20, 20 + hidden)))
    assert len(_ids(_tracked(clip, reid_window=0))) == 2  # without re-identification the face comes back new
    tracked = _tracked(clip)
    assert len(_ids(tracked)) == 1
    path = match_tracks(clip.truth, tracked)[0]
    assert id_switches(path) == 0 and path[-1] is not None


def test_a_face_that_leaves_the_frame_and_comes_back_keeps_its_id() -> None:
    clip = _leaving_and_returning_clip()
    outside = [i for i, marks in enumerate(clip.truth) if not marks]
    assert FPS <= len(outside) <= 2 * FPS  # out for a while, within the default window of 2 s
    assert len(_ids(_tracked(clip, reid_window=0))) == 2
    tracked = _tracked(clip)
    assert len(_ids(tracked)) == 1
    assert tracked[outside[-1] + 8] and tracked[outside[0] - 8]


def test_a_face_gone_longer_than_the_window_comes_back_new() -> None:
    clip = moving_face_clip(90, occluded=tuple(range(20, 70)))  # 2 s hidden
    assert len(_ids(_tracked(clip, reid_window=1.0))) == 2
    assert len(_ids(_tracked(clip, reid_window=3.0))) == 1


def test_one_face_in_two_clips_is_one_person() -> None:
    """The same face in two clips (moved, scaled, turned, degraded) is within SAME_PERSON_DISTANCE."""
    detector = create_detector()
    describer = FaceDescriber()
    one, two = moving_face_clip(40, seed=0).frames[5], moving_face_clip(40, seed=3).frames[30]
    vectors = [describer.describe(rgb, detector.detect(rgb)[0].box) for rgb in (one, two)]
    assert vectors[0].shape == (128,)
    assert np.linalg.norm(vectors[0] - vectors[1]) < SAME_PERSON_DISTANCE


def _three_shots_clip(shot: int = 20, width: int = 320, height: int = 240) -> Clip:
    """Shot 1: the head on a soft background; shot 2: a photo with no face; shot 3: the head
    again, elsewhere and smaller, on the soft background."""
    rng = np.random.default_rng(2)
    soft, photo = background(width, height), background(width, height, "coffee")
    frames, truth = [], []
    for i in range(3 * shot):
        if shot <= i < 2 * shot:
            frames.append(degrade(photo, rng))
            truth.append({})
            continue
        pose = Pose(width * 0.35, height * 0.5, 0.6, 0.0) if i < shot else Pose(width * 0.65, height * 0.45, 0.5, 8.0)
        rgb, (points,) = render(soft, [pose])
        frames.append(degrade(rgb, rng))
        truth.append({0: points})
    return Clip(frames, truth, cut=shot)


def test_one_person_in_shots_one_and_three_has_one_identity() -> None:
    clip = _three_shots_clip()
    tracked = _tracked(clip)
    shot_one, shot_three = tracked[5], tracked[-5]
    assert len(shot_one) == 1 and len(shot_three) == 1
    assert shot_one[0].track_id != shot_three[0].track_id  # a cut ends every track
    assert shot_one[0].identity == shot_three[0].identity == 0
