"""A face that vanishes for a moment (hidden, or out of the frame) and comes back keeps its track
id: the tracker recognises it by dlib's face descriptor and by where it could have moved."""

from __future__ import annotations

import numpy as np
import pytest

from face_clips import (FPS, Clip, Picture, Pose, background, crossing_faces_clip, degrade, head_sprite,
                        hopper_sprite, id_switches, leaving_and_returning_clip, match_tracks, moving_face_clip,
                        render)
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


@pytest.mark.parametrize("hidden", [10, 40])
def test_a_face_hidden_for_a_while_keeps_its_id(hidden: int) -> None:
    clip = moving_face_clip(40 + hidden, occluded=tuple(range(20, 20 + hidden)))
    assert len(_ids(_tracked(clip, reid_window=0))) == 2  # without re-identification the face comes back new
    tracked = _tracked(clip)
    assert len(_ids(tracked)) == 1
    path = match_tracks(clip.truth, tracked)[0]
    assert id_switches(path) == 0 and path[-1] is not None


def test_a_face_that_leaves_the_frame_and_comes_back_keeps_its_id() -> None:
    clip = leaving_and_returning_clip()
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


def test_the_descriptor_tells_one_person_from_another() -> None:
    """The astronaut in two clips (moved, scaled, turned, degraded) is within
    SAME_PERSON_DISTANCE; Grace Hopper, drawn the same way, is not."""
    detector = create_detector()
    describer = FaceDescriber()
    hopper = crossing_faces_clip(40, people=(hopper_sprite(), hopper_sprite())).frames[0]
    pictures = [moving_face_clip(40, seed=0).frames[5], moving_face_clip(40, seed=3).frames[30], hopper]
    astronaut, again, other = (describer.describe(rgb, detector.detect(rgb)[0].box) for rgb in pictures)
    assert astronaut.shape == (128,)
    assert np.linalg.norm(astronaut - again) < SAME_PERSON_DISTANCE < np.linalg.norm(astronaut - other)


def test_two_people_crossing_keep_their_ids_and_identities() -> None:
    clip = crossing_faces_clip(60, people=(head_sprite(), hopper_sprite()))
    tracked = _tracked(clip)
    paths = match_tracks(clip.truth, tracked)
    assert [id_switches(path) for path in paths.values()] == [0, 0]
    identities = [{face.identity for faces in tracked for face in faces if face.track_id == track}
                  for track in (paths[0][0], paths[1][0])]
    assert identities in ([{0}, {1}], [{1}, {0}])


def _three_shots_clip(shot: int = 20, width: int = 320, height: int = 240) -> Clip:
    """Shot 1: the astronaut on a soft background; shot 2: Grace Hopper on a photo; shot 3: the
    astronaut again, elsewhere and smaller, on the soft background."""
    rng = np.random.default_rng(2)
    soft, photo = background(width, height), background(width, height, "coffee")
    frames, truth = [], []
    for i in range(3 * shot):
        if shot <= i < 2 * shot:
            rgb, (points,) = render(photo, [Pose(width * 0.5, height * 0.5, 0.6, 0.0)], [hopper_sprite()])
        else:
            pose = Pose(width * 0.35, height * 0.5, 0.6, 0.0) if i < shot else Pose(width * 0.65, height * 0.45, 0.5, 8.0)
            rgb, (points,) = render(soft, [pose])
        frames.append(degrade(rgb, rng))
        truth.append({0: points})
    return Clip(frames, truth, cut=shot)


def test_one_person_in_shots_one_and_three_has_one_identity() -> None:
    tracked = _tracked(_three_shots_clip())
    shots = [tracked[5], tracked[25], tracked[-5]]
    assert [len(faces) for faces in shots] == [1, 1, 1]
    assert len({faces[0].track_id for faces in shots}) == 3  # a cut ends every track
    assert [faces[0].identity for faces in shots] == [0, 1, 0]


def test_an_anamorphic_face_is_described_as_it_is_shown() -> None:
    """A 16:9 SD picture stores its faces 64:45 narrower than it shows them: described with its
    pixels' shape, a face is the shown face; described as stored, it is a narrower one."""
    import cv2

    describer = FaceDescriber()
    rgb = moving_face_clip(40, 384, 288, seed=0, degraded=False).frames[5]
    box = create_detector().detect(rgb)[0].box
    squeeze = 45 / 64
    stored = cv2.resize(rgb, (round(384 * squeeze), 288), interpolation=cv2.INTER_AREA)
    stored_box = np.asarray(box) * (squeeze, 1, squeeze, 1)
    shown = describer.describe(rgb, box)
    as_shown = describer.describe(stored, stored_box, (64 / 45, 1.0))
    as_stored = describer.describe(stored, stored_box)
    assert np.linalg.norm(as_shown - shown) < 0.5 * np.linalg.norm(as_stored - shown), (
        np.linalg.norm(as_shown - shown), np.linalg.norm(as_stored - shown))
