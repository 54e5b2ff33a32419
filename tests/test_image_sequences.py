"""Image sequences as IN (a film scan's DPX files, a plate's TIFF files): named by a pattern,
read as one video at their own rate or --fps's, restored into a master video file."""

from __future__ import annotations

import json
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from face_clips import moving_face_clip
from media import moving_pattern, read_video, stored_samples, write_image_sequence, write_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from vidface.errors import InputError
from vidface.io.sequence import image_sequence
from vidface.resume import fingerprint


def _frame_rate(path: Path) -> float:
    """The frames a second of a video's frame times, to the millisecond Matroska keeps them in."""
    times = read_video(path).frame_pts
    return round(float((len(times) - 1) / (times[-1] - times[0])), 1)


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_a_pattern_names_the_files_of_a_sequence(tmp_path: Path) -> None:
    """printf's %04d and compositing's #### name the same files: zero-padded to the width, or
    wider without a leading zero (as printf writes 10000); other names beside them are not its."""
    _touch(tmp_path, "a.0998.png", "a.0999.png", "a.1000.png", "a.12.png", "b.0999.png", "a.0999.png.bak")
    for pattern in ("a.%04d.png", "a.####.png"):
        sequence = image_sequence(tmp_path / pattern)
        assert sequence is not None and sequence.pattern == tmp_path / "a.%04d.png"
        assert sequence.files == [tmp_path / f"a.{number:04d}.png" for number in (998, 999, 1000)]
    _touch(tmp_path, "wide_9999.dpx", "wide_10000.dpx", "bare_7.tif", "bare_8.tif", "bare_08.tif")
    assert image_sequence(tmp_path / "wide_%04d.dpx").numbers == range(9999, 10001)
    assert image_sequence(tmp_path / "bare_%d.tif").numbers == range(7, 9)
    _touch(tmp_path, "take #2.mov", "100%d.mov")
    assert image_sequence(tmp_path / "take #2.mov") is None and image_sequence(tmp_path / "100%d.mov") is None


@pytest.mark.parametrize("name, message", [
    ("gap.####.tif", "misses 2 of its frames, the first 'gap.0003.tif'; restore each unbroken run of files apart"),
    ("none.####.tif", "names an image sequence, and no file there matches it; check the path"),
    ("two.%02d.%04d.tif", "has 2 frame-number places"),
])
def test_a_sequence_that_cannot_be_read_whole_is_refused(name: str, message: str, tmp_path: Path, cli) -> None:
    """The image2 demuxer stops at the first number missing: the files after a gap would be
    lost without a word, so a gap is a one-line error, as are a pattern with no files and one
    with two numbers; nothing is written."""
    _touch(tmp_path, "gap.0001.tif", "gap.0002.tif", "gap.0005.tif")
    with pytest.raises(InputError, match=message):
        image_sequence(tmp_path / name)
    code, _, err = cli("restore", "--model", "none", tmp_path / name, tmp_path / "out.mkv")
    assert code == 1 and err.startswith("vidface: error: input ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.mkv").exists()


