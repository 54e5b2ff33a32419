"""`vidface restore --faces`: only the chosen faces change (by identity label, by photo, the
largest of each shot), checked by which pixels of a lossless output differ from the input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_clips import Pose, background, degrade, head_sprite, hopper_sprite, render
from media import read_video, write_video
from restore_clips import face_core, face_region
from resume_tools import same_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from vidface.faces.selection import FaceSelection
from vidface.provenance import sidecar_path

FRAMES, SIZE = 16, (320, 240)
PEOPLE = {"astronaut": Pose(96, 120, 0.45, 0.0), "hopper": Pose(224, 118, 0.6, 0.0)}  # Hopper is larger


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A lossless clip of the astronaut (left, smaller) and Grace Hopper (right, larger), and
    their true landmarks."""
    rng = np.random.default_rng(5)
    rgb, points = render(background(*SIZE), list(PEOPLE.values()), [head_sprite(), hopper_sprite()])
    images = np.stack([degrade(rgb, rng) for _ in range(FRAMES)])
    path = write_video(tmp_path_factory.mktemp("selection") / "in.mkv", frames=FRAMES, size=SIZE, codec="ffv1",
                       pix_fmt="yuv444p", images=images, audio="aac")
    return path, dict(zip(PEOPLE, points))


def _restore(cli, tiny, source: Path, output: Path, *flags) -> tuple[int, str]:
    code, _, err = cli("restore", source, output, "--weights", tiny.release, "--base", tiny.base, "--device", "cpu",
                       "--codec", "ffv1", "--no-progress", *flags)
    return code, err


def _changed(source: Path, output: Path, landmarks: np.ndarray) -> tuple[float, bool]:
    """(mean change in the face's core over the frames, whether any pixel outside the face's
    region changed in any frame)."""
    before, after = (np.stack(read_video(path, images=True).images).astype(int) for path in (source, output))
    core = face_core(landmarks, SIZE[::-1])
    return float(np.abs(after - before)[:, core].mean()), bool((after != before)[:, ~face_region(landmarks, SIZE[::-1])].any())


def _only(source: Path, output: Path, people: dict[str, np.ndarray], restored: str) -> None:
    for name, landmarks in people.items():
        change, _ = _changed(source, output, landmarks)
        if name == restored:
            assert change > 4, f"{name} is not restored ({change:.1f} levels)"
        else:
            assert change == 0, f"{name} changed ({change:.2f} levels)"
    before, after = (np.stack(read_video(path, images=True).images) for path in (source, output))
    inside = face_region(people[restored], SIZE[::-1])
    assert (after == before)[:, ~inside].all()  # nothing but the chosen face changed


def test_the_largest_face_of_the_shot(cli, tmp_path: Path, tiny_osdface, two_people) -> None:
    source, people = two_people
    code, err = _restore(cli, tiny_osdface, source, tmp_path / "out.mkv", "--faces", "largest")
    assert code == 0, err
    _only(source, tmp_path / "out.mkv", people, "hopper")


def test_a_person_by_the_label_vidface_track_prints(cli, tmp_path: Path, tiny_osdface, two_people) -> None:
    source, people = two_people
    code, _, err = cli("track", source, tmp_path / "qa.mkv", "--tracks", tmp_path / "t.jsonl", "--no-progress")
    assert code == 0, err
    faces = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[FRAMES // 2])["faces"]
    left = min(faces, key=lambda face: face["box"][0])  # the astronaut
    code, err = _restore(cli, tiny_osdface, source, tmp_path / "out.mkv", "--faces", str(left["identity"]))
    assert code == 0, err
    _only(source, tmp_path / "out.mkv", people, "astronaut")


def test_people_matching_a_photo(cli, tmp_path: Path, tiny_osdface, two_people) -> None:
    source, people = two_people
    rgb, _, _ = hopper_sprite()
    photo = tmp_path / "hopper.png"
    cv2.imwrite(str(photo), cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), None, fx=1.5, fy=1.5))
    code, err = _restore(cli, tiny_osdface, source, tmp_path / "out.mkv", "--faces", photo)
    assert code == 0, err
    _only(source, tmp_path / "out.mkv", people, "hopper")


def test_a_selection_that_matches_nobody_leaves_the_video_as_model_none(cli, tmp_path: Path, tiny_osdface,
                                                                       two_people, caplog) -> None:
    source, _ = two_people
    code, err = _restore(cli, tiny_osdface, source, tmp_path / "out.mkv", "--faces", "7")
    assert code == 0, err
    assert "--faces people 7 matches no face" in caplog.text + err
    code, _, err = cli("restore", source, tmp_path / "none.mkv", "--model", "none", "--codec", "ffv1", "--no-progress")
    assert code == 0, err
    same_video(tmp_path / "out.mkv", tmp_path / "none.mkv")
    assert json.loads(sidecar_path(tmp_path / "out.mkv").read_text())["frames_replaced"] == 0


def test_photos_without_exactly_one_face_are_one_line_errors(cli, tmp_path: Path, tiny_osdface, two_people) -> None:
    source, _ = two_people
    empty, both = tmp_path / "empty.png", tmp_path / "both.png"
    cv2.imwrite(str(empty), background(*SIZE))
    cv2.imwrite(str(both), read_video(source, images=True).images[0][..., ::-1])
    for photo, words in ((empty, "shows no face"), (both, "shows 2 faces"), (tmp_path / "gone.jpg", "cannot read")):
        code, err = _restore(cli, tiny_osdface, source, tmp_path / "out.mkv", "--faces", photo)
        assert code == 1 and words in err and str(photo) in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out.mkv").exists()


def test_dry_run_lists_the_people_and_which_are_restored(cli, two_people) -> None:
    source, _ = two_people
    code, out, err = cli("restore", source, "unused.mkv", "--dry-run", "--faces", "largest")
    assert code == 0, err
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("person ")]
    assert len(lines) == 2 and sum(line.endswith(": restored") for line in lines) == 1, out
    assert sum(line.endswith(": left as is") for line in lines) == 1


def test_selections_parse_and_bad_ones_are_usage_errors(cli, two_people) -> None:
    assert FaceSelection.parse("0, 3") == FaceSelection("ids", ids=(0, 3))
    assert FaceSelection.parse("a.jpg,b.png").photos == ("a.jpg", "b.png")
    assert FaceSelection.parse("largest").kind == "largest"
    source, _ = two_people
    code, _, err = cli("restore", source, "unused.mkv", "--faces", "1,,2")
    assert code == 2 and "--faces" in err
