"""`--codec auto`, the default: a master (lossless, or an edit suite's intermediate) is written
in its own codec where OUT's container holds it, other video in H.264, and a container that
holds no H.264 gets its own codec instead of a refusal."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import read_video, stored_samples, write_video
from vidface.io.probe import probe


def audio_samples(path: Path) -> np.ndarray:
    """Every sample of the first audio stream, decoded."""
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])


def video_of(path: Path) -> tuple[str, str]:
    """OUT's video codec (FFmpeg's canonical name) and pixel format."""
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.codec.canonical_name, context.pix_fmt


@pytest.mark.parametrize("source_codec, pix_fmt, source_name, output, kept, lossless", [
    ("ffv1", "yuva420p", "in.mkv", "out.mkv", "ffv1", True),        # an archive's master, with a matte
    ("ffv1", "yuv422p10le", "in.mkv", "out.avi", "ffv1", True),
    ("qtrle", "argb", "in.mov", "out.mov", "qtrle", True),          # QuickTime Animation
    ("png", "rgb48be", "in.mov", "out.mov", "png", True),           # 16-bit RGB
    ("prores_ks", "yuva444p10le", "in.mov", "out.mxf", "prores", False),  # ProRes 4444, its alpha kept
    ("libx264", "yuv420p", "in.mp4", "out.mkv", "h264", False),     # delivery video: H.264, as before
    ("mpeg2video", "yuv420p", "in.ts", "out.mp4", "h264", False),
])
def test_auto_keeps_a_masters_codec(source_codec: str, pix_fmt: str, source_name: str, output: str, kept: str,
                                    lossless: bool, tmp_path: Path, cli, caplog) -> None:
    """A master comes back in its own codec and pixel format, so a run that restores nothing
    gives every stored sample of a lossless one back; other video is written in H.264."""
    source = write_video(tmp_path / source_name, frames=4, size=(64, 48), codec=source_codec, pix_fmt=pix_fmt,
                         codec_options={"profile": "4444"} if source_codec == "prores_ks" else None)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress")
    assert code == 0, err
    codec, out_pix_fmt = video_of(tmp_path / output)
    assert codec == kept
    assert "lossy codec" not in caplog.text
    if lossless:
        assert out_pix_fmt == video_of(source)[1]
        assert stored_samples(tmp_path / output) == stored_samples(source)
    if kept == "prores":
        assert av.VideoFormat(out_pix_fmt).components[-1].is_alpha


def test_auto_keeps_prores_4444_xq(tmp_path: Path, cli) -> None:
    """ProRes's encoder, left to choose, codes 4:4:4 as 4444: a 4444 XQ master stays XQ, and
    the other profiles come back in the encoder's choice, HQ for 4:2:2."""
    for profile, pix_fmt, kept in (("4444xq", "yuv444p10le", "XQ"), ("lt", "yuv422p10le", "HQ")):
        source = write_video(tmp_path / f"{profile}.mov", frames=2, size=(64, 48), codec="prores_ks",
                             pix_fmt=pix_fmt, codec_options={"profile": profile})
        output = tmp_path / f"out_{profile}.mov"
        code, _, err = cli("restore", "--model", "none", source, output, "--no-progress")
        assert code == 0, err
        with av.open(str(output)) as container:
            assert container.streams.video[0].codec_context.profile == kept


@pytest.mark.parametrize("name, options, fields, cid", [
    ("dnxhd120i.mov", {"b": "120M", "flags": "+ildct"}, "tff", 1242),  # DNxHD 120, 1080i
    ("dnxhd185.mxf", {"b": "185M"}, None, 1238),                       # DNxHD 185, 1080p
])
def test_auto_keeps_dnxhd_as_dnxhd(name: str, options: dict, fields: str | None, cid: int, tmp_path: Path, cli,
                                   caplog) -> None:
    """The dnxhd encoder, left to choose, codes DNxHR, which has no interlaced profile: a DNxHD
    master comes back in its own compression ID (its bitrate, its fields), as Avid reads it."""
    source = write_video(tmp_path / name, frames=2, size=(1920, 1080), fps=25, codec="dnxhd", pix_fmt="yuv422p",
                         codec_options={"profile": "dnxhd", **options}, fields=fields)
    output = tmp_path / f"out{source.suffix}"
    code, _, err = cli("restore", "--model", "none", source, output, "--no-progress")
    assert code == 0, err
    for path in (source, output):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            first = bytes(next(packet for packet in container.demux(stream) if packet.size))
            assert stream.codec_context.profile == "DNXHD" and int.from_bytes(first[0x28:0x2C], "big") == cid
            assert next(container.decode(stream)).interlaced_frame == bool(fields)
    assert "cannot code fields" not in caplog.text


