"""Resumable runs: killed at any point, a rerun finishes to the frames of an uninterrupted run.

Segments are tiny here (8 frames, 3 warm-up, 2 look-ahead) so a 44-frame clip has six of them;
the processor is `StatefulBox` (memory and look-ahead), so a segment only comes out the same
when it is processed from the same warm-up frames in the resumed run as in the continuous one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from media import AudioTrack, read_video, write_video
from resume_tools import TESTS, interrupting_box, restore_interrupted_and_resumed, same_video, transcode_resumable
from tiny_model import tiny_osdface, tiny_osdface_model  # noqa: F401 (fixtures)
from vidface.io.options import EncodeOptions
from vidface.pipeline import ResumableInterrupt, TimeRange
from vidface.resume import MANIFEST, decode_times, reorder_delay, work_folder

SEGMENT, WARMUP, LOOKAHEAD = 8, 3, 2
FRAMES = 44  # 5 whole segments and a short one

CODECS = {
    "libx264": dict(suffix=".mp4", write=dict(audio="aac", bframes=3)),
    "ffv1": dict(suffix=".mkv", write=dict(audio=AudioTrack("libopus"))),
}


def _child(source: Path, output: Path, codec: str, *kill: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TESTS / "resume_tools.py"), str(source), str(output),
                           str(SEGMENT), str(WARMUP), str(LOOKAHEAD), "--codec", codec, *kill],
                          capture_output=True, text=True, timeout=120)


def _finished_segments(output: Path) -> int:
    return len(json.loads((work_folder(output) / MANIFEST).read_text())["segments"])


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_killed_runs_resume_to_identical_output(codec: str, tmp_path: Path) -> None:
    """SIGKILL after 1 segment, at a random frame of the 3rd, after 3, while the 5th is written;
    each rerun goes on from the finished segments, and the last one ends as a continuous run."""
    spec = CODECS[codec]
    source = write_video(tmp_path / f"in{spec['suffix']}", frames=FRAMES, **spec["write"])
    reference = tmp_path / f"reference{spec['suffix']}"
    transcode_resumable(source, reference, SEGMENT, WARMUP, LOOKAHEAD, encode=EncodeOptions(codec=codec))
    output = tmp_path / f"out{spec['suffix']}"
    # a frame that only the 3rd segment's call puts out (not its neighbours' warm-up or look-ahead)
    random_frame = random.Random(codec).randrange(2 * SEGMENT + LOOKAHEAD, 3 * SEGMENT - WARMUP)
    kills = [(("--kill-at-call-start", str(1 * SEGMENT - WARMUP)), 1),
             (("--kill-at-frame", str(random_frame)), 2),
             (("--kill-at-call-start", str(3 * SEGMENT - WARMUP)), 3),
             (("--kill-at-frame", str(4 * SEGMENT + SEGMENT // 2)), 4)]
    for kill, finished in kills:
        run = _child(source, output, codec, *kill)
        assert run.returncode == -9, run.stderr
        assert not output.exists()
        assert _finished_segments(output) == finished
        if kill[0] == "--kill-at-frame":
            # killed mid-segment: its unfinished file is there, and is not taken up
            assert list(work_folder(output).glob("*.part"))
    run = _child(source, output, codec)
    assert run.returncode == 0, run.stderr
    assert f"frames={FRAMES} resumed={4 * SEGMENT}" in run.stdout
    assert not work_folder(output).exists()
    same_video(output, reference)


def _interrupted(source: Path, output: Path, at: int = 2 * SEGMENT + LOOKAHEAD + 1, **options) -> None:
    """A run stopped by Ctrl-C at output frame `at` (only the call of its own segment puts it out)."""
    with pytest.raises(ResumableInterrupt, match="run the same command again to resume"):
        transcode_resumable(source, output, SEGMENT, WARMUP, LOOKAHEAD, interrupting_box(at), **options)
    assert work_folder(output).is_dir() and not output.exists()
    assert _finished_segments(output) == at // SEGMENT


@pytest.mark.parametrize("change", ["input", "settings", "segment_bytes", "segment_truncated", "segment_missing"])
def test_stale_work_folder_is_started_over(change: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write_video(tmp_path / "in.mp4", frames=FRAMES, audio="aac")
    output = tmp_path / "out.mp4"
    _interrupted(source, output)
    options = {}
    segment = work_folder(output) / "segment-00001.bin"
    if change == "input":
        write_video(source, frames=FRAMES, audio="aac", images=lambda i: _flat(96, 64, 20 + i))
    elif change == "settings":
        options = dict(encode=EncodeOptions(crf=30))
    elif change == "segment_bytes":
        data = bytearray(segment.read_bytes())
        data[-5] ^= 0xFF
        segment.write_bytes(bytes(data))
    elif change == "segment_truncated":
        segment.write_bytes(segment.read_bytes()[:-10])
    else:
        segment.unlink()
    caplog.set_level(logging.INFO, logger="vidface")
    result = transcode_resumable(source, output, SEGMENT, WARMUP, LOOKAHEAD, **options)
    assert result.resumed == 0
    reason = {"input": "different input", "settings": "different settings", "segment_bytes": "checksum",
              "segment_truncated": "checksum", "segment_missing": "missing"}[change]
    assert any("starting over" in r.message and reason in r.message for r in caplog.records), caplog.text
    assert not work_folder(output).exists()
    reference = tmp_path / "reference.mp4"
    transcode_resumable(source, reference, SEGMENT, WARMUP, LOOKAHEAD, **options)
    same_video(output, reference)


def _flat(width: int, height: int, value: int):
    import numpy as np

    return np.full((height, width, 3), value % 256, np.uint8)


def test_vfr_preview_range_resumes_identically(tmp_path: Path) -> None:
    """Variable frame rate with B-frames, a --start/--duration range, audio: joined segments
    keep increasing decode times and the range's audio, and a resumed run matches."""
    source = write_video(tmp_path / "in.mp4", frames=60, vfr=True, bframes=3, audio="aac")
    window = dict(time_range=TimeRange(start=0.3, duration=1.6))
    reference = tmp_path / "reference.mp4"
    transcode_resumable(source, reference, SEGMENT, WARMUP, LOOKAHEAD, **window)
    output = tmp_path / "out.mp4"
    _interrupted(source, output, at=3 * SEGMENT + 2, **window)
    result = transcode_resumable(source, output, SEGMENT, WARMUP, LOOKAHEAD, **window)
    assert result.resumed == 3 * SEGMENT
    same_video(output, reference)
    # the same timestamps and audio as a plain (one-pass) run of the range (MP4 stores frame
    # durations as decode-time steps, which differ with the encoder's keyframes, so not those)
    from vidface.pipeline import plan_transcode, transcode

    plain = tmp_path / "plain.mp4"
    transcode(plan_transcode(source, plain, **window))
    before, after = read_video(plain), read_video(output)
    assert after.frame_pts == before.frame_pts
    assert after.packets == before.packets


