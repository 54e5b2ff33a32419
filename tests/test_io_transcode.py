"""`vidface restore --model none` is a faithful transcoder: frames, timestamps, streams, tags."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import (AudioTrack, Subtitles, captions, field_orders, moving_pattern, read_video, subtitle_cues,
                   with_captions, write_video)
from vidface.io.decode import decode_frames
from vidface.io.pixels import plane_rows
from vidface.io.probe import ColourTags, bit_depth, probe
from vidface.io.source import demuxed, open_input


def _check_faithful(source: Path, output: Path, *, pix_fmt: str | None = None) -> None:
    before, after = read_video(source), read_video(output)
    assert len(after.frame_pts) == len(before.frame_pts)
    assert after.frame_pts == before.frame_pts
    # The video's length survives re-encoding: Matroska stores every frame's duration; MP4
    # stores decode-order sample durations, so there the track's duration is what must hold.
    if source.suffix == ".mkv":
        assert after.durations == before.durations
    else:
        assert before.duration is not None and after.duration == before.duration
    assert after.rotation == before.rotation
    assert after.size == before.size
    assert after.pix_fmt == (pix_fmt or before.pix_fmt)
    assert after.stream_types == before.stream_types
    assert after.attachments == before.attachments
    # every non-video packet: same bytes and pts, and its duration wherever the source has one
    assert after.packets.keys() == before.packets.keys()
    for index, packets in before.packets.items():
        assert [(data, pts) for data, pts, _ in after.packets[index]] == [(data, pts) for data, pts, _ in packets]
        assert all(b[2] is None or a[2] == b[2] for a, b in zip(after.packets[index], packets))
    for key in ("title", "creation_time", "comment"):
        assert after.metadata.get(key) == before.metadata.get(key)
    for b, a in zip(before.stream_metadata, after.stream_metadata):
        assert a.get("language") == b.get("language")
        assert a.get("title") == b.get("title")


CASES = {
    "h264_aac_mp4": dict(suffix=".mp4", audio="aac",
                         metadata={"title": "A title", "creation_time": "2024-05-06T07:08:09.000000Z"}),
    "opus_mkv": dict(suffix=".mkv", audio=AudioTrack("libopus", language="fra")),
    "two_audio_subtitles_mkv": dict(
        suffix=".mkv", audio=[AudioTrack("aac", language="eng", title="Main"),
                              AudioTrack("libopus", language="deu", title="Commentary")],
        subtitles=Subtitles(language="spa", cues=3), metadata={"title": "Two tracks", "comment": "kept"}),
    "no_audio_mp4": dict(suffix=".mp4"),
    "attachment_mkv": dict(suffix=".mkv", audio="aac", attachments={"font.ttf": b"\x00\x01font" * 50}),
    "attachment_alone_mkv": dict(suffix=".mkv", attachments={"font.ttf": b"\x00\x01font" * 50}),  # no packets to copy
    "vfr_mp4": dict(suffix=".mp4", vfr=True, audio="aac"),
    "vfr_mkv": dict(suffix=".mkv", vfr=True),
    "hevc_10bit_mkv": dict(suffix=".mkv", codec="libx265", pix_fmt="yuv420p10le", audio="aac"),
    "odd_size_444_mp4": dict(suffix=".mp4", size=(79, 59), pix_fmt="yuv444p"),
    "rotated_90_mp4": dict(suffix=".mp4", rotation=90, audio="aac"),
    "bframes_mp4": dict(suffix=".mp4", bframes=3, audio="aac", frames=30),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_restore_none_keeps_everything(case: str, tmp_path: Path, cli) -> None:
    options = dict(CASES[case])
    suffix = options.pop("suffix")
    options.setdefault("frames", 20)
    source = write_video(tmp_path / f"in{suffix}", **options)
    output = tmp_path / f"out{suffix}"
    code, out, err = cli("restore", "--model", "none", source, output, "--model", "none")
    assert code == 0, err
    assert str(output) in out
    _check_faithful(source, output)
    if "attachments" in options:
        assert read_video(output).attachments == options["attachments"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, output.name])


def test_bframes_case_really_has_bframes(tmp_path: Path) -> None:
    import av

    source = write_video(tmp_path / "b.mp4", bframes=3, frames=30)
    with av.open(str(source)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert any(p.pts != p.dts for p in packets)


def test_odd_420_source_is_encoded_444_at_its_size(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "odd.mkv", size=(319, 239), codec="libvpx-vp9", frames=6)
    output = tmp_path / "odd.mp4"
    code, _, err = cli("restore", "--model", "none", source, output)
    assert code == 0, err
    after = read_video(output)
    assert after.size == (319, 239) and after.pix_fmt == "yuv444p"
    assert after.frame_pts == read_video(source).frame_pts


def test_mp4_subtitles_are_copied(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "sub.mp4", subtitles=Subtitles(language="eng", cues=2), audio="aac")
    output = tmp_path / "out.mp4"
    assert cli("restore", "--model", "none", source, output)[0] == 0
    before, after = read_video(source), read_video(output)
    # mov_text cues are identical; MP4 muxers add their own empty gap samples between cues
    cues = lambda s: [p for p in s.packets[2] if len(p[0]) > 2]  # noqa: E731
    assert cues(after) == cues(before) and len(cues(before)) == 2
    assert after.packets[1] == before.packets[1]
    assert after.stream_metadata[2]["language"] == "eng"


def test_encoder_flags(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mkv", frames=10, audio="aac")
    output = tmp_path / "out.mkv"
    code, _, err = cli("restore", "--model", "none", source, output, "--codec", "libx265", "--crf", "30",
                       "--pix-fmt", "yuv420p10le", "--encoder-opt", "x265-params=log-level=error:keyint=5",
                       "--encoder-opt", "preset=ultrafast", "--no-audio")
    assert code == 0, err
    after = read_video(output)
    assert after.codec == "hevc" and after.pix_fmt == "yuv420p10le"
    assert after.stream_types == ["video"]
    assert after.frame_pts == read_video(source).frame_pts


@pytest.mark.parametrize("source_name, output, codec_args, converted_to", [
    ("in.mp4", "out.mkv", [], "ass"), ("in.mkv", "out.mp4", [], "mov_text"), ("in.mov", "out.mkv", [], "ass"),
    ("in.mkv", "out.webm", ["--codec", "libvpx-vp9", "--no-audio"], "webvtt")])
def test_text_subtitles_are_converted_where_the_container_holds_theirs_not(
        source_name: str, output: str, codec_args: list[str], converted_to: str, tmp_path: Path, cli) -> None:
    """MP4's mov_text into Matroska, SubRip into MP4 or WebM: the container's own text format
    carries every cue, its text and times, and the stream's language; the dry run says so."""
    source = write_video(tmp_path / source_name, frames=6, audio="aac", subtitles=Subtitles(cues=3, language="fra"))
    code, out, err = cli("restore", "--model", "none", source, tmp_path / output, "--dry-run", *codec_args)
    assert code == 0, err
    subtitle_codec = read_video(source).stream_codecs[-1]
    assert f"convert #2 subtitle {subtitle_codec} [fra] to {converted_to}" in out
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress", *codec_args)
    assert code == 0, err
    before, after = read_video(source), read_video(tmp_path / output)
    assert after.stream_codecs[-1] == converted_to and after.stream_metadata[-1]["language"] == "fra"
    # on the video's timeline (MP4's AAC priming moves Matroska's whole timeline by 21 ms)
    moved = float(after.frame_pts[0] - before.frame_pts[0])
    converted = [(round(start - moved, 6), round(end - moved, 6), text)
                 for start, end, text in subtitle_cues(tmp_path / output)]
    assert converted == subtitle_cues(source) == [(float(cue), cue + 0.8, f"cue {cue}") for cue in range(3)]


