"""Early in a run on a CPU, `vidface restore` says how long the run takes: faces counted by the
detector on sampled frames, seconds per face measured on the run's own first batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from face_clips import moving_face_clip
from media import write_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from vidface.estimate import Estimate, RunEstimate, describe, duration, sampled_faces
from vidface.faces.detect import ScaledDetector, create_detector, first_pass
from vidface.faces.selection import SelectedFaces
from vidface.pipeline import plan_transcode
from vidface.plan import TimeRange
from vidface.restore import RestoreStats

FRAMES = 24
FACE_FREE = tuple(range(12))  # the face arrives halfway


def _clip(tmp_path: Path) -> Path:
    clip = moving_face_clip(FRAMES, 256, 192, face_free=FACE_FREE)
    return write_video(tmp_path / "in.mp4", frames=FRAMES, size=(256, 192), images=np.stack(clip.frames))


def test_faces_are_counted_on_frames_sampled_over_the_range(tmp_path: Path) -> None:
    plan = plan_transcode(_clip(tmp_path), tmp_path / "out.mp4")
    faces, busiest = sampled_faces(plan, create_detector())
    assert 10 <= faces <= 14  # one face in half of the 24 frames
    assert busiest >= len(FACE_FREE)
    assert sampled_faces(plan, create_detector(), sequential=0) == (faces, busiest)  # each sample by a seek
    # The run's estimate counts with the first pass alone: the same faces, without the refinement.
    counter = first_pass(create_detector())
    assert isinstance(counter, ScaledDetector) and first_pass(counter) is counter
    assert sampled_faces(plan, counter) == (faces, busiest)


def test_faces_the_selection_chose_are_counted_not_sampled(tmp_path: Path) -> None:
    """With --faces, the estimate counts the faces the selection pass chose (output frame indices
    in the selection, input indices in the estimate: a --start range shifts them) and samples
    nothing: its detector is never called. A face's time is its crops' (two with --fields)."""
    class Untouched:
        def detect(self, rgb):
            raise AssertionError("the selection's faces are counted, not sampled")

    box = np.array([[10.0, 10.0, 50.0, 50.0]])
    selected = SelectedFaces({3: np.concatenate([box, box + 60]), 4: box, 9: box})
    plan = plan_transcode(_clip(tmp_path), tmp_path / "out.mp4", time_range=TimeRange(start=0.25))
    assert plan.first_frame == 6
    stats = RestoreStats(model_seconds=2.0, model_faces=4)
    found = RunEstimate(plan, Untouched(), stats, selected).ready()
    assert found == Estimate(frames=plan.frame_count, faces=4, seconds_per_face=0.5, busiest=9)
    # field by field (--fields), each face of a frame takes two of the model's crops
    by_fields = RestoreStats(model_seconds=2.0, model_faces=4, crops_per_face=2)
    assert RunEstimate(plan, Untouched(), by_fields, selected).ready().seconds_per_face == 1.0
    nobody = RunEstimate(plan, Untouched(), RestoreStats(), SelectedFaces()).ready()
    assert nobody is not None and nobody.faces == 0


def test_a_long_run_suggests_a_preview_where_the_faces_are(tmp_path: Path) -> None:
    plan = plan_transcode(_clip(tmp_path), tmp_path / "out.mp4")
    long = Estimate(frames=FRAMES, faces=12, seconds_per_face=30.0, busiest=18)
    line = describe(long, plan, "CPU")
    assert line.startswith("restoring on the CPU takes about 6 min 00 s: ~12 faces in 24 frames at 30.0 s per face")
    start = float(plan.info.video.pts[18] * plan.info.video.time_base)
    assert f"--start {start:.1f} --duration" in line
    preview = float(line.rsplit("--duration ", 1)[1])
    faces_in_preview = preview * 24 * 12 / FRAMES  # 24 fps, half the frames with a face
    assert faces_in_preview * 30.0 <= 120.0 + 30.0  # about two minutes of work, a face more at most
    short = Estimate(frames=FRAMES, faces=12, seconds_per_face=0.5, busiest=18)
    assert "--start" not in describe(short, plan, "CPU")
    assert long.seconds_left(4) == 8 * 30.0 and long.seconds_left(20) == 0
    assert describe(Estimate(frames=FRAMES, faces=0, seconds_per_face=0.0, busiest=0), plan, "CPU").startswith(
        "no faces found")


def test_durations_read_as_a_person_would_say_them() -> None:
    assert [duration(s) for s in (45, 450, 7500)] == ["45 s", "7 min 30 s", "2 h 05 min"]


def test_restore_on_a_cpu_says_how_long_it_takes(cli, tmp_path: Path, tiny_osdface) -> None:
    source = _clip(tmp_path)
    code, out, err = cli("restore", source, tmp_path / "out.mp4", "--weights", tiny_osdface.release,
                         "--base", tiny_osdface.base, "--device", "cpu", "--no-progress")
    assert code == 0, err
    line = next(line for line in err.splitlines() if "restoring on the CPU takes about" in line)
    estimated = int(line.split("~")[1].split()[0])
    restored = int(out.split(" faces restored")[0].rsplit(" ", 1)[1])
    assert abs(estimated - restored) <= 3, (line, out)
    code, _, err = cli("restore", source, tmp_path / "quiet.mp4", "--weights", tiny_osdface.release,
                       "--base", tiny_osdface.base, "--device", "cpu", "-q")
    assert code == 0 and "takes about" not in err
