"""Timecodes: an output that starts later in the video starts later in timecode."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import from_second_group, read_video, write_video
from vidface.io.timecode import gop_timecode, shifted_timecode

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


def _with_gop_timecodes(path: Path, first: str, group: int, rate: Fraction | int) -> Path:
    """`path` (MPEG-2 video, groups of `group` pictures with no B-frames, in any container that
    stores the video's bytes as they are) with each group's header naming its first picture's
    timecode, counted from `first`: FFmpeg's encoder writes none of its own (its groups count
    from 00:00:00:00), where a DVD's or a broadcast capture's carry the tape's."""
    data = bytearray(path.read_bytes())
    for number, found in enumerate(re.finditer(b"\x00\x00\x01\xb8", bytes(data))):
        hours, minutes, seconds, separator, frames = re.match(
            r"(\d+):(\d+):(\d+)([:;])(\d+)", shifted_timecode(first, number * group, Fraction(rate))).groups()
        code = (int(separator == ";") << 24 | int(hours) << 19 | int(minutes) << 13 | 1 << 12 | int(seconds) << 6
                | int(frames))
        at = found.start() + 4
        data[at:at + 4] = (code << 7 | int.from_bytes(data[at:at + 4], "big") & 0x7F).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("extension, fps, first", [("mpg", 25, "10:00:00:05"), ("ts", NTSC, "01:00:59;28"),
                                                   ("m2v", 25, "00:59:59:24")])
def test_mpeg2_videos_own_timecode_is_ins_and_outs(extension: str, fps: int | Fraction, first: str,
                                                   tmp_path: Path, cli) -> None:
    """The timecode in an MPEG-2 video's groups of pictures (a DVD's, a broadcast capture's) is
    IN's: probe shows it, --start takes it, and OUT's container keeps it for its first frame
    (MOV's timecode track, Matroska's tag)."""
    source = _with_gop_timecodes(
        write_video(tmp_path / f"in.{extension}", frames=20, size=(64, 48), fps=fps, codec="mpeg2video",
                    codec_options={"g": "6", "bf": "0", "sc_threshold": "1000000000"}), first, 6, fps)
    code, out, _ = cli("probe", source)
    assert code == 0 and f"timecode: {first} at the first frame" in out, out
    third = shifted_timecode(first, 3, Fraction(fps))
    for name, args, timecode in (("whole.mov", [], first), ("cut.mkv", ["--start", third], third)):
        code, _, err = cli("restore", "--model", "none", source, tmp_path / name, "--no-progress", *args)
        assert code == 0, err
        code, out, _ = cli("probe", tmp_path / name)
        assert code == 0 and f"timecode: {timecode} at the first frame" in out, out
    assert len(read_video(tmp_path / "cut.mkv").frame_pts) == 17


@pytest.mark.parametrize("segmented", [False, True], ids=["one-run", "segments"])
def test_an_mpeg2_outs_groups_of_pictures_carry_ins_timecode(segmented: bool, tmp_path: Path, cli) -> None:
    """FFmpeg's MPEG-2 encoder counts its groups from 00:00:00:00: OUT's headers are renumbered
    so that each group names its first frame by IN's timecode, from a --start range's first
    frame on, in a resumable run's segments too (each one's encoder counts from its own start).
    Drop-frame stays drop-frame."""
    source = write_video(tmp_path / "in.mov", frames=40, size=(64, 48), fps=NTSC,
                         video_metadata={"timecode": "00:59:59;20"})
    output = tmp_path / "out.mpg"
    args = ["--start", "0.1", "--codec", "mpeg2video", "--encoder-opt", "g=6", "--encoder-opt", "bf=0",
            "--encoder-opt", "sc_threshold=1000000000", *(["--segment-frames", "8"] if segmented else [])]
    code, _, err = cli("restore", "--model", "none", source, output, "--no-progress", *args)
    assert code == 0, err
    first = shifted_timecode("00:59:59;20", 3, NTSC)
    assert first == "00:59:59;23"
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        packets = [packet for packet in container.demux(stream) if packet.size]
    order = sorted(packet.pts for packet in packets)
    headed = [(packet, gop_timecode(bytes(packet))) for packet in packets]
    groups = [(order.index(packet.pts), timecode) for packet, timecode in headed if timecode]
    starts = range(0, 37, 8) if segmented else [0]  # each encoder's first frame; then a group every 6
    expected = sorted({index for start in starts for index in range(start, min(start + 8 if segmented else 37, 37), 6)})
    assert [index for index, _ in groups] == expected, groups
    for index, timecode in groups:
        assert timecode == shifted_timecode(first, index, NTSC), (index, timecode)
    assert any(";" in timecode and timecode.startswith("01:00:00;") for _, timecode in groups)  # past the minute