@pytest.mark.parametrize("source_name, audio, output, words", [
    ("in.mkv", "aac", "out.ts", "mpegts files cannot hold stream #2 (subtitle subrip); write a .mkv instead"),
    ("in.mp4", "aac", "out.avi", "avi files cannot hold stream #2 (subtitle mov_text); write a .mkv instead"),
    ("in.mov", "pcm_s16le", "out.ts", "mpegts files cannot hold stream #1 (audio pcm_s16le); write a .mkv instead "
                                      "or pass --no-audio"),
    ("in.mkv", "flac", "out.mov", "mov files cannot hold stream #1 (audio flac); write a .mkv instead or pass --no-audio")])
def test_a_stream_the_container_cannot_hold_is_refused_cleanly(source_name: str, audio: str, output: str, words: str,
                                                               tmp_path: Path, cli) -> None:
    """MPEG-TS writes a codec it has no stream type for as private data, which comes back as a
    data stream of no codec; MOV's muxer lists FLAC and refuses it when the header is written:
    vidface refuses either before writing, as for a muxer that refuses outright."""
    source = write_video(tmp_path / source_name, frames=6, audio=audio, subtitles=Subtitles())
    for extra in (["--dry-run"], ["--no-progress"]):
        code, _, err = cli("restore", "--model", "none", source, tmp_path / output, *extra)
        assert code == 1
        assert err == f"vidface: error: {words}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [source_name]


