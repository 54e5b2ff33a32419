"""Provenance: every restored OUT carries a vidface tag and a sidecar that names the pixels the
model replaced, the same whether the run was interrupted or not."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from face_clips import moving_face_clip
from media import read_video, write_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from vidface.api import load_restorer
from vidface.config import load_settings
from vidface.provenance import (Provenance, TrackNumbering, container_tags, entry_line, read_tag, sidecar_path,
                                 weights_digest)

SIZE = (256, 192)
FRAMES = 12


def _settings(tiny, **overrides):
    return load_settings(overrides={"model.weights": str(tiny.release), "model.base": str(tiny.base),
                                    "model.device": "cpu", "model.dtype": "fp32", "model.batch_size": 4,
                                    **overrides})


def _face_clip(path: Path, **options) -> Path:
    clip = moving_face_clip(FRAMES, *SIZE, face_free=(10, 11))
    return write_video(path, frames=FRAMES, size=SIZE, images=np.stack(clip.frames), audio="aac", **options)


def _planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's Y, U and V samples as decoded (yuv420p), without line padding."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.format.name == "yuv420p"
            frames.append([np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
                           for plane in frame.planes])
    return frames


def test_the_sidecar_names_every_pixel_the_model_replaced(tmp_path: Path, tiny_osdface) -> None:
    """Lossless outputs of the restorer and of `--model none` differ exactly inside the regions
    the sidecar lists: not a sample outside them, some inside each; frames it leaves out are
    unchanged. Each entry's time is its frame's presentation time, as in IN."""
    source = _face_clip(tmp_path / "in.mp4")
    settings = _settings(tiny_osdface, **{"encode.codec": "ffv1"})
    restorer = load_restorer(settings)
    restorer.restore(source, tmp_path / "out.mkv")
    load_restorer(settings, model="none").restore(source, tmp_path / "none.mkv")
    assert not sidecar_path(tmp_path / "none.mkv").exists()  # nothing altered, nothing to record

    sidecar = json.loads(sidecar_path(tmp_path / "out.mkv").read_text())
    entries = {entry["frame"]: entry for entry in sidecar["frames"]}
    assert sidecar["frames_replaced"] == len(entries) == restorer.stats.frames_with_faces >= FRAMES - 4
    assert sidecar["tag"] == restorer.provenance.tag and sidecar["output"] == "out.mkv"
    assert sidecar["input"] == {"name": "in.mp4", "size": source.stat().st_size, "first_frame": 0, "frames": FRAMES}
    times = read_video(source).frame_pts
    restored, untouched = _planes(tmp_path / "out.mkv"), _planes(tmp_path / "none.mkv")
    for index, (new, old) in enumerate(zip(restored, untouched, strict=True)):
        entry = entries.get(index, {"faces": []})
        regions = [face["region"] for face in entry["faces"]]
        if index in entries:
            assert entry["time"] == pytest.approx(float(times[index]), abs=1e-6)
        for plane, (a, b) in enumerate(zip(new, old)):
            step = 1 if plane == 0 else 2  # 4:2:0: a chroma sample covers 2x2 pixels
            listed = np.zeros(a.shape, bool)
            for x0, y0, x1, y1 in regions:
                listed[y0 // step:-(-y1 // step), x0 // step:-(-x1 // step)] = True
            changed = a != b
            assert not (changed & ~listed).any(), f"frame {index} plane {plane} changed outside the sidecar's regions"
        for face, (x0, y0, x1, y1) in zip(entry["faces"], regions):
            assert (new[0] != old[0])[y0:y1, x0:x1].any()
            bx0, by0, bx1, by1 = face["box"]
            assert x0 <= bx0 and y0 <= by0 and bx1 <= x1 and by1 <= y1  # the face is inside what changed
            assert face["track"] == 0 and face["identity"] == 0


@pytest.mark.parametrize("extension", ["mp4", "mkv"])
def test_out_carries_the_tag_and_keeps_the_inputs_tags(extension: str, tmp_path: Path, tiny_osdface, cli) -> None:
    """MP4 keeps only the tags it knows: the vidface tag becomes a line of the comment, after
    IN's own; Matroska gets a tag of its own. `vidface probe` shows it and the sidecar."""
    source = _face_clip(tmp_path / f"in.{extension}", metadata={"title": "Reel 4", "comment": "scanned 1987"})
    restorer = load_restorer(_settings(tiny_osdface))
    output = tmp_path / f"out.{extension}"
    restorer.restore(source, output)
    code, out, err = cli("probe", output, "--json")
    assert code == 0, err
    report = json.loads(out)
    tags = {key.lower(): value for key, value in report["metadata"].items()}
    assert tags["title"] == "Reel 4" and tags["comment"].splitlines()[0] == "scanned 1987"
    assert report["provenance"]["tag"] == restorer.provenance.tag
    assert report["provenance"]["sidecar"] == str(sidecar_path(output))
    assert report["provenance"]["frames_replaced"] == restorer.stats.frames_with_faces
    tag = restorer.provenance.tag
    assert tag.startswith("vidface ") and "model osdface" in tag
    assert f"weights sha256:{restorer.provenance.details['weights']['sha256']}" in tag
    code, out, _ = cli("probe", output)
    assert f"restored by: {tag}" in out.splitlines()
    code, out, _ = cli("probe", source)
    assert "restored by: no vidface tag" in out.splitlines()