@pytest.mark.parametrize("codec, pix_fmt", [("png", "rgb24"), ("dpx", "gbrp10le"), ("tiff", "rgb24")])
def test_a_damaged_file_of_a_sequence_is_named(codec: str, pix_fmt: str, tmp_path: Path, cli) -> None:
    """A file cut short stops the run with a one-line error naming it, found among the files the
    threaded decoder was fed; an empty one, where image2 ends the video without an error, is
    named too, where the frames after it were left out with a warning; nothing is written."""
    files = write_image_sequence(tmp_path, f"scan.%04d.{codec}", [moving_pattern(64, 48)(i) for i in range(12)],
                                 codec=codec, pix_fmt=pix_fmt, first=100)
    files[7].write_bytes(files[7].read_bytes()[:files[7].stat().st_size // 2])
    source, out = tmp_path / f"scan.####.{codec}", tmp_path / "out.mkv"
    code, _, err = cli("restore", "--model", "none", source, out, "--no-progress")
    assert code == 1 and len(err.splitlines()) == 1 and not out.exists(), err
    assert f"cannot be decoded at frame 7: its file 'scan.0107.{codec}' is truncated or corrupt (" in err, err
    files[3].write_bytes(b"")
    code, _, err = cli("restore", "--model", "none", source, out, "--no-progress", "--start", "0.05")
    assert code == 1 and len(err.splitlines()) == 1 and not out.exists(), err
    assert f"ends at frame 1: its file 'scan.0103.{codec}' is empty; replace it" in err, err
    code, _, err = cli("restore", "--model", "none", source, out, "--no-progress", "--duration", "0.1")
    assert code == 0 and len(read_video(out).frame_pts) == 3, err


def test_a_pattern_of_video_files_is_refused(tmp_path: Path, cli) -> None:
    """Videos numbered like a sequence's files are no image sequence: a one-line error says what
    one is, and that a video is given as one file."""
    for number in (1, 2):
        write_video(tmp_path / f"clip.{number:02d}.mkv", frames=2, size=(32, 24))
    code, _, err = cli("restore", "--model", "none", tmp_path / "clip.##.mkv", tmp_path / "out.mkv")
    assert code == 1 and "has files FFmpeg cannot decode as pictures (an image sequence's are DPX, TIFF" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out.mkv").exists()


def test_a_dpx_scan_becomes_a_lossless_master(tmp_path: Path, cli, caplog) -> None:
    """A 10-bit DPX scan numbered from 86400 (in a folder whose name FFmpeg would read as a
    pattern's) is read as one video at 24 fps (its files carry no rate: a warning says so), or
    at --fps's rate, and comes back in FFV1 sample for sample in Matroska, in ProRes 4444 in
    QuickTime, which holds no FFV1."""
    folder = tmp_path / "reel 1 (100%)"
    folder.mkdir()
    write_image_sequence(folder, "scan.%07d.dpx", [moving_pattern(64, 48)(i) for i in range(5)], codec="dpx",
                         pix_fmt="gbrp10le", first=86400)
    source = folder / "scan.#######.dpx"
    code, out, _ = cli("probe", source)
    assert code == 0 and "files: scan.0086400.dpx to scan.0086404.dpx (5 images)" in out, out
    assert "dpx 64x48 gbrp10le (10-bit)" in out and "24.0 fps constant (CFR), 5 frames" in out
    assert "they are read at 24 fps (restore's --fps sets another)" in caplog.text
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--no-progress")
    assert code == 0, err
    with av.open(str(tmp_path / "out.mkv")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.codec.canonical_name, stream.codec_context.pix_fmt) == ("ffv1", "gbrp10le")
    assert stored_samples(tmp_path / "out.mkv") == stored_samples(source)
    assert _frame_rate(tmp_path / "out.mkv") == 24
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mov", "--no-progress", "--fps", "25")
    assert code == 0, err
    with av.open(str(tmp_path / "out.mov")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec.canonical_name == "prores" and stream.codec_context.profile == "4444"
        assert stream.average_rate == 25 and stream.frames == 5


def _with_scanner_header(path: Path, rate: float, timecode: str) -> None:
    """FFmpeg's DPX file (its picture right after the generic header) as a scanner writes it:
    with the film and TV headers, which hold the frame rate and the frame's SMPTE timecode."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"XPDS"  # little-endian
    picture = struct.unpack("<I", data[4:8])[0]
    data[picture:picture] = b"\xff" * (2048 - picture)
    data[4:8] = data[808:812] = struct.pack("<I", 2048)  # the file's and the image element's data offsets
    data[16:20] = struct.pack("<I", len(data))
    data[1724:1728] = struct.pack("<f", rate)  # the film header's frame rate
    digits = timecode.replace(":", "")
    data[1920:1924] = struct.pack("<I", int(digits, 16))  # the TV header's timecode, in BCD
    path.write_bytes(bytes(data))


def test_a_scanners_dpx_header_gives_the_rate_and_the_timecode(tmp_path: Path, cli, caplog) -> None:
    """A DPX scan's own frame rate (23.976, as a float) and timecode are IN's: OUT is at
    24000/1001 and its container carries the first frame's timecode, which --start takes too."""
    files = write_image_sequence(tmp_path, "reel.%04d.dpx", [moving_pattern(64, 48)(i) for i in range(4)],
                                 codec="dpx", pix_fmt="gbrp10le", first=1)
    for number, file in enumerate(files):
        _with_scanner_header(file, 24000 / 1001, f"01:00:00:{12 + number:02d}")
    code, _, err = cli("restore", "--model", "none", tmp_path / "reel.%04d.dpx", tmp_path / "out.mov", "--no-progress")
    assert code == 0, err
    assert "carry no frame rate" not in caplog.text
    with av.open(str(tmp_path / "out.mov")) as container:
        assert container.streams.video[0].average_rate == Fraction(24000, 1001)
    for name, args, first in (("out.mov", [], "01:00:00:12"), ("late.mkv", ["--start", "01:00:00:14"], "01:00:00:14")):
        if args:
            code, _, err = cli("restore", "--model", "none", tmp_path / "reel.%04d.dpx", tmp_path / name,
                               "--no-progress", *args)
            assert code == 0, err
        code, out, _ = cli("probe", tmp_path / name)
        assert code == 0 and f"timecode: {first} at the first frame" in out, out
    assert len(read_video(tmp_path / "late.mkv").frame_pts) == 2


def test_the_faces_of_a_tiff_sequence_are_restored(tmp_path: Path, cli, tiny_osdface) -> None:  # noqa: F811
    """A TIFF plate's faces are restored through the whole pipeline, in resumable segments; the
    sidecar names the sequence and its files' size, and the run's fingerprint changes when one of
    its files does."""
    clip = moving_face_clip(6, 320, 240)
    files = write_image_sequence(tmp_path, "plate.%04d.tif", clip.frames, codec="tiff", pix_fmt="rgb24", first=1)
    source, output = tmp_path / "plate.####.tif", tmp_path / "out.mkv"
    code, out, err = cli("restore", source, output, "--weights", tiny_osdface.release, "--base", tiny_osdface.base,
                         "--device", "cpu", "--no-progress", "--segment-frames", "2", "--fps", "25")
    assert code == 0, err
    assert "6 faces restored in 6 frames" in out, out
    restored = read_video(output, images=True)
    assert _frame_rate(output) == 25 and len(restored.images) == 6
    assert max(np.abs(after.astype(int) - before).max() for after, before in zip(restored.images, clip.frames)) > 10
    sidecar = json.loads(Path(f"{output}.vidface.json").read_text())
    assert sidecar["input"]["name"] == "plate.####.tif"
    assert sidecar["input"]["size"] == sum(file.stat().st_size for file in files)
    before = fingerprint(source)
    files[3].write_bytes(files[2].read_bytes())
    assert fingerprint(source) != before and fingerprint(source)["files"] == 6


def test_a_tiff_whose_tags_are_not_utf8_is_read(tmp_path: Path, cli) -> None:
    """A TIFF's tags may hold any bytes (its Software tag here starts with 0xFF), which PyAV fails
    to decode as a picture's tags: such a picture is read, without a timecode."""
    (still,) = write_image_sequence(tmp_path, "still.%d.tif", [moving_pattern(32, 24)(0)], codec="tiff",
                                    pix_fmt="rgb24", first=1)
    data = still.read_bytes()
    still.write_bytes(data.replace(b"Lavc", b"\xffavc"))
    with av.open(str(still)) as container:
        with pytest.raises(UnicodeDecodeError):
            next(container.decode(video=0)).metadata  # noqa: B018 (the premise)
    code, out, err = cli("probe", still)
    assert code == 0 and "tiff 32x24" in out and "timecode" not in out, err


@pytest.mark.parametrize("output", ["still.tif", "frames.%04d.png", "scan.######.dpx"])
def test_an_image_out_is_refused(output: str, tmp_path: Path, cli) -> None:
    """OUT is a video file: an image name is refused in one line before anything is read."""
    write_image_sequence(tmp_path, "in.%02d.tif", [moving_pattern(32, 24)(i) for i in range(2)], codec="tiff",
                         pix_fmt="rgb24", first=1)
    code, _, err = cli("restore", "--model", "none", tmp_path / "in.##.tif", tmp_path / output)
    assert code == 1 and f"output {output!r} names an image; vidface writes video files: end it in .mkv" in err
    assert len(err.splitlines()) == 1 and sorted(path.name for path in tmp_path.iterdir()) == ["in.01.tif", "in.02.tif"]


def test_a_sequence_read_at_another_rate_starts_over(tmp_path: Path, caplog) -> None:
    """An image sequence's files do not change with --fps, but its frames' times do: a run
    interrupted at 24 fps and run again at 25 starts over, instead of joining segments timed at
    24 fps into a 25 fps OUT, and gives what an uninterrupted run at 25 gives."""
    from resume_tools import interrupting_box, same_video, transcode_resumable
    from vidface.pipeline import ResumableInterrupt, TimeRange

    write_image_sequence(tmp_path, "scan.%04d.dpx", [moving_pattern(32, 24)(i) for i in range(12)], codec="dpx",
                         pix_fmt="gbrp10le", first=1)
    source, output = tmp_path / "scan.####.dpx", tmp_path / "out.mkv"
    with pytest.raises(ResumableInterrupt):
        transcode_resumable(source, output, 4, 0, 0, interrupting_box(9), time_range=TimeRange(frame_rate=Fraction(24)))
    caplog.set_level("INFO", logger="vidface")
    at_25 = TimeRange(frame_rate=Fraction(25))
    assert transcode_resumable(source, output, 4, 0, 0, time_range=at_25).resumed == 0
    assert "starting over" in caplog.text and _frame_rate(output) == 25
    transcode_resumable(source, tmp_path / "reference.mkv", 4, 0, 0, time_range=at_25)
    same_video(output, tmp_path / "reference.mkv")