def test_a_blu_ray_stream_is_written_in_m2ts_packets(tmp_path: Path, cli) -> None:
    """.m2ts: 192-byte packets (a 4-byte arrival time before each 188-byte TS packet), as
    Blu-ray players and authoring tools read them, also though OUT is written under a temporary
    name first."""
    source = write_video(tmp_path / "in.mkv", frames=6, audio="ac3")
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.m2ts", "--no-progress")
    assert code == 0, err
    data = (tmp_path / "out.m2ts").read_bytes()
    assert len(data) % 192 == 0 and data[4::192] == b"G" * (len(data) // 192)
    before, after = read_video(source).frame_pts, read_video(tmp_path / "out.m2ts").frame_pts
    assert [t - after[0] for t in after] == [t - before[0] for t in before]


def test_existing_output_needs_overwrite(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mp4", frames=6)
    output = tmp_path / "out.mp4"
    output.write_bytes(b"precious")
    code, _, err = cli("restore", "--model", "none", source, output)
    assert code == 1 and "-y" in err
    assert output.read_bytes() == b"precious"
    assert cli("restore", "--model", "none", source, output, "-y")[0] == 0
    assert len(read_video(output).frame_pts) == 6


def test_input_is_never_modified(tmp_path: Path, cli) -> None:
    source = write_video(tmp_path / "in.mkv", frames=8, audio="aac")
    data = source.read_bytes()
    assert cli("restore", "--model", "none", source, tmp_path / "out.mkv")[0] == 0
    assert source.read_bytes() == data


@pytest.mark.parametrize("codec, extension", [("ffv1", "mkv"), ("jpeg2000", "mxf")])
def test_pass_through_is_bit_exact_with_a_lossless_encoder(codec: str, extension: str, tmp_path: Path, cli) -> None:
    """Frames the processor leaves alone reach the encoder untouched: through FFV1 or JPEG 2000
    (lossless, as vidface sets it) every decoded sample of OUT equals IN's, 10-bit included."""
    import av
    import numpy as np

    source = write_video(tmp_path / "in.mkv", frames=8, codec="libx265", pix_fmt="yuv420p10le", size=(64, 48))
    output = tmp_path / f"out.{extension}"
    assert cli("restore", "--model", "none", source, output, "--codec", codec)[0] == 0

    def planes(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [np.frombuffer(p, np.uint16).reshape(p.height, p.line_size // 2)[:, : p.width].copy()
                    for f in container.decode(video=0) for p in f.planes]

    before, after = planes(source), planes(output)
    assert len(before) == len(after) == 8 * 3
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
    assert read_video(output).pix_fmt == "yuv420p10le"


def test_an_output_that_loses_the_pixel_aspect_says_so(tmp_path: Path, cli, caplog) -> None:
    """An anamorphic picture (16:9 PAL SD, 64:45 pixels) keeps its shape in OUT where the
    encoder codes it or the container takes it from any encoder; where neither does (FFV1 in
    Matroska), the run warns before it writes. The warning is given exactly where OUT loses it.
    `vidface probe` shows the pixel aspect and the size the picture is shown at."""
    source = write_video(tmp_path / "wide.mkv", frames=2, size=(270, 288), sample_aspect=Fraction(64, 45))
    code, out, _ = cli("probe", source)
    assert code == 0 and "rotation 0, pixel aspect 64:45 (shown 384x288), progressive" in out, out
    code, out, _ = cli("probe", write_video(tmp_path / "square.mkv", frames=2))
    assert code == 0 and "rotation 0, progressive" in out, out
    for codec, extension in (("libx264", "mkv"), ("ffv1", "mkv"), ("prores_ks", "mov"), ("ffv1", "mp4"),
                             ("rawvideo", "avi"), ("dnxhd", "mxf"), ("mpeg2video", "avi")):
        output = tmp_path / f"out_{codec}.{extension}"
        caplog.clear()
        code, _, err = cli("restore", "--model", "none", source, output, "--codec", codec, "--no-progress")
        assert code == 0, err
        with av.open(str(output)) as container:
            kept = container.streams.video[0].sample_aspect_ratio == Fraction(64, 45)
        said = caplog.text
        warned = "lose IN's pixel aspect 64:45" in said and "shown 270x288 where IN is shown 384x288" in said
        assert warned != kept, (codec, extension, said)


def test_quicktime_timecode_survives(tmp_path: Path, cli) -> None:
    """A QuickTime timecode track (a data stream of no codec FFmpeg can copy) is written again
    from the video's timecode tag, as the MOV/MP4 muxer does."""
    source = write_video(tmp_path / "in.mov", frames=12, audio="aac", video_metadata={"timecode": "01:02:03:04"})
    before = read_video(source)
    assert before.stream_types == ["video", "audio", "data"]
    output = tmp_path / "out.mp4"
    code, _, err = cli("restore", "--model", "none", source, output)
    assert code == 0, err
    after = read_video(output)
    assert after.stream_types == ["video", "audio", "data"]
    assert after.stream_metadata[0]["timecode"] == "01:02:03:04"
    assert after.packets[1] == before.packets[1]


@pytest.mark.parametrize("extension", ["mp4", "m4v", "mkv", "mov", "avi", "ts", "m2ts", "flv", "3gp", "nut", "mxf",
                                       "asf", "wmv", "webm", "y4m", "ffv1.avi"])
def test_every_frame_keeps_its_time_in_every_output_container(extension: str, tmp_path: Path, cli) -> None:
    """x264 makes B-frames by default; containers that store one time per packet in decode order
    (AVI, ASF) or whose muxer writes no reordering (MXF) get none, so every frame comes out at its own
    time, measured from the first (to a millisecond: Matroska counts milliseconds). The AAC
    audio starts before the first frame (its priming): moving the streams by that much put AVI's
    second frame a frame late (seen with FFV1). WebM takes VP9, and Y4M raw pictures at its one
    frame rate; those two and MXF hold no AAC."""
    source = write_video(tmp_path / "in.mkv", frames=16, size=(96, 64), bframes=3, audio="aac")
    output = tmp_path / f"out.{extension}"
    flags = {"webm": ["--codec", "libvpx-vp9", "--no-audio"], "y4m": ["--codec", "rawvideo", "--no-audio"],
             "mxf": ["--no-audio"], "ffv1.avi": ["--codec", "ffv1"]}.get(extension, [])
    code, out, err = cli("restore", "--model", "none", source, output, "--no-progress", *flags)
    assert code == 0, err
    before, after = read_video(source).frame_pts, read_video(output).frame_pts
    assert len(after) == len(before)
    assert [float(t - after[0]) for t in after] == pytest.approx([float(t - before[0]) for t in before], abs=1.5e-3)


@pytest.mark.parametrize("extension", ["mpg", "vob", "m2v"])
def test_mpeg_program_streams_keep_every_frame_time_with_mpeg2_video(extension: str, tmp_path: Path, cli) -> None:
    """A program stream marks only the first frame that begins in each pack with its time:
    readers work out the others from MPEG-2 video (B-frames included), not from H.264, which is
    refused there in one line, by --dry-run too, before anything is written (--codec auto takes
    MPEG-2). DVD's AC-3 audio is copied (a raw .m2v holds video only)."""
    source = write_video(tmp_path / "in.mkv", frames=16, size=(96, 64), bframes=3, audio=AudioTrack("ac3"))
    output = tmp_path / f"out.{extension}"
    audio = ["--no-audio"] if extension == "m2v" else []
    code, out, err = cli("restore", "--model", "none", source, output, "--no-progress", *audio,
                         "--codec", "mpeg2video", "--encoder-opt", "b=2M", "--encoder-opt", "bf=2")
    assert code == 0, err
    before, after = read_video(source), read_video(output)
    assert [float(t - after.frame_pts[0]) for t in after.frame_pts] == pytest.approx(
        [float(t - before.frame_pts[0]) for t in before.frame_pts], abs=1.5e-3)  # Matroska counts milliseconds
    if not audio:
        assert [data for data, _, _ in after.packets[1]] == [data for data, _, _ in before.packets[1]]
    if extension != "m2v":
        for dry_run in ([], ["--dry-run"]):
            code, out, err = cli("restore", "--model", "none", source, tmp_path / f"h264.{extension}",
                                 "--codec", "libx264", *dry_run)
            assert code == 1 and err.startswith("vidface: error: MPEG program streams (") and "mpeg2video" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mkv", output.name])
        code, out, err = cli("restore", "--model", "none", source, tmp_path / f"auto.{extension}", "--dry-run")
        assert code == 0 and "encode  mpeg2video" in out, err


@pytest.mark.parametrize("codec", ["aac", "ac3"])
def test_broadcast_audio_is_copied_into_mpeg_ts(codec: str, tmp_path: Path, cli) -> None:
    """MPEG-TS's muxer lists only MP2 as its audio codec, yet carries AAC (as ADTS) and AC-3: the
    audio is copied, every packet at its time against the video, its payload unchanged."""
    source = write_video(tmp_path / "in.mkv", frames=16, size=(96, 64), audio=AudioTrack(codec))
    output = tmp_path / "out.ts"
    code, out, err = cli("restore", "--model", "none", source, output, "--no-progress")
    assert code == 0, err
    before, after = read_video(source), read_video(output)
    assert after.stream_types == ["video", "audio"]
    header = 7 if codec == "aac" else 0  # ADTS, which AAC in MPEG-TS needs before each packet
    assert [data[header:] for data, _, _ in after.packets[1]] == [data for data, _, _ in before.packets[1]]
    assert [t - after.frame_pts[0] for _, t, _ in after.packets[1]] == pytest.approx(
        [t - before.frame_pts[0] for _, t, _ in before.packets[1]], abs=1e-4)


def test_an_avi_restored_into_avi_keeps_every_frame_time_the_first_s_too(tmp_path: Path, cli) -> None:
    """AVI counts frames from its first: an AVI restored into AVI gives every frame, the first
    included, the time it had (written at its time rather than at 0, the first frame left an
    empty one after it, and every later frame came a frame late)."""
    source = write_video(tmp_path / "in.avi", frames=24, size=(96, 64), bframes=3)
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.avi", "--no-progress")
    assert code == 0, err
    assert read_video(tmp_path / "out.avi").frame_pts == sorted(read_video(source).frame_pts)


@pytest.mark.parametrize("codec", ["aac", "ac3", "pcm_s16le"])
def test_audio_copied_from_avi_into_avi_keeps_its_packet_times(codec: str, tmp_path: Path, cli) -> None:
    """AAC and AC-3 read from an AVI carry their largest frame's size as block align, which the
    AVI muxer wrote as a sample size: the copy read back its first packets all at 0 and its track
    a fraction of its length. PCM's sample size is the block align, and stays."""
    source = write_video(tmp_path / "in.avi", frames=24, size=(96, 64), audio=codec)
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.avi", "--no-progress")
    assert code == 0, err
    before, after = read_video(source).packets[1], read_video(tmp_path / "out.avi").packets[1]
    assert len(before) > 30 and [data for data, _, _ in after] == [data for data, _, _ in before]
    assert [time for _, time, _ in after] == [time for _, time, _ in before]


@pytest.mark.parametrize("extension", ["avi", "asf"])
def test_h264_with_b_frames_in_avi_and_asf_gives_each_frame_its_own_time(extension: str, tmp_path: Path, cli) -> None:
    """AVI and ASF store one time per packet, in decode order, and H.264 with B-frames is
    decoded in another order than shown: the decoder's frames came with their packets' times,
    out of place. Each frame takes its own time: the file gives the pictures and times of the
    same video read from Matroska, and a preview range and a run in resumable segments, which
    seek into it, give the same frames as reading it whole."""
    frames = dict(frames=36, size=(96, 64), bframes=3, codec_options={"g": "12"})
    reference, source = write_video(tmp_path / "in.mkv", **frames), write_video(tmp_path / f"in.{extension}", **frames)

    def restored(given: Path, name: str, *flags: str):
        code, out, err = cli("restore", "--model", "none", given, tmp_path / name, "--no-progress", "--codec", "ffv1",
                             *flags)  # lossless: OUT's pictures are those decoded
        assert code == 0, err
        return read_video(tmp_path / name, images=True)

    def times(video) -> list[float]:
        return [float(t - video.frame_pts[0]) for t in video.frame_pts]

    whole, expected = restored(source, "whole.mkv"), restored(reference, "reference.mkv")
    assert len(whole.images) == len(expected.images) == 36
    assert all((a == b).all() for a, b in zip(whole.images, expected.images))
    assert times(whole) == pytest.approx(times(expected), abs=1.5e-3)
    segmented = restored(source, "segmented.mkv", "--segment-frames", "8")
    assert all((a == b).all() for a, b in zip(segmented.images, whole.images)) and segmented.frame_pts == whole.frame_pts
    part = restored(source, "part.mkv", "--start", "0.6", "--duration", "0.5")
    first = next(i for i, image in enumerate(whole.images) if (image == part.images[0]).all())
    assert first >= 12 and len(part.images) == 12  # from a frame after the second keyframe, where it seeks to
    assert all((a == b).all() for a, b in zip(part.images, whole.images[first:]))
    assert times(part) == times(whole)[:12]


def test_an_odd_sized_mjpeg_avi_keeps_every_frame_time_and_the_dry_run_says_why(tmp_path: Path, cli) -> None:
    """The case that lost two frames' times: odd-sized 4:2:0 becomes 4:4:4 for x264, in AVI."""
    source = write_video(tmp_path / "in.avi", frames=16, size=(95, 63), codec="mjpeg", pix_fmt="yuvj420p")
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "out.avi", "--no-progress")
    assert code == 0, err
    before, after = read_video(source).frame_pts, read_video(tmp_path / "out.avi").frame_pts
    # AVI stores no times, only frame order: FFmpeg reads H.264 in AVI one frame late throughout
    assert [t - after[0] for t in after] == [t - before[0] for t in before]
    code, out, err = cli("restore", "--model", "none", source, tmp_path / "again.avi", "--dry-run")
    assert "bf=0" in out and "note    no B-frames: AVI keeps a frame's timestamp only" in out


@pytest.mark.parametrize("extension", ["mp4", "mkv"])
def test_tags_that_are_not_utf8_pass_through(extension: str, tmp_path: Path, cli) -> None:
    """Found by tools/fuzz.py (a corrupted MP4 header): a tag whose bytes are not UTF-8 made
    opening the file a traceback. It is read, shown by probe, and written to OUT byte for byte."""
    source = write_video(tmp_path / f"in.{extension}", frames=4, metadata={"title": "Reel 4"})
    data = source.read_bytes()
    source.write_bytes(data.replace(b"Reel 4", b"Reel \x94"))
    for args in (("probe", source), ("probe", source, "--json"),
                 ("restore", "--model", "none", source, tmp_path / f"out.{extension}", "--no-progress")):
        code, out, err = cli(*args)
        assert code == 0, err
    assert b"Reel \x94" in (tmp_path / f"out.{extension}").read_bytes()
    code, out, err = cli("probe", source)
    assert "tag: title=Reel \ufffd" in out.splitlines()


CHAPTERS = [(0.0, 0.25, "Opening"), (0.25, 0.625, "Interview"), (0.625, 1.0, "Credits")]


def _chapters(path: Path) -> list[tuple[float, float, str]]:
    with av.open(str(path)) as container:
        return [(float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]), c["metadata"].get("title"))
                for c in container.chapters()]


@pytest.mark.parametrize(("source", "output"), [("mkv", "mkv"), ("mp4", "mp4"), ("mp4", "mkv"), ("mkv", "mov")])
def test_chapters_are_kept(source: str, output: str, tmp_path: Path, cli, caplog) -> None:
    """Chapters, with their titles; an MP4's chapter track (FFmpeg shows it as a data stream of no
    codec) is written again with the chapters, not left out with a warning nor doubled."""
    path = write_video(tmp_path / f"in.{source}", frames=24, size=(96, 64), audio="aac", chapters=CHAPTERS)
    assert _chapters(path) == CHAPTERS
    with caplog.at_level(logging.INFO, logger="vidface.plan"):
        code, out, err = cli("restore", "--model", "none", path, tmp_path / f"out.{output}", "--no-progress")
    assert code == 0, err
    assert _chapters(tmp_path / f"out.{output}") == CHAPTERS
    assert "leaving out" not in caplog.text
    assert ("chapter track #2 is written again" in caplog.text) == (source == "mp4")
    assert read_video(tmp_path / f"out.{output}").stream_types == read_video(path).stream_types[:2] + (
        ["data"] if output in ("mp4", "mov") else [])
    code, out, err = cli("probe", tmp_path / f"out.{output}")
    assert 'chapter 2: 0.250-0.625 s "Interview"' in out


def test_a_range_keeps_the_chapters_in_it_cut_and_moved(tmp_path: Path, cli) -> None:
    path = write_video(tmp_path / "in.mkv", frames=24, size=(96, 64), chapters=CHAPTERS)
    code, out, err = cli("restore", "--model", "none", path, tmp_path / "out.mkv", "--no-progress",
                         "--start", "0.5", "--duration", "0.25")  # frames 12 to 17
    assert code == 0, err
    assert _chapters(tmp_path / "out.mkv") == [(0.0, 0.125, "Interview"), (0.125, 0.25, "Credits")]


def test_a_container_without_chapters_says_they_are_left_out(tmp_path: Path, cli, caplog) -> None:
    path = write_video(tmp_path / "in.mkv", frames=24, size=(96, 64), chapters=CHAPTERS)
    code, out, err = cli("restore", "--model", "none", path, tmp_path / "out.avi", "--dry-run")
    assert code == 0 and "drop    3 chapters (avi holds none)" in out
    with caplog.at_level(logging.WARNING, logger="vidface.plan"):
        code, out, err = cli("restore", "--model", "none", path, tmp_path / "out.avi", "--no-progress")
    assert code == 0, err
    assert "leaving out the 3 chapters: FFmpeg writes none into avi files" in caplog.text
    assert _chapters(tmp_path / "out.avi") == []
    code, out, err = cli("restore", "--model", "none", path, tmp_path / "out.mkv", "--dry-run")
    assert "copy    3 chapters" in out


def _mean_greys(path: Path) -> tuple[float, float]:
    """The first frame's left and right halves as a player shows their greys (0-255): luma read
    as full range where the frame says so (or its format is a full-range one), else as limited."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    plane, depth = frame.planes[0], bit_depth(frame.format.name)
    luma = np.frombuffer(plane, np.uint16 if depth > 8 else np.uint8).reshape(plane.height, -1)[:, :plane.width]
    luma = luma / 2 ** (depth - 8)
    full = frame.color_range == av.video.reformatter.ColorRange.JPEG or frame.format.name.startswith("yuvj")
    grey = luma if full else (luma - 16) * 255 / 219
    half = plane.width // 2
    return float(grey[:, : half - 8].mean()), float(grey[:, half + 8:].mean())


@pytest.mark.parametrize("pix_fmt", ["yuvj420p", "yuvj422p", "yuvj444p", "yuvj411p", "yuvj440p"])
def test_every_full_range_format_is_written_as_full_range(pix_fmt: str) -> None:
    """FFmpeg's five full-range ("yuvj") formats hold full-range levels, whatever a stream says."""
    from vidface.io.encoder_setup import output_color_range

    ranges = av.video.reformatter.ColorRange
    assert output_color_range("ffv1", pix_fmt, "matroska", ranges.MPEG) == ranges.JPEG


LEVELS_CONVERTED = {("full", "prores_ks", "mov"), ("full", "mpeg2video", "mkv"), ("full", "mpeg4", "mov"),
                    ("full", "v210", "mov"), ("limited", "mjpeg", "mov")}


@pytest.mark.parametrize("codec, extension", [("prores_ks", "mov"), ("mpeg2video", "mkv"), ("mpeg4", "mov"),
                                              ("v210", "mov"), ("mpeg4", "mkv"), ("libx264", "mp4"),
                                              ("mjpeg", "mov"), ("dnxhd", "mov")])
@pytest.mark.parametrize("source_range", ["full", "limited"])
def test_every_encoder_keeps_the_levels_a_player_shows(source_range: str, codec: str, extension: str,
                                                       tmp_path: Path, cli) -> None:
    """A player shows OUT's greys as IN's. A full-range source (an MJPEG camera file) is coded in
    limited range where OUT could not say it is full: MPEG-2 and ProRes are limited by definition,
    and a MOV says nothing of MPEG-4's range. A limited-range source becomes full range for MJPEG,
    which codes YUV in no other. --dry-run says where the levels are converted."""
    images = np.zeros((4, 128, 256, 3), np.uint8)  # DNxHR's smallest picture is 256x120
    images[:, :, :128], images[:, :, 128:] = 64, 192
    source = (write_video(tmp_path / "in.avi", frames=4, size=(256, 128), codec="mjpeg", pix_fmt="yuvj420p",
                          images=images) if source_range == "full" else
              write_video(tmp_path / "in.mp4", frames=4, size=(256, 128), images=images))
    output = tmp_path / f"out.{extension}"
    code, _, err = cli("restore", "--model", "none", source, output, "--no-progress", "--codec", codec)
    assert code == 0, err
    assert _mean_greys(source) == pytest.approx((64, 192), abs=0.6)
    assert _mean_greys(output) == pytest.approx((64, 192), abs=0.6)
    code, out, _ = cli("restore", "--model", "none", source, tmp_path / f"again.{extension}", "--codec", codec,
                       "--dry-run")
    assert code == 0 and ("note    the levels become" in out) == ((source_range, codec, extension) in LEVELS_CONVERTED)


@pytest.mark.parametrize("codec", ["mpeg2video", "mpeg4", "mjpeg"])
def test_encoders_without_a_crf_code_at_a_fixed_quantizer(codec: str, tmp_path: Path, cli) -> None:
    """MPEG-2, MPEG-4 Part 2 and MJPEG, left to their own rate control, aim at 200 kb/s whatever
    the picture: they code at --qscale instead (2 unless set), and at a bitrate the user gives."""
    source = write_video(tmp_path / "in.mp4", frames=12, size=(320, 240))
    sizes, errors = {}, {}
    for name, args in {"default": [], "q2": ["--qscale", "2"], "q24": ["--qscale", "24"],
                       "bitrate": ["--encoder-opt", "b=100k"]}.items():
        output = tmp_path / f"{name}.mkv"
        code, _, err = cli("restore", "--model", "none", source, output, "--no-progress", "--codec", codec, *args)
        assert code == 0, err
        sizes[name] = output.stat().st_size
        errors[name] = float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in
                                      zip(read_video(source, images=True).images,
                                          read_video(output, images=True).images)]))
    assert (tmp_path / "default.mkv").read_bytes() == (tmp_path / "q2.mkv").read_bytes()
    assert sizes["q2"] > 1.5 * sizes["q24"] and errors["q2"] < errors["q24"]
    code, out, _ = cli("restore", "--model", "none", source, tmp_path / "dry.mkv", "--codec", codec,
                       "--encoder-opt", "b=100k", "--dry-run")
    assert code == 0 and "qmax" not in out and "b=100k" in out