def test_a_resumed_run_writes_the_sidecar_of_an_uninterrupted_one(tmp_path: Path, tiny_osdface) -> None:
    source = _face_clip(tmp_path / "in.mkv")
    restorer = load_restorer(_settings(tiny_osdface))
    restorer.restore(source, tmp_path / "reference.mkv", segment_frames=4)
    processor = restorer.processor
    calls = []

    def interrupted(frames):  # Ctrl-C in the third segment: two are kept
        calls.append(1)
        for frame in processor(frames):
            if len(calls) == 3:
                raise KeyboardInterrupt
            yield frame

    restorer.processor = interrupted
    with pytest.raises(KeyboardInterrupt):
        restorer.restore(source, tmp_path / "out.mkv", segment_frames=4)
    assert not sidecar_path(tmp_path / "out.mkv").exists()
    restorer.processor = processor
    assert restorer.restore(source, tmp_path / "out.mkv", segment_frames=4).resumed == 8
    reference = json.loads(sidecar_path(tmp_path / "reference.mkv").read_text())
    resumed = json.loads(sidecar_path(tmp_path / "out.mkv").read_text())
    assert reference.pop("output") == "reference.mkv" and resumed.pop("output") == "out.mkv"
    assert resumed == reference and len(resumed["frames"]) >= 8
    # each segment's tracker numbers from 0; the sidecar names the one face once throughout
    assert {(face["track"], face["identity"]) for entry in resumed["frames"] for face in entry["faces"]} == {(0, 0)}


def test_tracks_are_numbered_across_segments() -> None:
    """A face that runs across a segment edge keeps its numbers; a face new at the edge (no
    overlap with one of the frame before) and a face appearing later get new ones."""
    def line(frame: int, *faces: tuple[int, int, float]) -> str:
        return entry_line({"frame": frame, "faces": [{"track": track, "identity": person, "box": [x, 10, x + 40, 60]}
                                                     for track, person, x in faces]})

    numbering = TrackNumbering()
    first = [json.loads(text) for text in numbering.segment([line(0, (0, 0, 10.0), (1, 1, 200.0)),
                                                             line(1, (0, 0, 12.0), (1, 1, 202.0))])]
    second = [json.loads(text) for text in numbering.segment([line(2, (0, 0, 203.0), (1, 1, 100.0)),
                                                              line(3, (0, 0, 204.0), (2, 0, 300.0))])]
    assert [[(f["track"], f["identity"]) for f in entry["faces"]] for entry in first] == [[(0, 0), (1, 1)]] * 2
    # local track 0 (person 0) is the face that was track 1 (person 1); local track 1 is new
    assert [[(f["track"], f["identity"]) for f in entry["faces"]] for entry in second] == [
        [(1, 1), (2, 2)], [(1, 1), (3, 1)]]


def test_a_preview_records_frames_and_times_of_out(tmp_path: Path, tiny_osdface) -> None:
    """A --start/--duration preview: entries count frames from OUT's start; times are IN's."""
    source = _face_clip(tmp_path / "in.mkv")
    restorer = load_restorer(_settings(tiny_osdface))
    plan = restorer.plan(source, tmp_path / "out.mkv", time_range=_range(0.125, 0.25))
    restorer.restore(plan)
    sidecar = json.loads(sidecar_path(tmp_path / "out.mkv").read_text())
    assert sidecar["input"]["first_frame"] == plan.first_frame == 3
    times = read_video(source).frame_pts[plan.first_frame:plan.stop_frame]
    assert len(times) == len(read_video(tmp_path / "out.mkv").frame_pts) == 6
    frames = [entry["frame"] for entry in sidecar["frames"]]
    assert len(frames) >= 4 and set(frames) <= set(range(plan.frame_count))
    assert [entry["time"] for entry in sidecar["frames"]] == pytest.approx(
        [float(times[frame]) for frame in frames], abs=1e-6)  # IN's, as vidface track gives them


def _range(start: float, duration: float):
    from vidface.plan import TimeRange

    return TimeRange(start, duration)


def test_tags_round_trip_in_every_kind_of_container() -> None:
    provenance = Provenance({"vidface": "1.0", "model": "osdface", "weights": {"sha256": "a" * 64},
                             "settings_sha256": "b" * 64})
    assert provenance.tag == f"vidface 1.0; model osdface; weights sha256:{'a' * 64}; settings sha256:{'b' * 64}"
    assert read_tag(container_tags("matroska,webm", provenance, {"COMMENT": "x"})) == provenance.tag
    kept = container_tags("mp4", provenance, {"COMMENT": "line one\nline two"})
    assert kept == {"COMMENT": f"line one\nline two\n{provenance.tag}"} and read_tag(kept) == provenance.tag
    assert read_tag(container_tags("avi", provenance, {})) == provenance.tag
    assert read_tag({"comment": "vidface is not a tag here"}) is None and read_tag({}) is None


def test_weights_are_hashed_once_per_machine(tmp_path: Path, tiny_osdface) -> None:
    """The hashes are kept by path, size and time: an unchanged file is not read again, a
    touched one is."""
    from vidface.weights import WeightsLocation

    location = WeightsLocation(tiny_osdface.release, tiny_osdface.base)
    first = weights_digest(location)
    lora = Path(tiny_osdface.release) / "pytorch_lora_weights.safetensors"
    assert first["files"]["release/pytorch_lora_weights.safetensors"] == hashlib.sha256(lora.read_bytes()).hexdigest()
    copy = tmp_path / "release"
    copy.mkdir()
    for file in Path(tiny_osdface.release).iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    moved = WeightsLocation(copy, tiny_osdface.base)
    assert weights_digest(moved)["sha256"] == first["sha256"]
    stamp = os.stat(copy / lora.name)
    data = bytearray((copy / lora.name).read_bytes())
    data[-1] ^= 1  # same size, same time: taken from the cache, not read
    (copy / lora.name).write_bytes(bytes(data))
    os.utime(copy / lora.name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert weights_digest(moved)["sha256"] == first["sha256"]
    os.utime(copy / lora.name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    assert weights_digest(moved)["sha256"] != first["sha256"]
