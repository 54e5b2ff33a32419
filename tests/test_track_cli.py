"""`vidface track`: QA video and JSON Lines tracks through the real transcode path."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from face_clips import moving_face_clip
from media import write_video


@pytest.fixture(scope="module")
def clip():
    return moving_face_clip(16, 320, 240, face_free=(12, 13, 14, 15))


def read_tracks(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("rotation", [0, 90])
def test_track_writes_a_qa_video_and_one_json_line_per_frame(cli, tmp_path: Path, clip, rotation: int) -> None:
    stored = [np.ascontiguousarray(np.rot90(f, k=rotation // 90)) for f in clip.frames]
    source = write_video(tmp_path / "in.mp4", frames=len(stored), size=stored[0].shape[1::-1],
                         images=np.stack(stored), audio="aac", rotation=rotation)
    code, out, err = cli("track", source, tmp_path / "out.mp4", "--tracks", tmp_path / "t.jsonl", "--no-progress")
    assert code == 0, err
    assert "1 face tracks" in out
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].frames == 16 and len(container.streams.audio) == 1
    with av.open(str(source)) as container:
        source_pts = sorted(f.pts for f in container.decode(video=0))
    lines = read_tracks(tmp_path / "t.jsonl")
    assert [line["frame"] for line in lines] == list(range(16))
    assert [line["pts"] for line in lines] == source_pts
    assert set(lines[0]) == {"frame", "pts", "time", "faces"}
    for line, truth in zip(lines, clip.truth):
        if not truth:
            assert line["faces"] == []
            continue
        (face,) = line["faces"]
        assert set(face) == {"track", "identity", "box", "landmarks", "score", "detected"}
        assert face["track"] == 0 and face["identity"] == 0 and face["detected"] is True and 0 < face["score"] <= 1
        marks = np.array(face["landmarks"])
        assert marks.shape == (5, 2)
        # displayed-frame pixels: the clip's own coordinates, whatever the stored rotation
        assert np.linalg.norm(marks - truth[0], axis=1).mean() < 3.0
        x1, y1, x2, y2 = face["box"]
        assert x1 < marks[:, 0].min() and marks[:, 0].max() < x2 and y1 < marks[:, 1].min() < y2


def test_track_refuses_to_overwrite_and_leaves_nothing(cli, tmp_path: Path, clip) -> None:
    source = write_video(tmp_path / "in.mp4", frames=4, size=(320, 240), images=np.stack(clip.frames[:4]))
    (tmp_path / "t.jsonl").write_text("keep\n")
    code, _, err = cli("track", source, tmp_path / "out.mp4", "--tracks", tmp_path / "t.jsonl")
    assert code == 1 and "t.jsonl" in err and "-y" in err and err.count("\n") == 1
    assert (tmp_path / "t.jsonl").read_text() == "keep\n" and not (tmp_path / "out.mp4").exists()
    code, _, err = cli("track", source, tmp_path / "out.mp4", "--tracks", tmp_path / "out.mp4")
    assert code == 1 and "--tracks" in err
    code, _, err = cli("track", source, tmp_path / "out.mp4", "--detect-every", "0")
    assert code == 2 and "--detect-every" in err
    code, _, err = cli("track", source, tmp_path / "out.mp4", "--device", "cuda:99")  # the detector's device
    assert code == 1 and "'cuda:99'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "t.jsonl"]
