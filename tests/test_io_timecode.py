"""Timecodes: an output that starts later in the video starts later in timecode."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import read_video, write_video
from vidface.io.timecode import shifted_timecode

NTSC = Fraction(30000, 1001)


@pytest.mark.parametrize("timecode, frames, rate, expected", [
    ("10:00:00:00", 5, Fraction(25), "10:00:00:05"),
    ("00:59:59:23", 1, Fraction(24000, 1001), "01:00:00:00"),
    ("23:59:59:24", 2, Fraction(25), "00:00:00:01"),              # past midnight
    ("00:00:59;29", 1, NTSC, "00:01:00;02"),                     # drop-frame skips ;00 and ;01
    ("00:09:59;29", 1, NTSC, "00:10:00;00"),                     # but not every tenth minute
    ("00:00:00;00", 17982, NTSC, "00:10:00;00"),                 # ten minutes of 29.97 fps
    ("00:00:00;00", 3600, Fraction(60000, 1001), "00:01:00;04"),  # 59.94 drops four
    ("23:59:59;29", 1, NTSC, "00:00:00;00"),
    ("not a timecode", 3, Fraction(25), "not a timecode"),
])
def test_timecode_moves_on_by_frames(timecode: str, frames: int, rate: Fraction, expected: str) -> None:
    assert shifted_timecode(timecode, frames, rate) == expected


def test_drop_frame_counts_one_frame_at_a_time() -> None:
    """A jump of n frames lands where n steps of one do, across minute and ten-minute marks."""
    stepped = "00:08:59;00"
    for _ in range(2000):
        stepped = shifted_timecode(stepped, 1, NTSC)
    assert stepped == shifted_timecode("00:08:59;00", 2000, NTSC) == "00:10:05;22"


@pytest.mark.parametrize("extension, fps, source_timecode, start, expected", [
    ("mov", 25, "10:00:00:00", "0.2", "10:00:00:05"),
    ("mkv", 25, "10:00:00:00", "0.2", "10:00:00:05"),
    ("mxf", 25, "10:00:00:00", "0.2", "10:00:00:05"),
    ("mov", NTSC, "01:00:59;28", "0.1335", "01:01:00;04"),
])
def test_a_range_starts_at_its_first_frames_timecode(extension: str, fps: int | Fraction, source_timecode: str,
                                                     start: str, expected: str, tmp_path: Path, cli) -> None:
    """--start cuts IN's first frames: OUT's timecode (MOV's track, Matroska's tag, MXF's) is
    that of its own first frame, as `vidface probe` shows; the whole video keeps IN's."""
    codec = "mpeg2video" if extension == "mxf" else "libx264"
    source = write_video(tmp_path / f"in.{extension}", frames=10, size=(64, 48), fps=fps, codec=codec,
                         video_metadata={"timecode": source_timecode})
    code, out, _ = cli("probe", source, "--json")
    assert code == 0 and json.loads(out)["video"]["timecode"] == source_timecode
    for name, args, timecode in (("cut", ["--start", start], expected), ("whole", [], source_timecode)):
        output = tmp_path / f"{name}.{extension}"
        code, _, err = cli("restore", "--model", "none", source, output, "--no-progress", *args)
        assert code == 0, err
        code, out, _ = cli("probe", output)
        assert code == 0 and f"timecode: {timecode} at the first frame" in out
        with av.open(str(output)) as container:
            tags = [container.metadata] + [stream.metadata for stream in container.streams]
            assert {value for tags_ in tags for key, value in tags_.items() if key.lower() == "timecode"} == {timecode}


def test_a_range_in_the_videos_own_timecode(tmp_path: Path, cli) -> None:
    """--start names a frame by IN's timecode and --duration counts frames, as an edit list
    gives them; OUT holds those frames and starts at that timecode. A timecode IN has none of,
    or one before its first frame, is a one-line error."""
    source = write_video(tmp_path / "in.mov", frames=20, size=(64, 48), fps=25,
                         video_metadata={"timecode": "10:00:00:00"})
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "cut.mov", "--no-progress",
                       "--start", "10:00:00:05", "--duration", "00:00:00:10")
    assert code == 0, err
    before, after = read_video(source), read_video(tmp_path / "cut.mov")
    assert after.frame_pts == [t - before.frame_pts[5] for t in before.frame_pts[5:15]]
    assert after.stream_metadata[0]["timecode"] == "10:00:00:05"
    code, out, _ = cli("restore", "--model", "none", source, tmp_path / "clock.mov", "--dry-run",
                       "--start", "0:00.2", "--duration", "0:0.4")
    assert code == 0 and "frames  10 (from frame 5, 0.200 s)" in out
    for start, words in (("09:59:59:24", "comes before IN's first frame, at 10:00:00:00"),
                         ("10:00:00:25", "is not a timecode of IN's 25 fps")):
        code, _, err = cli("restore", "--model", "none", source, tmp_path / "bad.mov", "--start", start)
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1
    plain = write_video(tmp_path / "plain.mkv", frames=4, size=(64, 48))
    code, _, err = cli("restore", "--model", "none", plain, tmp_path / "bad.mkv", "--start", "00:00:00:01")
    assert code == 1 and "is a timecode, and IN has none; give the start in seconds" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mov", "in.mov", "plain.mkv"]
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "bad.mov", "--start", "1:2:3:4:5")
    assert code == 2 and "must be seconds, [HH:]MM:SS.mmm or HH:MM:SS:FF, got 1:2:3:4:5" in err