def test_frames_that_never_decode_move_outs_timecode_on(tmp_path: Path, cli) -> None:
    """MPEG-2 cut at an open group of pictures starts with B-frames shown before its first
    I-frame and made from the group cut away: they never decode. IN's timecode names the first
    of them, so OUT, whose first frame is that I-frame, starts two frames later in timecode, in
    its container's tag and in its own groups' headers; a --start among them does the same."""
    whole = _with_gop_timecodes(
        write_video(tmp_path / "whole.m2v", frames=36, size=(64, 48), fps=25, codec="mpeg2video",
                    codec_options={"g": "12", "bf": "2", "sc_threshold": "1000000000"}), "10:00:00:00", 12, 25)
    cut = from_second_group(whole, tmp_path / "cut.m2v")
    with av.open(str(cut)) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
        first = gop_timecode(bytes(packets[0]))
    assert len(packets) - len(read_video(cut).frame_pts) == 2 and first == "10:00:00:12"
    code, out, _ = cli("probe", cut)
    assert code == 0 and f"timecode: {first} at the first frame" in out, out
    assert "undecodable: the first 2 frames, made from pictures before IN's start; OUT starts at frame 2" in out
    for name, args in (("out.mov", []), ("out.mpg", ["--codec", "mpeg2video"]), ("from-1.mkv", ["--start", "0.04"])):
        code, _, err = cli("restore", "--model", "none", cut, tmp_path / name, "--no-progress", *args)
        assert code == 0, err
        code, out, _ = cli("probe", tmp_path / name)
        assert code == 0 and "timecode: 10:00:00:14 at the first frame" in out, (name, out)
    with av.open(str(tmp_path / "out.mpg")) as container:
        headers = [gop_timecode(bytes(packet)) for packet in container.demux(video=0) if packet.size]
    assert [timecode for timecode in headers if timecode][:2] == ["10:00:00:14", "10:00:01:01"]


def test_a_recording_started_mid_group_keeps_its_timecode(tmp_path: Path, cli) -> None:
    """A broadcast recording starts mid-group: the packets of the group cut off come before the
    first group header, whose timecode names its own first picture shown, not IN's first frame.
    OUT's first frame (the first that decodes) gets the timecode the uncut stream gives it."""
    whole = write_video(tmp_path / "whole.ts", frames=48, size=(64, 48), fps=25, codec="mpeg2video",
                        codec_options={"g": "12", "bf": "2", "sc_threshold": "1000000000"})
    code, out, _ = cli("probe", whole)
    assert code == 0 and "timecode: 00:00:00:00 at the first frame" in out  # FFmpeg's encoder counts from 0
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[len(data) // 3 // 188 * 188:])  # from a transport packet a third of the way in
    with av.open(str(cut)) as container:
        assert gop_timecode(bytes(next(container.demux(video=0)))) is None  # it starts mid-group
    shown = read_video(whole).frame_pts.index(read_video(cut).frame_pts[0])  # the uncut stream's frame
    code, _, err = cli("restore", "--model", "none", cut, tmp_path / "out.mkv", "--no-progress")
    assert code == 0, err
    code, out, _ = cli("probe", tmp_path / "out.mkv")
    assert code == 0 and f"timecode: {shifted_timecode('00:00:00:00', shown, Fraction(25))} at the first" in out, out


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