def test_auto_keeps_a_dv_tape_capture_in_dv(tmp_path: Path, cli, caplog) -> None:
    """A DV capture comes back in DV, its pixel aspect, field order and sound with it, in every
    container that holds DV, its own .dv included (whose muxer takes sound beside DV alone):
    decoded DV coded again as DV returns within a level of itself, where H.264 would change it
    far more. Matroska, which holds no DV, gets H.264 and a warning naming the containers that
    keep DV."""
    source = write_video(tmp_path / "tape.dv", frames=3, size=(720, 576), fps=25, codec="dvvideo", fields="bff",
                         audio="pcm_s16le")
    sound = audio_samples(source)
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        aspect = stream.sample_aspect_ratio
        before = [frame.to_ndarray(format="yuv420p").astype(int) for frame in container.decode(stream)]
    assert aspect == Fraction(16, 15) and probe(source).video.field_order == "bb"
    for output in ("out.dv", "out.mov", "out.avi"):
        code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress")
        assert code == 0, err
        with av.open(str(tmp_path / output)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.codec.canonical_name == "dvvideo"
            assert stream.sample_aspect_ratio == aspect
            after = [frame.to_ndarray(format="yuv420p").astype(int) for frame in container.decode(stream)]
        assert probe(tmp_path / output).video.field_order == "bb"
        differences = [np.abs(a - b) for a, b in zip(before, after)]
        assert len(after) == 3 and max(d.max() for d in differences) <= 1 and np.mean(differences) < 0.05
        assert np.array_equal(audio_samples(tmp_path / output), sound)
    assert "lossy codec" not in caplog.text and "pixel aspect" not in caplog.text
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--no-progress")
    assert code == 0 and video_of(tmp_path / "out.mkv")[0] == "h264", err
    assert "not in IN's dvvideo: matroska files cannot hold it; to keep it, write .mov or .mxf or .avi" in caplog.text


@pytest.mark.parametrize("source_codec, pix_fmt, source_name, output, chosen, keep_in", [
    ("libx264", "yuv420p", "in.mp4", "out.webm", "vp9", None),          # WebM holds no H.264
    ("libx264", "yuv420p", "in.mp4", "out.mpg", "mpeg2video", None),    # nor a program stream, keeping times
    ("libx264", "yuv420p", "in.mp4", "out.mxf", "mpeg2video", None),    # broadcast's MXF is MPEG-2
    ("ffv1", "yuv420p", "in.mkv", "out.webm", "vp9", ".mkv"),
    ("prores_ks", "yuv422p10le", "in.mov", "out.mp4", "h264", ".mov"),
    ("qtrle", "rgb24", "in.mov", "out.mkv", "h264", ".mov"),
])
def test_auto_takes_a_codec_outs_container_holds(source_codec: str, pix_fmt: str, source_name: str, output: str,
                                                 chosen: str, keep_in: str | None, tmp_path: Path, cli,
                                                 caplog) -> None:
    """Where OUT's container holds no master codec of IN's, its own codec is used where it has one
    (VP9 in WebM, MPEG-2 in program streams and MXF), else H.264; where a master's codec is left
    for a lossy one, the run says so before it writes, and names containers that would keep it."""
    source = write_video(tmp_path / source_name, frames=4, size=(64, 48), codec=source_codec, pix_fmt=pix_fmt)
    code, out, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress", "--no-audio")
    assert code == 0, err
    assert video_of(tmp_path / output)[0] == chosen
    times = [np.array(read_video(path).frame_pts, dtype=float) for path in (source, tmp_path / output)]
    np.testing.assert_allclose(times[1] - times[1][0], times[0] - times[0][0], atol=0.001)  # WebM counts in ms
    warned = [record.getMessage() for record in caplog.records if "lossy codec" in record.getMessage()]
    if keep_in is None:
        assert warned == []
    else:
        (message,) = warned
        assert f"lossy codec, not in IN's {video_of(source)[0]}: " in message and keep_in in message, message


def test_a_codec_given_by_name_is_kept(tmp_path: Path, cli) -> None:
    """--codec names the encoder: an FFV1 master is written in H.264 when asked, and H.264 into
    WebM or Ogg is refused before anything is written. Left to auto, FFV1 stays, and a config
    preset's encoder speed preset stays with the encoders that have one."""
    source = write_video(tmp_path / "in.mkv", frames=4, size=(64, 48), codec="ffv1")
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--codec", "libx264",
                         "--dry-run")
    assert code == 0 and "encode  libx264 yuv420p" in out, err
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.webm", "--codec", "libx264")
    assert code == 1 and "cannot use encoder 'libx264' for webm" in err
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.ogv", "--codec", "libx264")
    assert code == 1 and "ogv files cannot hold libx264 video" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.mkv"]
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--dry-run", "--config", "fast")
    assert code == 0, err
    # the fast preset's x264 speed preset is not handed to FFV1, which has none
    assert [line.strip() for line in out.splitlines() if line.startswith("encode")] == ["encode  ffv1 yuv420p"]
