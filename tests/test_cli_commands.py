"""probe, env, --dry-run and progress output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from media import AudioTrack, Subtitles, write_video


def test_probe_json(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mkv", frames=20, size=(80, 48), vfr=True, rotation=90,
                         audio=[AudioTrack("aac", language="eng"), AudioTrack("libopus", language="fra")],
                         subtitles=Subtitles(language="spa"), metadata={"title": "Probe me"})
    code, out, err = cli("probe", source, "--json")
    assert code == 0, err
    report = json.loads(out)
    video = report["video"]
    assert (video["width"], video["height"], video["display_width"], video["display_height"]) == (80, 48, 48, 80)
    assert video["rotation"] == 90 and video["frames"] == 20 and video["frame_rate"] == "variable"
    assert video["codec"] == "h264" and video["pix_fmt"] == "yuv420p" and video["bit_depth"] == 8
    assert report["metadata"]["title"] == "Probe me"
    kinds = [(s["type"], s["codec"], s["language"]) for s in report["streams"]]
    assert kinds[1:] == [("audio", "aac", "eng"), ("audio", "opus", "fra"), ("subtitle", "subrip", "spa")]


def test_probe_text_cfr_10bit(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=12, codec="libx265", pix_fmt="yuv420p10le", fps=25)
    code, out, _ = cli("probe", source)
    assert code == 0
    assert "hevc" in out and "10-bit" in out and "constant (CFR)" in out and "12 frames" in out
    assert "25.0 fps" in out


def test_env_works_without_gpu(cli) -> None:
    code, out, err = cli("env")
    assert code == 0, err
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    for key in ("vidface", "torch", "av (PyAV)", "ffmpeg libraries", "encoders", "gpu", "weight cache", "diffusers"):
        assert key in fields, key
    assert "libx264" in fields["encoders"]
    assert "libavcodec" in fields["ffmpeg libraries"]
    from vidface.machine import cpu_has

    assert fields["cpu model precision"] == ("bf16" if cpu_has("AVX512BF16") else "fp32") + " with --dtype auto"


def test_dry_run_writes_nothing(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=48, audio="aac", rotation=270)
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.mp4", "--dry-run", "--start", "1", "--no-audio")
    assert code == 0, err
    assert "frames  24 (from frame 24" in out
    assert "rotated 270" in out and "drop    #1 audio aac" in out and "libx264" in out
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_dry_run_reports_the_faces_settings(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=4)
    for flags, words in (((), "every 2 frame(s) at 640 px, landmarks refined in 6 crops"),
                         (("--config", "archival"), "every 1 frame(s) at 1280 px, landmarks refined in 8 crops"),
                         (("--config", "archival", "--refine-crops", "4"), "landmarks refined in 4 crops")):
        code, out, err = cli("restore", source, tmp_path / "out.mp4", "--dry-run", *flags)
        assert code == 0 and words in out, (flags, out, err)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_video(tmp_path / "in.mp4", frames=10)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "a.mp4")
    assert code == 0 and "frame" not in err  # stderr is not a terminal here
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert cli("restore", "--model", "none", source, tmp_path / "b.mp4")[0] == 0
    assert "10/10" in terminal.getvalue() and "frame/s" in terminal.getvalue()
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert cli("restore", "--model", "none", source, tmp_path / "c.mp4", "--no-progress")[0] == 0
    assert "frame/s" not in terminal.getvalue()


# What commands that run no model must not import: torch (seconds, ~850 MB), the model's
# libraries, and torch's compiler stack (which diffusers and torch.export pull in).
MODEL_STACK = ("torch", "diffusers", "peft", "torch._dynamo", "torch._inductor", "torch.export")


@pytest.mark.parametrize("command", [["probe"], ["track", "--no-progress"], ["restore", "--model", "none", "--no-progress"]],
                         ids=["probe", "track", "model none"])
def test_commands_without_the_model_do_not_import_it(tmp_path: Path, command: list[str]) -> None:
    """`probe`, `track` and `--model none` (an I/O check) start without paying for the model's imports."""
    source = write_video(tmp_path / "in.mp4", frames=6)
    arguments = [*command, str(source)] + ([] if command == ["probe"] else [str(tmp_path / "out.mp4")])
    probe = ("import sys\n"
             "from vidface.cli import main\n"
             f"code = main({arguments!r})\n"
             f"print(code, [name for name in {MODEL_STACK!r} if name in sys.modules])\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "0 []"


def test_a_cpu_restore_builds_its_processor_without_torch() -> None:
    """On a machine without a GPU, the restorer's processor (decoding, detection, tracking) is
    built without importing torch, with --device cpu or auto: its stages start while the
    model's thread imports torch."""
    probe = ("import sys\n"
             "from concurrent.futures import Future\n"
             "import vidface.machine\n"
             "from vidface.config import load_settings\n"
             "from vidface.restore import face_restorer\n"
             "vidface.machine.GPU_DEVICE_FILES = ()  # no GPU driver: as on a CPU-only machine\n"
             "for device in ('cpu', 'auto'):\n"
             "    face_restorer(Future(), load_settings(overrides={'model.device': device}))\n"
             f"print([name for name in {MODEL_STACK!r} if name in sys.modules])\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_the_program_exits_with_mains_code_after_its_output_is_complete(tmp_path: Path) -> None:
    """`vidface` (vidface.cli.program) freezes the garbage collector's objects only once `main` has
    returned: the output is whole, the summary printed, the code main's own."""
    source = write_video(tmp_path / "in.mp4", frames=12, audio="aac")
    output = tmp_path / "out.mp4"
    child = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
             f"sys.argv = ['vidface', 'restore', {str(source)!r}, {str(output)!r}, '--model', 'none',"
             " '--no-progress']\n"
             "from vidface.cli import program\n"
             "program()\n")
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    summary, frozen = run.stdout.strip().splitlines()
    assert summary.startswith(f"{output}: 12 frames") and frozen == "frozen at exit: True"
    with av.open(str(output)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
        assert [stream.type for stream in container.streams] == ["video", "audio"]
    failed = subprocess.run([sys.executable, "-m", "vidface", "restore", str(tmp_path / "missing.mp4"),
                             str(tmp_path / "other.mp4")], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and not (tmp_path / "other.mp4").exists()