def test_decode_times_stay_valid_across_segments() -> None:
    # two segments of a B-frame encoder (decode order), variable spacing
    first = [0, 9, 3, 1, 6]
    second = [12, 20, 15, 13, 18]
    delay = max(reorder_delay(first), reorder_delay(second))
    assert delay == 2
    dts = decode_times(first, delay)
    dts += decode_times(sorted(first)[-delay:] + second, delay)[delay:]
    assert all(a < b for a, b in zip(dts, dts[1:]))
    assert all(d <= p for d, p in zip(dts, first + second))


def _interrupt_identity(at: int):
    def interrupted(frames):
        for frame in frames:
            if frame.index == at:
                raise KeyboardInterrupt
            yield frame

    return interrupted


def test_cli_ctrl_c_keeps_work_and_rerun_resumes(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """--model none keeps no state across frames, so its segments have no warm-up or look-ahead:
    frame 50 comes in the call of the 7th 8-frame segment (frames 48-55), and Ctrl-C there keeps
    6 segments."""
    from vidface import plan

    source = write_video(tmp_path / "in.mkv", frames=60, audio="aac")
    reference = tmp_path / "reference.mkv"
    assert cli("restore", "--model", "none", source, reference, "--segment-frames", "8")[0] == 0
    output = tmp_path / "out.mkv"
    monkeypatch.setattr(plan, "identity", _interrupt_identity(50))
    code, out, err = cli("restore", "--model", "none", source, output, "--segment-frames", "8")
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "48 of 60 frames" in lines[0] and "run the same command again to resume" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.mkv", "reference.mkv", work_folder(output).name])
    monkeypatch.undo()
    code, out, err = cli("restore", "--model", "none", source, output, "--segment-frames", "8")
    assert code == 0, err
    assert "resumed, 48 frames" in out
    same_video(output, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "out.mkv", "reference.mkv"]


def test_cli_no_resume_starts_over(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    from vidface import plan

    source = write_video(tmp_path / "in.mp4", frames=40)
    output = tmp_path / "out.mp4"
    monkeypatch.setattr(plan, "identity", _interrupt_identity(30))
    assert cli("restore", "--model", "none", source, output, "--segment-frames", "4")[0] == 130
    assert work_folder(output).is_dir()
    monkeypatch.undo()
    caplog.set_level(logging.INFO, logger="vidface")
    code, out, err = cli("restore", "--model", "none", source, output, "--segment-frames", "4", "--no-resume")
    assert code == 0, err
    assert "resumed" not in out
    assert any("--no-resume was given" in r.message for r in caplog.records), caplog.text
    assert len(read_video(output).frame_pts) == 40
    assert not work_folder(output).exists()


def test_a_second_run_on_the_same_output_is_refused(tmp_path: Path) -> None:
    """While one run holds OUT, another one (say a second batch over the same folder) gets one
    line instead of sharing the work folder."""
    from vidface.errors import OutputError

    source = write_video(tmp_path / "in.mp4", frames=12)
    output = tmp_path / "out.mp4"
    held = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
                             "from vidface.resume import output_lock; from pathlib import Path\n"
                             "with output_lock(Path(sys.argv[2]), overwrite=True):\n print('held', flush=True); time.sleep(60)",
                             str(TESTS), str(output)], stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match="another vidface run is writing"):
            transcode_resumable(source, output, SEGMENT, WARMUP, LOOKAHEAD)
        assert not output.exists() and not work_folder(output).exists()
    finally:
        held.kill()
        held.wait()
    transcode_resumable(source, output, SEGMENT, WARMUP, LOOKAHEAD)  # free again once that run is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_the_work_a_farm_run_left_in_work_dir_after_out_goes_with_the_next_command(tmp_path: Path, cli) -> None:
    """A farm run killed after putting OUT in place leaves its work folder in --work-dir, renamed
    or not: the same command again, on the file or on its folder, says OUT exists and removes
    it (before connecting to Ray), and keeps the work folder of a later run (with -y)."""
    for folder in ("in", "out", "shared"):
        (tmp_path / folder).mkdir()
    source = write_video(tmp_path / "in" / "clip.mp4", frames=12)
    output = tmp_path / "out" / "clip.mp4"
    assert cli("restore", "--model", "none", source, output)[0] == 0
    shared = tmp_path / "shared"
    left = work_folder(output, shared)
    farm_run = ["--model", "none", "--ray", "127.0.0.1:9", "--work-dir", shared]
    for one_file in (True, False):
        for folder in (left, left.with_name(left.name + "-ended")):
            folder.mkdir()
            (folder / MANIFEST).write_text("{}")
            (folder / "segment-00000.bin").write_bytes(b"segment")
        os.utime(left / MANIFEST, ns=(0, 0))  # written before OUT
        if one_file:
            code, _, err = cli("restore", source, output, *farm_run)
            assert (code, err) == (1, f"vidface: error: output {str(output)!r} exists; pass -y to overwrite it\n")
        else:
            code, out, err = cli("restore", source.parent, output.parent, *farm_run)
            assert code == 0 and "clip.mp4" in out and out.count("output exists") == 1, err
        assert list(shared.iterdir()) == []
    left.mkdir()
    (left / MANIFEST).write_text("{}")  # written after OUT: a later run's
    assert cli("restore", source, output, *farm_run)[0] == 1
    assert [p.name for p in shared.iterdir()] == [left.name]
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "other.mp4", "--work-dir", shared)
    assert code == 1 and err == "vidface: error: --work-dir is the render farm's shared storage; give it with --ray\n"


