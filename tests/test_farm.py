"""The render farm on a local Ray with two CPU workers: its output equals a one-process run's,
whatever happens to the workers or the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import ray

from face_clips import Pose, background, degrade, head_sprite, hopper_sprite, moving_face_clip, render
from media import AudioTrack, damaged_video, read_video, write_audio_only, write_video
from resume_tools import same_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from vidface.api import load_restorer, resume_options
from vidface.config import load_settings
from vidface.farm import farm_restore
from vidface.files import SCRATCH_PREFIX
from vidface.plan import plan_transcode
from vidface.resume import MANIFEST, work_folder

SEGMENT = 10
FRAMES = 30


@pytest.fixture(scope="session")
def workers_temp(tmp_path_factory) -> Path:
    """The temporary folder of the session's Ray workers (TMPDIR), where their scratch folders go."""
    return tmp_path_factory.mktemp("workers-temp")


@pytest.fixture(scope="session")
def cluster(workers_temp: Path) -> str:
    """One local Ray for the whole session (2 CPUs: two workers); its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"TMPDIR": str(workers_temp)}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _tiny_settings(tiny):
    return load_settings(overrides={"model.weights": str(tiny.release), "model.base": str(tiny.base),
                                    "model.device": "cpu", "model.dtype": "fp32", "model.batch_size": 4})


def _face_clip(path: Path) -> Path:
    clip = moving_face_clip(FRAMES, 160, 120)
    return write_video(path, frames=FRAMES, size=(160, 120), images=np.stack(clip.frames), audio="aac")


@pytest.fixture(scope="module")
def restored_here(tmp_path_factory, tiny_osdface):
    """A face clip and its restoration by one process: (settings, source, reference)."""
    folder = tmp_path_factory.mktemp("farm")
    settings = _tiny_settings(tiny_osdface)
    source = _face_clip(folder / "in.mkv")
    reference = folder / "reference.mkv"
    load_restorer(settings).restore(source, reference, segment_frames=SEGMENT)
    return settings, source, reference


def _farm(source: Path, output: Path, settings, on_progress=None):
    from vidface.weights import resolve

    weights = resolve(settings.model.weights, settings.model.base)  # the driver's view, for the resume key
    resume = resume_options(settings, "osdface", weights, segment_frames=SEGMENT)
    return farm_restore([plan_transcode(source, output, encode=settings.encode)], settings, resume, workers=2,
                        progress=on_progress)


def test_the_farm_gives_the_frames_of_one_process(cluster, tmp_path: Path, restored_here) -> None:
    settings, source, reference = restored_here
    (result,), tally = _farm(source, tmp_path / "out.mkv", settings)
    assert result.frames == FRAMES
    same_video(tmp_path / "out.mkv", reference)  # every frame, and the audio packets
    assert sum(w.segments for w in tally.workers.values()) == 3 and tally.faces >= FRAMES - 5
    restored = read_video(tmp_path / "out.mkv", images=True).images
    original = read_video(source, images=True).images
    assert sum((a != b).any() for a, b in zip(restored, original)) >= FRAMES - 5  # faces were restored


def test_a_worker_killed_mid_segment_changes_nothing(cluster, workers_temp: Path, tmp_path: Path,
                                                     restored_here) -> None:
    settings, source, reference = restored_here
    killed = []

    def kill_a_busy_worker(tally) -> None:
        if not killed and tally.busy:
            killed.append(next(iter(tally.busy)))
            os.kill(killed[0], signal.SIGKILL)

    (result,), tally = _farm(source, tmp_path / "out.mkv", settings, kill_a_busy_worker)
    assert killed and result.frames == FRAMES
    # every segment was finished, none by the killed worker: the one it held went to another
    assert sum(w.segments for w in tally.workers.values()) == 3
    assert not any(name.endswith(f":{killed[0]}") for name in tally.workers)
    same_video(tmp_path / "out.mkv", reference)
    # the killed worker's scratch folder, with its partial segment, went with the next segment begun
    assert list(workers_temp.glob(SCRATCH_PREFIX + "*")) == []


def test_the_farm_restores_the_chosen_faces_as_one_process_does(cluster, tmp_path: Path, tiny_osdface) -> None:
    settings = load_settings(overrides={"model.weights": str(tiny_osdface.release), "model.base": str(tiny_osdface.base),
                                        "model.device": "cpu", "model.dtype": "fp32", "model.batch_size": 4,
                                        "faces.select": "largest", "encode.codec": "ffv1"})
    rng = np.random.default_rng(0)
    picture, (small, _) = render(background(256, 192), [Pose(70, 96, 0.35, 0.0), Pose(180, 96, 0.5, 0.0)],
                                 [head_sprite(), hopper_sprite()])
    source = write_video(tmp_path / "in.mkv", frames=FRAMES, size=(256, 192), audio="aac", codec="ffv1",
                         pix_fmt="yuv444p", images=np.stack([degrade(picture, rng) for _ in range(FRAMES)]))
    restorer = load_restorer(settings)
    plan = restorer.plan(source, tmp_path / "reference.mkv")
    selected = restorer.select(plan)
    restorer.restore(plan, segment_frames=SEGMENT, selected=selected)
    weights = restorer.weights
    resume = resume_options(settings, "osdface", weights, segment_frames=SEGMENT)
    farm_restore([plan_transcode(source, tmp_path / "out.mkv", encode=settings.encode)], settings, resume, workers=2,
                 selected=[selected])
    same_video(tmp_path / "out.mkv", tmp_path / "reference.mkv")
    before, after = (np.stack(read_video(path, images=True).images).astype(int) for path in (source, tmp_path / "out.mkv"))
    x1, y1 = small.min(axis=0).astype(int)
    x2, y2 = small.max(axis=0).astype(int)
    left, right = np.abs(after - before)[:, y1:y2, x1:x2].mean(), np.abs(after - before)[:, y1:y2, x1 + 110:x2 + 110].mean()
    assert left == 0 and right > 4  # the smaller face on the left stays, the larger one is restored


def _manifest_segments(output: Path) -> int:
    try:
        return len(json.loads((work_folder(output) / MANIFEST).read_text())["segments"])
    except (OSError, ValueError):
        return 0


def test_a_killed_driver_resumes_on_the_same_command(cluster, tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mkv", frames=80, audio="aac")
    reference = tmp_path / "reference.mkv"
    load_restorer(model="none").restore(source, reference, segment_frames=8)
    output = tmp_path / "out.mkv"
    command = [sys.executable, "-m", "vidface", "restore", str(source), str(output), "--model", "none",
               "--segment-frames", "8", "--ray", cluster, "--no-progress"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _manifest_segments(output) < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    kept = _manifest_segments(output)
    assert 2 <= kept < 10 and not output.exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed, {8 * kept} frames" in rerun.stdout
    same_video(output, reference)


def test_a_folder_on_the_farm_reports_each_file(cluster, tmp_path: Path, cli) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mkv", "b.mp4"):
        write_video(folder / name, frames=20, audio="aac")
    (folder / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    code, out, err = cli("restore", folder, tmp_path / "out", "--ray", cluster, "--model", "none",
                         "--segment-frames", "8", "--no-progress")
    assert code == 1, err
    lines = out.splitlines()
    assert lines[-1] == "3 files: 2 done, 0 skipped, 1 failed"
    assert any(line.startswith("c.mp4") and "failed" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.mp4"]
    for name in ("a.mkv", "b.mp4"):
        assert read_video(tmp_path / "out" / name).frame_pts == read_video(folder / name).frame_pts


def test_the_farm_lays_a_sound_file_beside_its_out(cluster, tmp_path: Path, cli) -> None:
    """--audio on the farm: the driver's final mux copies the sound file's packets, as one process's does."""
    source = write_video(tmp_path / "in.mkv", frames=20)
    sound = write_audio_only(tmp_path / "sound.wav", AudioTrack(codec="pcm_s16le"), seconds=0.8)
    code, _, err = cli("restore", source, tmp_path / "out.mkv", "--ray", cluster, "--model", "none", "--audio", sound,
                       "--segment-frames", "8", "--no-progress")
    assert code == 0, err
    assert read_video(tmp_path / "out.mkv").stream_codecs == ["h264", "pcm_s16le"]
    with av.open(str(sound)) as container:
        expected = [bytes(packet) for packet in container.demux(container.streams.audio[0]) if packet.size]
    assert [data for data, _, _ in read_video(tmp_path / "out.mkv").packets[1]] == expected


