"""Bad inputs and outputs: exit 1, one line on stderr, no traceback, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import AudioTrack, write_audio_only, write_video
from vidface import pipeline
from vidface import plan as planning


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vidface: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, a word the message must contain)."""
    good = write_video(folder / "good.mp4", frames=12, audio="aac")
    data = good.read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    audio = write_audio_only(folder / "song.m4a", AudioTrack("aac"))
    mkv = write_video(folder / "clip.mkv", frames=6).read_bytes()
    assert mkv.count(b"V_MPEG4/ISO/AVC") == 1
    unknown = folder / "unknown.mkv"
    unknown.write_bytes(mkv.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/AVX"))  # a codec id nobody knows
    (folder / "clip.mkv").unlink()
    no_frames = write_video(folder / "no_frames.mkv", frames=0, audio="aac", audio_seconds=0.5)
    return {
        "zero_frames": (no_frames, "no decodable video frames"),
        "not_a_video": (text, "not a readable video"),
        "zero_bytes": (empty, "empty"),
        "truncated": (truncated, "truncated"),
        "audio_only": (audio, "no video stream"),
        "unknown_codec": (unknown, "cannot decode"),
        "missing": (folder / "absent.mp4", "does not exist"),
    }


@pytest.mark.parametrize("case", ["not_a_video", "zero_bytes", "truncated", "audio_only", "unknown_codec", "missing",
                                  "zero_frames"])
def test_bad_input(case: str, tmp_path: Path, cli) -> None:
    source, word = _bad_inputs(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.mp4")
    assert code == 1
    line = _one_line_error(err)
    assert word in line and source.name in line
    assert sorted(os.listdir(tmp_path)) == before
    code, _, err = cli("probe", source)
    assert code == 1 and word in _one_line_error(err)


def test_bad_outputs(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=6)
    data = source.read_bytes()
    cases = [
        (source, "is the input file"),
        (tmp_path / "missing" / "out.mp4", "does not exist"),
        (source / "out.mp4", "not a folder"),
        (tmp_path / "out.unknownext", "container format"),
        (tmp_path / "out.ogv", "ogv files cannot hold libx264 video"),
    ]
    for output, words in cases:
        code, _, err = cli("restore", "--model", "none", source, output, "-y")
        assert code == 1, output
        assert words in _one_line_error(err)
    assert source.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_unwritable_output_folder(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=6)
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        code, _, err = cli("restore", "--model", "none", source, locked / "out.mp4")
    assert code == 1 and "not writable" in _one_line_error(err)
    assert os.listdir(locked) == []


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made unwritable: by its mode, and for root, whom modes do not stop, by a read-only
    bind mount of it."""
    folder.chmod(0o500)
    mounted = False
    try:
        if os.geteuid() == 0:
            mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
            if not mounted or subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)],
                                             capture_output=True).returncode != 0:
                pytest.skip("root writes into read-only folders, and this machine allows no read-only mount")
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        folder.chmod(0o700)


def test_bad_encoder_settings(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=6)
    for flags, words in [(["--codec", "nosuchcodec"], "unknown video encoder"),
                         (["--pix-fmt", "rgb48le"], "pixel format"),
                         (["--start", "60"], "past the end")]:
        code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mp4", *flags)
        assert code == 1, flags
        assert words in _one_line_error(err)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_an_encoder_that_refuses_its_settings_is_named_with_ffmpeg_s_reason(tmp_path: Path, capfd) -> None:
    """FFmpeg says why an encoder refuses only in its log, which vidface does not show unless -v:
    the one-line error carries it, every time, and nothing else reaches standard error (FFmpeg's
    log is off again after each)."""
    from vidface.cli import main

    source = write_video(tmp_path / "in.mp4", frames=6)
    for flags, reason in [(["--codec", "h263"], "The specified picture size of 96x64 is not valid for the H.263 "
                                                "codec. Valid sizes are 128x96, 176x144"),
                          (["--codec", "mjpeg", "--pix-fmt", "yuv420p"], "Non full-range YUV is non-standard")] * 2:
        code = main(["restore", "--model", "none", str(source), str(tmp_path / "out.mov"), "--no-audio", *flags])
        err = capfd.readouterr().err
        assert code == 1, flags
        assert f"encoder {flags[1]} rejects these settings ({reason}" in _one_line_error(err)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]
    refused = av.CodecContext.create("h263", "w")
    refused.width, refused.height, refused.pix_fmt, refused.time_base = 96, 64, "yuv420p", Fraction(1, 24)
    with pytest.raises(av.error.FFmpegError):
        refused.open()
    assert capfd.readouterr().err == ""


def test_unknown_x264_preset_is_refused_before_encoding() -> None:
    from vidface.errors import OutputError
    from vidface.io.options import EncodeOptions

    with pytest.raises(OutputError, match="unknown libx264 preset 'warpspeed'; choose one of: ultrafast"):
        EncodeOptions(codec="libx264", preset="warpspeed")


def test_usage_errors_exit_2(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=4)
    assert cli("restore", "--model", "none", source)[0] == 2
    assert cli("restore", "--model", "none", source, tmp_path / "o.mp4", "--model", "magic")[0] == 2
    assert cli("restore", "--model", "none", source, tmp_path / "o.mp4", "--encoder-opt", "novalue")[0] == 2
    assert cli("restore", "--model", "none", source, tmp_path / "o.mp4", "--duration", "0")[0] == 2
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_interrupt_leaves_nothing(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of a run: exit 130 and no partial output (nor temporary file)."""
    source = write_video(tmp_path / "in.mkv", frames=30, audio="aac")

    def interrupted(frames):
        for frame in frames:
            if frame.index == 5:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(planning, "identity", interrupted)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv")
    assert code == 130 and "interrupted" in err
    assert sorted(os.listdir(tmp_path)) == ["in.mkv"]


def test_failure_in_processor_leaves_nothing(tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mp4", frames=20)
    plan = pipeline.plan_transcode(source, tmp_path / "out.mp4")

    def broken(frames):
        for frame in frames:
            if frame.index == 3:
                raise RuntimeError("restorer failed")
            yield frame

    with pytest.raises(RuntimeError, match="restorer failed"):
        pipeline.transcode(plan, broken)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_subprocess_contract(tmp_path: Path) -> None:
    """As a real process: exit 1 and one line for a bad input; --help/--version without torch."""
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    run = subprocess.run([sys.executable, "-m", "vidface", "restore", str(bad), str(tmp_path / "o.mp4")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "not a readable video" in _one_line_error(run.stderr)
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4"]
    probe = ("import sys, contextlib, io\n"
             "from vidface.cli import main\n"
             "for args in (['--help'], ['--version'], ['restore', '--help']):\n"
             "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
             "        main(args)\n"
             "heavy = [m for m in ('torch', 'diffusers', 'cv2', 'av') if m in sys.modules]\n"
             "print(','.join(heavy) or 'light')\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "light"
    version = subprocess.run([sys.executable, "-m", "vidface", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("vidface ")