def test_face_restorer_resumes_to_identical_output(tmp_path: Path, tiny_osdface_model) -> None:
    """The real processor (tracker look-ahead, temporal blending, batches across frames):
    interrupted in its 3rd segment and resumed, it gives the frames of an uninterrupted run."""
    from face_clips import moving_face_clip

    clip = moving_face_clip(30, 256, 192)
    source = write_video(tmp_path / "in.mkv", frames=30, size=(256, 192), images=lambda i: clip.frames[i],
                         audio="aac")
    output = tmp_path / "out.mkv"
    restore_interrupted_and_resumed(source, output, tiny_osdface_model, encode=EncodeOptions(codec="ffv1"))
    restored = read_video(output, images=True).images
    original = read_video(source, images=True).images
    assert sum((a != b).any() for a, b in zip(restored, original)) >= 20  # faces were restored


def test_a_run_out_of_device_memory_stops_in_one_line_and_resumes_with_a_smaller_batch(
        tmp_path: Path, cli, tiny_osdface, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's device running out of memory mid-run (another process took it, or the batch
    is too large) ends the run with one line naming a batch size to go on with; that run resumes
    from the finished segments, since the batch size is not part of the resume key."""
    import torch

    from face_clips import moving_face_clip
    from vidface.models.osdface import OSDFace

    clip = moving_face_clip(30, 256, 192)
    source = write_video(tmp_path / "in.mkv", frames=30, size=(256, 192), images=lambda i: clip.frames[i])
    output = tmp_path / "out.mkv"
    common = ("restore", source, output, "--weights", tiny_osdface.release, "--base", tiny_osdface.base,
              "--device", "cpu", "--codec", "ffv1", "--segment-frames", "8", "-q")
    decode, calls = OSDFace.decode, []

    def running_out(model: OSDFace, latents: torch.Tensor) -> torch.Tensor:
        calls.append(latents.shape[0])
        if len(calls) > 10:  # 8 calls restore the 1st segment (8 frames, 8 of look-ahead, 2 faces a call)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return decode(model, latents)

    monkeypatch.setattr(OSDFace, "decode", running_out)
    code, _, err = cli(*common, "--batch-size", "2")
    assert code == 1
    assert err == ("vidface: error: cpu ran out of memory restoring 2 faces a call: run the command again with "
                   "--batch-size 1 (it resumes, keeping the segments already finished)\n")
    assert not output.exists() and work_folder(output).is_dir()
    monkeypatch.undo()
    code, out, err = cli(*common, "--batch-size", "1")
    assert code == 0, err
    assert "resumed, 8 frames taken from the interrupted run" in out
    assert len(read_video(output).frame_pts) == 30


def test_only_settings_that_change_the_frames_key_a_resumable_run(tiny_osdface) -> None:
    import dataclasses

    from vidface.api import resume_options
    from vidface.config import load_settings
    from vidface.weights import WeightsLocation

    settings = load_settings()
    weights = WeightsLocation(tiny_osdface.release, tiny_osdface.base)

    def key(**model_options) -> dict:
        changed = dataclasses.replace(settings, model=dataclasses.replace(settings.model, **model_options))
        return resume_options(changed, "osdface", weights).key

    assert key(batch_size=16) == key(batch_size=2) == key()
    assert key(dtype="fp32") != key()
    assert key(threads=2) != key()  # a CPU's arithmetic depends on its thread count