@pytest.mark.parametrize("pix_fmt, profile", [("yuv420p", "DNXHR HQ"), ("yuv420p10le", "DNXHR HQX")])
def test_dnxhd_codes_any_picture_size_as_dnxhr(pix_fmt: str, profile: str, tmp_path: Path, cli) -> None:
    """DNxHD proper takes 1080p and 720p only, at set bitrates; any other size is coded as DNxHR,
    high quality at the source's bit depth."""
    source = write_video(tmp_path / "in.mkv", frames=6, size=(320, 176), pix_fmt=pix_fmt,
                         codec="libx265" if pix_fmt.endswith("10le") else "libx264")
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mov", "--no-progress",
                       "--codec", "dnxhd")
    assert code == 0, err
    with av.open(str(tmp_path / "out.mov")) as container:
        assert container.streams.video[0].profile == profile
    assert read_video(tmp_path / "out.mov").frame_pts == read_video(source).frame_pts


HDR10_PARAMS = ("log-level=error:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
                "L(10000000,1):max-cll=1000,400:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc")


@pytest.mark.parametrize("codec", ["libx265", "libx264", "libsvtav1"])
def test_hdr10_metadata_is_kept(codec: str, tmp_path: Path, cli) -> None:
    """An HDR display maps the picture by the mastering display and light levels the source
    carries, and its colour tags (PQ, BT.2020); OUT carries the same (AV1 stores chromaticities
    in 1/65536, luminance in 1/16384 cd/m² at least), and `vidface probe` shows them."""
    source = write_video(tmp_path / "in.mkv", frames=6, size=(256, 128), codec="libx265", pix_fmt="yuv420p10le",
                         codec_options={"x265-params": HDR10_PARAMS})
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--no-progress", "--codec", codec)
    assert code == 0, err
    before, after = probe(source).video.hdr, probe(tmp_path / "out.mkv").video.hdr
    assert before is not None and before.light_levels == (1000, 400) and before.luminance == (Fraction(1, 10000), 1000)
    assert after is not None and after.light_levels == before.light_levels
    close = dict(abs=1 / 16384) if codec == "libsvtav1" else dict(abs=0)
    assert [float(v) for xy in (*after.primaries, after.white_point) for v in xy] == pytest.approx(
        [float(v) for xy in (*before.primaries, before.white_point) for v in xy], **close)
    assert [float(v) for v in after.luminance] == pytest.approx([float(v) for v in before.luminance], **close)
    assert probe(source).video.colour == probe(tmp_path / "out.mkv").video.colour == ColourTags(
        "bt2020nc", "smpte2084", "bt2020")
    code, out, _ = cli("probe", tmp_path / "out.mkv")
    assert code == 0 and "MaxCLL 1000 cd/m², MaxFALL 400 cd/m²" in out and "R(0.6800,0.3200)" in out
    assert "colour: matrix bt2020nc, transfer smpte2084 (HDR10's PQ), primaries bt2020\n" in out
    sdr = write_video(tmp_path / "sdr.mkv", frames=2)
    assert probe(sdr).video.hdr is None and probe(sdr).video.colour == ColourTags()
    assert "hdr:" not in cli("probe", sdr)[1] and "colour:" not in cli("probe", sdr)[1]