def test_a_folder_file_the_selection_pass_cannot_read_fails_alone(cluster, tmp_path: Path, cli, tiny_osdface) -> None:
    """--faces runs a selection pass over each file before the farm starts: a file that cannot be
    decoded to the end fails in the summary table, as a file that cannot be planned does."""
    folder = tmp_path / "in"
    folder.mkdir()
    damaged_video(folder / "damaged.mp4")
    code, out, err = cli("restore", folder, tmp_path / "out", "--ray", cluster, "--weights", tiny_osdface.release,
                         "--base", tiny_osdface.base, "--device", "cpu", "--faces", "largest", "--no-progress")
    assert code == 1, err
    lines = out.splitlines()
    assert lines[-1] == "1 files: 0 done, 0 skipped, 1 failed", out
    assert any(line.startswith("damaged.mp4") and "failed" in line and "cannot be decoded after frame" in line
               for line in lines), out
    assert not any((tmp_path / "out").glob("*.mp4"))


@pytest.mark.parametrize("case", ["no ray", "unreachable"])
def test_the_farm_fails_at_once_in_one_line(case: str, tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mp4", frames=4)
    flags = ["--ray"] if case == "no ray" else ["--ray", "127.0.0.1:9"]
    blocker = "import sys; sys.modules['ray'] = None; " if case == "no ray" else ""
    code = (f"{blocker}from vidface.cli import main; raise SystemExit(main({['restore', str(source), str(tmp_path / 'out.mp4'), '--model', 'none', *flags]!r}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    expected = 'pip install "vidface[farm]"' if case == "no ray" else "cannot reach the Ray cluster at 127.0.0.1:9"
    assert expected in lines[0]
    assert not (tmp_path / "out.mp4").exists()