def test_a_picture_that_changes_size_is_scaled_to_the_first_with_a_warning(tmp_path: Path, cli, caplog) -> None:
    """A broadcast capture may change picture size mid-stream (an SD advert in HD): OUT keeps the
    first size and every frame, and the run says from which frame it scales."""
    stream = b""
    for width, height in ((128, 96), (160, 120)):
        part = tmp_path / f"{width}.h264"
        write_video(part, frames=10, size=(width, height), bframes=0)  # packets in presentation order
        stream += part.read_bytes()
    (tmp_path / "in.h264").write_bytes(stream)
    with av.open(str(tmp_path / "in.h264")) as raw, av.open(str(tmp_path / "in.ts"), "w") as ts:
        video = ts.add_stream_from_template(raw.streams.video[0])
        for number, packet in enumerate(p for p in raw.demux(video=0) if p.size):
            packet.stream, packet.time_base, packet.pts, packet.dts = video, Fraction(1, 90000), number * 3600, None
            ts.mux(packet)
    code, _, err = cli("restore", "--model", "none", tmp_path / "in.ts", tmp_path / "out.mkv", "--no-progress")
    assert code == 0, err
    assert "picture changes size at frame 10, to 160x120: OUT keeps its first size, 128x96" in caplog.text
    with av.open(str(tmp_path / "out.mkv")) as out:
        assert [(frame.width, frame.height) for frame in out.decode(video=0)] == [(128, 96)] * 20


@pytest.mark.parametrize("standard, size, rate, pix_fmt, kept_as", [
    ("ntsc", (720, 480), Fraction(30000, 1001), "yuv411p", "yuv422p"),
    ("pal", (720, 576), Fraction(25), "yuv420p", "yuv420p")])
def test_raw_dv_keeps_its_frame_rate_field_order_and_chroma(standard: str, size: tuple[int, int], rate: Fraction,
                                                             pix_fmt: str, kept_as: str, tmp_path: Path, cli) -> None:
    """A tape capture (raw .dv, interlaced bottom field first): FFmpeg reads its rate as 60000
    fps and its field order as unknown. OUT has every frame at its time, in AVI (which counts
    frames at the rate) and MPEG-2 (which codes the rate), its fields bottom first, and NTSC's
    4:1:1 chroma as 4:2:2, which keeps every sample, rather than 4:2:0."""
    source = write_video(tmp_path / "in.dv", frames=6, size=size, fps=rate, codec="dvvideo", pix_fmt=pix_fmt)
    with av.open(str(source)) as container:
        assert container.streams.video[0].average_rate == 60000  # what FFmpeg says
    code, out, _ = cli("probe", source, "--json")
    assert code == 0 and json.loads(out)["video"]["fps"] == round(float(rate), 6)
    assert json.loads(out)["video"]["field_order"] == "bb"
    assert json.loads(out)["streams"][0]["detail"].endswith(f" {float(rate):.3f} fps")
    before = read_video(source)
    for output, codec in ((tmp_path / "out.avi", "libx264"), (tmp_path / "out.mpg", "mpeg2video")):
        code, _, err = cli("restore", "--model", "none", source, output, "--no-progress", "--codec", codec)
        assert code == 0, err
        after = read_video(output)
        assert [t - after.frame_pts[0] for t in after.frame_pts] == [t - before.frame_pts[0] for t in before.frame_pts]
    assert read_video(tmp_path / "out.avi").pix_fmt == kept_as
    assert field_orders(tmp_path / "out.avi") == "B" * 6


def test_a_recording_with_a_pause_keeps_its_frame_rate(tmp_path: Path, cli) -> None:
    """Frames at 25 fps with a pause of 20 frames' time between two runs: FFmpeg's mean rate is
    12.5 fps; the video's rate is 25, as `vidface probe` says."""
    path = tmp_path / "in.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in [*range(10), *range(30, 40)]:
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index, np.uint8), format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, 25)
            container.mux(stream.encode(picture.reformat(format="yuv420p")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(25, 2)
    code, out, _ = cli("probe", path, "--json")
    assert code == 0 and json.loads(out)["video"]["fps"] == 25 and json.loads(out)["video"]["frame_rate"] == "variable"


@pytest.mark.parametrize("fields, codec, output, letter", [
    ("tff", "mpeg2video", "out.mpg", "T"), ("bff", "mpeg2video", "out.mpg", "B"),
    ("tff", "prores_ks", "out.mov", "T"), ("bff", "prores", "out.mov", "B"), ("tff", "mpeg4", "out.avi", "T"),
    ("bff", "ffv1", "out.mkv", "B")])
def test_interlaced_video_keeps_its_fields(fields: str, codec: str, output: str, letter: str,
                                           tmp_path: Path, cli, caplog) -> None:
    """A 1080i-style capture, interlaced in either field order, into the encoders a broadcast or
    DVD archive uses: OUT's pictures are coded as fields (FFV1 stores them losslessly), in the
    source's order, frame by frame, also where the encoder's pixel format (ProRes' 10-bit 4:2:2)
    makes every picture a new one."""
    source = write_video(tmp_path / "in.mkv", frames=8, size=(128, 96), codec="libx264", fields=fields,
                         codec_options={"flags": "+ildct+ilme"})
    assert field_orders(source) == letter * 8
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress", "--codec", codec)
    assert code == 0, err
    assert "cannot code fields" not in caplog.text
    assert field_orders(tmp_path / output) == letter * 8


def test_an_encoder_that_cannot_code_fields_says_so(tmp_path: Path, cli, caplog) -> None:
    source = write_video(tmp_path / "in.mkv", frames=4, size=(128, 96), codec="libx264", fields="tff",
                         codec_options={"flags": "+ildct+ilme"})
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.webm", "--no-progress",
                       "--codec", "libvpx-vp9")
    assert code == 0, err
    assert "libvpx-vp9 cannot code fields" in caplog.text and "--codec libx264, mpeg2video or prores_ks" in caplog.text


@pytest.mark.parametrize("source_codec, source_pix_fmt, codec, output, kept_as, dropped", [
    ("qtrle", "argb", "ffv1", "out.mkv", "bgra", False),                 # RGB stays RGB, alpha kept, the same samples
    ("qtrle", "argb", "libvpx-vp9", "out.webm", "yuva420p", False),      # VP9 lists yuva444p but refuses it
    ("ffv1", "yuva444p10le", "libx265", "out.mkv", "yuv444p10le", True),  # x265 lists yuva420p10le but refuses it
    ("ffv1", "yuva420p", "libx265", "out.mkv", "yuv420p", True),          # even where IN has that very format
    ("ffv1", "yuva444p10le", "prores_ks", "out.mov", "yuva444p10le", False),
])
def test_an_alpha_channel_is_kept_where_the_encoder_can(source_codec: str, source_pix_fmt: str, codec: str,
                                                        output: str, kept_as: str, dropped: bool, tmp_path: Path,
                                                        cli, caplog) -> None:
    """Keyed footage (QuickTime Animation, FFV1 with alpha) into an encoder without its pixel
    format: OUT's format keeps the alpha channel and the colours' kind where an encoder that
    opens has one; where none has, the warning says the alpha is dropped. A format that stores
    the same samples in another order (ARGB as BGRA) is no loss, and no warning."""
    source = write_video(tmp_path / ("in.mov" if source_codec == "qtrle" else "in.mkv"), frames=4, size=(64, 48),
                         codec=source_codec, pix_fmt=source_pix_fmt)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress", "--codec", codec)
    assert code == 0, err
    # decoded as vidface decodes: WebM's VP9 alpha, stored beside each picture, by libvpx
    has_alpha = any(c.is_alpha for c in next(decode_frames(tmp_path / output)).video.format.components)
    assert has_alpha != dropped
    warned = [record for record in caplog.records
              if record.levelno >= logging.WARNING and "cannot keep pixel format" in record.getMessage()]
    if kept_as in (source_pix_fmt, "bgra"):
        assert warned == [], warned
    else:
        (record,) = warned
        assert f"cannot keep pixel format {source_pix_fmt}; encoding as {kept_as}" in record.getMessage()
    assert ("dropping its alpha channel" in caplog.text) == dropped


def test_a_webm_alpha_channel_is_read_and_written(tmp_path: Path, cli) -> None:
    """VP9 with alpha, as WebM keeps it (beside each picture; FFmpeg's own VP9 decoder leaves it
    out): IN's alpha is decoded, and OUT, in a resumable run whose segment files hold the
    encoder's packets, carries it again."""
    import numpy as np

    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    rgba = [np.dstack([image, alpha]) for image in map(moving_pattern(64, 48), range(6))]
    source = tmp_path / "in.webm"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=24, options={"lossless": "1"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuva420p"
        for index, picture in enumerate(rgba):
            frame = av.VideoFrame.from_ndarray(picture, format="rgba").reformat(format="yuva420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    code, out, _ = cli("probe", source)
    assert code == 0 and "vp9 64x48 yuva420p" in out, out

    def mattes(path: Path) -> list[np.ndarray]:
        return [plane_rows(frame.video.planes[3])[:, :64].copy() for frame in decode_frames(path)]

    assert all((matte == mattes(source)[0]).all() for matte in mattes(source))
    output = tmp_path / "out.webm"
    code, _, err = cli("restore", "--model", "none", source, output, "--no-progress", "--segment-frames", "2")
    assert code == 0, err
    after = mattes(output)
    assert len(after) == 6
    for matte in after:
        assert np.abs(matte.astype(int) - mattes(source)[0]).mean() < 2


@pytest.mark.parametrize("codec, output", [("libx264", "out.mkv"), ("libx265", "out.mp4"), ("mpeg2video", "out.ts")])
def test_closed_captions_are_kept(codec: str, output: str, tmp_path: Path, cli) -> None:
    """Broadcast captions (CEA-608 in the pictures' A/53 data) reach OUT's pictures, each on its
    own frame, through every encoder that codes them."""
    source = with_captions(write_video(tmp_path / "plain.ts", frames=8, size=(64, 48), bframes=0),
                           tmp_path / "in.ts")
    expected = [bytes([0xFC, 0xA0 + number, 0xC1]) for number in range(8)]
    assert captions(source) == expected
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress", "--codec", codec)
    assert code == 0, err
    assert captions(tmp_path / output) == expected


def test_svt_av1_prints_nothing_of_its_own(tmp_path: Path) -> None:
    """SVT-AV1 writes its banner and settings straight to standard error; a run shows only
    vidface's lines."""
    import os
    import subprocess
    import sys

    source = write_video(tmp_path / "in.mkv", frames=4, size=(64, 48))
    run = subprocess.run([sys.executable, "-m", "vidface", "restore", "--model", "none", str(source),
                          str(tmp_path / "out.mkv"), "--codec", "libsvtav1", "--no-progress"],
                         capture_output=True, text=True, timeout=120,
                         env={name: value for name, value in os.environ.items() if name != "SVT_LOG"})
    assert run.returncode == 0, run.stderr
    assert "Svt[" not in run.stderr


IPHONE_TAGS = {"com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 15",
               "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
               "com.apple.quicktime.creationdate": "2024-05-01T10:00:00+0200", "title": "Tour Eiffel"}


@pytest.mark.parametrize("output", ["out.mov", "out.mp4", "out.mkv"])
def test_a_phones_metadata_keys_are_kept(output: str, tmp_path: Path, cli) -> None:
    """An iPhone's QuickTime metadata keys (make, model, place, date), which FFmpeg's MP4 and MOV
    muxers leave out unless asked, reach OUT with the file's other tags."""
    source = tmp_path / "in.mov"
    with av.open(str(source), "w", options={"movflags": "use_metadata_tags"}) as container:
        container.metadata.update(IPHONE_TAGS)
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(4):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 40, np.uint8), format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, 25)
            container.mux(stream.encode(picture.reformat(format="yuv420p")))
        container.mux(stream.encode())
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress")
    assert code == 0, err
    with av.open(str(tmp_path / output)) as container:
        kept = {name.lower(): value for name, value in container.metadata.items()}
    assert {name.lower(): value for name, value in IPHONE_TAGS.items()}.items() <= kept.items()


@pytest.mark.parametrize("output, own_box", [("out.mov", b"\xa9nam"), ("out.mp4", b"\xa9nam")])
def test_common_tags_stay_in_the_containers_own_boxes(output: str, own_box: bytes, tmp_path: Path, cli) -> None:
    """Tags MP4 and MOV have boxes for (a title, a comment) are written there, where every
    player looks, not as QuickTime metadata keys."""
    source = write_video(tmp_path / "in.mkv", frames=4, metadata={"title": "Holiday", "comment": "tape 3"})
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress")
    assert code == 0, err
    data = (tmp_path / output).read_bytes()
    assert own_box in data and b"mdta" not in data
    with av.open(str(tmp_path / output)) as container:
        assert container.metadata["title"] == "Holiday" and container.metadata["comment"] == "tape 3"


def test_track_titles_survive_a_trip_through_mp4(tmp_path: Path, cli) -> None:
    """Audio track titles ("Commentary") from Matroska are MP4's track names, which FFmpeg reads
    back as `name`: `vidface probe` shows them, and a Matroska made from the MP4 has them as
    the track names players show again."""
    source = write_video(tmp_path / "in.mkv", frames=6, audio=[AudioTrack("aac", title="Main", language="eng"),
                                                               AudioTrack("aac", title="Commentary", language="fra")])
    for made_from, output in ((source, tmp_path / "out.mp4"), (tmp_path / "out.mp4", tmp_path / "back.mkv")):
        code, _, err = cli("restore", "--model", "none", made_from, output, "--no-progress")
        assert code == 0, err
        code, out, _ = cli("probe", output, "--json")
        assert [stream["title"] for stream in json.loads(out)["streams"]] == [None, "Main", "Commentary"]
    titles = [tags.get("title") for tags in read_video(tmp_path / "back.mkv").stream_metadata]
    assert titles == [None, "Main", "Commentary"]


def test_cover_art_is_kept(tmp_path: Path, cli) -> None:
    """An MP4's cover art (a still picture stream, as music videos and podcasts carry) is copied
    as it is, still the file's cover; `vidface probe` calls it so rather than giving it a rate."""
    picture = tmp_path / "cover.jpg"
    with av.open(str(picture), "w", format="mjpeg") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")
        container.mux(stream.encode(frame.reformat(format="yuvj420p")))
        container.mux(stream.encode())
    source = tmp_path / "in.mp4"
    with av.open(str(picture)) as cover, av.open(str(source), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        art = container.add_stream_from_template(cover.streams.video[0])
        art.disposition = av.stream.Disposition.attached_pic
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 50, np.uint8), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            container.mux(video.encode(frame.reformat(format="yuv420p")))
        container.mux(video.encode())
        packet = next(p for p in cover.demux(cover.streams.video[0]) if p.size)
        packet.stream, packet.pts, packet.dts = art, 0, 0
        container.mux(packet)
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mp4", "--no-progress")
    assert code == 0, err
    code, out, _ = cli("probe", tmp_path / "out.mp4")
    assert code == 0 and "stream #1: video mjpeg 32x32 yuvj420p cover art" in out
    before, after = read_video(source), read_video(tmp_path / "out.mp4")
    assert after.packets[1] == before.packets[1] and len(after.packets[1]) == 1
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams[1].disposition & av.stream.Disposition.attached_pic


@pytest.mark.parametrize("output, container, codec_args", [
    ("out.mp4", "mp4", []), ("out.webm", "webm", ["--codec", "libvpx-vp9", "--no-audio"]), ("out.ts", "mpegts", [])])
def test_attached_files_outside_matroska_are_left_out_with_a_warning(output: str, container: str, codec_args: list[str],
                                                                     tmp_path: Path, cli, caplog) -> None:
    """A Matroska file's attached font into MP4 (whose muxer refuses files), WebM or MPEG-TS
    (whose muxers took them and left them out without a word): the run says it leaves the file
    out, as it does for chapters, and writes the rest."""
    source = write_video(tmp_path / "in.mkv", frames=4, audio="aac", attachments={"font.ttf": b"\x00\x01font"})
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress", *codec_args)
    assert code == 0, err
    assert f"leaving out attached file #2 (font.ttf): FFmpeg writes none into {container} files" in caplog.text
    after = read_video(tmp_path / output)
    assert "attachment" not in after.stream_types and len(after.frame_pts) == 4


def _telemetry_video(path: Path) -> Path:
    """An MP4 with a GoPro-style telemetry track beside the video: a data stream that FFmpeg
    writes as a 'gpmd' track and reads back with no codec it knows."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        telemetry = container.add_data_stream("bin_data")
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 40, np.uint8), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            container.mux(video.encode(frame.reformat(format="yuv420p")))
            packet = av.Packet(b"DEVC" + bytes([index]) * 12)
            packet.stream, packet.pts, packet.dts, packet.duration = telemetry, index * 40, index * 40, 40
            packet.time_base = Fraction(1, 1000)
            container.mux(packet)
        container.mux(video.encode())
    return path


@pytest.mark.parametrize("output, kept", [("out.mp4", True), ("out.mov", True), ("out.mkv", False)])
def test_a_telemetry_track_of_no_known_codec_is_copied_where_the_container_holds_it(
        output: str, kept: bool, tmp_path: Path, cli, caplog) -> None:
    """A camera's telemetry (GPS, gyro) in a track FFmpeg has no codec for goes into MP4 and MOV
    packet for packet; Matroska cannot hold it, and the run says it leaves it out."""
    source = _telemetry_video(tmp_path / "in.mp4")
    before = read_video(source)
    assert before.stream_types == ["video", "data"] and before.stream_codecs[1] == ""
    code, _, err = cli("restore", "--model", "none", source, tmp_path / output, "--no-progress")
    assert code == 0, err
    after = read_video(tmp_path / output)
    if kept:
        assert after.stream_types == ["video", "data"] and after.packets[1] == before.packets[1]
        assert "leaving out" not in caplog.text
    else:
        assert after.stream_types == ["video"]
        assert "leaving out stream #1: FFmpeg cannot write its data codec into matroska files" in caplog.text


@pytest.mark.parametrize("audio", ["pcm_s16le", "pcm_s24le"])
def test_broadcast_mxf_keeps_its_pcm_audio(audio: str, tmp_path: Path, cli) -> None:
    """An MXF with PCM audio (a broadcast deliverable) into MXF: MXF's muxer takes PCM only
    beside a video stream, and 24-bit PCM though its codec list leaves it out; the audio is
    copied packet for packet, and the dry run says so."""
    source = write_video(tmp_path / "in.mxf", frames=10, size=(128, 96), fps=25, codec="mpeg2video", audio=audio)
    args = ("restore", "--model", "none", source, tmp_path / "out.mxf", "--codec", "mpeg2video")
    code, out, err = cli(*args, "--dry-run")
    assert code == 0, err
    assert f"copy    #1 audio {audio}" in out
    code, _, err = cli(*args, "--no-progress")
    assert code == 0, err
    before, after = read_video(source), read_video(tmp_path / "out.mxf")
    assert after.stream_codecs == before.stream_codecs == ["mpeg2video", audio]
    assert b"".join(p[0] for p in after.packets[1]) == b"".join(p[0] for p in before.packets[1])


def test_a_cameras_motion_jpeg_with_exif_is_read(tmp_path: Path, cli) -> None:
    """A camera's Motion JPEG carries EXIF in every picture, which FFmpeg 8 hands on as a kind of
    frame side data PyAV does not know (reading it raises): probe and restore read such video."""
    import struct

    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 1, 1) + struct.pack("<I", 0)
    exif = b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff  # APP1: orientation 1
    source = tmp_path / "camera.avi"
    image = moving_pattern(64, 48)
    with av.open(str(source), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(image(index), format="rgb24").reformat(format="yuvj420p")
            frame.pts = index
            for packet in stream.encode(frame):
                data = bytes(packet)
                tagged = av.Packet(data[:2] + exif + data[2:])  # after the JPEG's start marker
                tagged.pts, tagged.dts, tagged.time_base = packet.pts, packet.dts, packet.time_base
                tagged.stream = stream
                container.mux(tagged)
    with av.open(str(source)) as container:
        with pytest.raises(ValueError):
            next(container.decode(video=0)).side_data  # noqa: B018 (the premise: PyAV cannot list it)
    code, out, err = cli("probe", source)
    assert code == 0 and "mjpeg 64x48" in out and "5 frames" in out, err
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--no-progress")
    assert code == 0 and len(read_video(tmp_path / "out.mkv").frame_pts) == 5, err


def test_a_frame_rate_beyond_ffmpegs_rationals_is_written(tmp_path: Path, cli) -> None:
    """A Matroska file whose timestamp scale is an odd number of nanoseconds (here 1953, as a
    damaged header may say) has a mean frame rate whose fraction needs more than 32 bits: it is
    written at the nearest rate FFmpeg's rationals hold, not refused with a traceback."""
    source = write_video(tmp_path / "in.mkv", frames=12, size=(64, 48))
    data = source.read_bytes()
    scale = data.index(b"\x2a\xd7\xb1\x83\x0f\x42\x40")  # TimestampScale: 3 bytes, 1 000 000 ns
    source.write_bytes(data[:scale + 4] + (1953).to_bytes(3, "big") + data[scale + 7:])
    rate = probe(source).video.average_rate
    assert rate.numerator < 2**31 and rate.denominator < 2**31 and abs(rate - Fraction(11_000_000_000, 894474)) < 1
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--no-progress")
    assert code == 0 and len(read_video(tmp_path / "out.mkv").frame_pts) == 12, err


def _sound_from(path: Path, seconds: float, with_header: bool = True) -> Path:
    """The FLV file `path` with its sound starting at `seconds` (its earlier sound tags taken
    out, its AAC header moved to there, or left out too: a damaged file's) and its header saying
    it holds video alone: FFmpeg finds the sound stream only when it meets its first tag, as in a
    recording whose sound starts late."""
    data = path.read_bytes()
    kept, position, header = bytearray(data[:13]), 13, None
    kept[4] = 0x01  # video alone
    while position < len(data):
        size = int.from_bytes(data[position + 1:position + 4], "big")
        tag = bytearray(data[position:position + 11 + size + 4])  # the tag and the size of it that follows
        position += len(tag)
        time = int.from_bytes(tag[4:7], "big") | tag[7] << 24
        if tag[0] & 0x1F != 8:
            kept += tag
        elif header is None:
            header = tag if with_header else bytearray()  # AACPacketType 0: the decoder's configuration, first
        elif time >= seconds * 1000:
            if header:
                header[4:8] = tag[4:8]
                kept += header
                header = bytearray()  # written once
            kept += tag
    path.write_bytes(bytes(kept))
    return path


def test_a_sound_that_starts_late_is_copied(tmp_path: Path, cli) -> None:
    """An FLV lists no streams up front, and FFmpeg looks 5 s in as it opens a file: a sound
    starting at 8 s was never seen, and OUT had none. IN is opened looking 60 s in, so probe
    shows it and OUT holds it, packet for packet. One whose AAC header is lost is refused in one
    line before anything is written (its first packet stopped the run after 8 s of work), and
    --no-audio leaves it out. One starting later still (at 62 s) is not seen, and PyAV's
    demuxer, which then reads past its list of streams after the last packet and raised
    IndexError (found by tools/fuzz.py in a damaged FLV), reads every frame, from the start and
    from --start (which seeks)."""
    source = _sound_from(write_video(tmp_path / "late.flv", frames=120, size=(32, 24), fps=12, audio="aac"), 8)
    with av.open(str(source)) as container:
        assert [stream.type for stream in container.streams] == ["video"]  # FFmpeg's own first look
    code, out, err = cli("probe", source)
    assert code == 0 and "stream #1: audio aac" in out, err
    code, _, err = cli("restore", source, tmp_path / "out.mkv", "--model", "none", "--no-progress")
    assert code == 0, err
    with open_input(source) as container:  # looking as far: plain av.open sees no sound
        sound = [bytes(packet) for packet in demuxed(container, container.streams.audio[0]) if packet.size]
    assert sound and [data for data, _, _ in read_video(tmp_path / "out.mkv").packets[1]] == sound
    damaged = _sound_from(write_video(tmp_path / "damaged.flv", frames=120, size=(32, 24), fps=12, audio="aac"), 8,
                          with_header=False)
    code, _, err = cli("restore", damaged, tmp_path / "damaged.mkv", "--model", "none", "--no-progress")
    assert code == 1 and len(err.splitlines()) == 1 and not (tmp_path / "damaged.mkv").exists(), err
    assert "matroska files cannot take the packets of stream #1 (audio aac)" in err and "--no-audio" in err, err
    code, _, err = cli("restore", damaged, tmp_path / "damaged.mkv", "--model", "none", "--no-audio", "--no-progress")
    assert code == 0, err
    later = _sound_from(write_video(tmp_path / "later.flv", frames=64 * 4, size=(16, 16), fps=4, audio="aac"), 62)
    code, out, err = cli("probe", later)
    assert code == 0 and "256 frames" in out and "audio" not in out, err
    for flags, frames in (([], 256), (["--start", "2"], 248)):
        code, _, err = cli("restore", later, tmp_path / "out.mkv", "--model", "none", "-y", *flags)
        assert code == 0 and len(read_video(tmp_path / "out.mkv").frame_pts) == frames, err
