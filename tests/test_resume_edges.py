"""Resuming where decoding from a seek is not the same as decoding from the start: open-GOP
sources (frames shown before a keyframe are decoded after it, from the GOP before) and
damaged inputs (frames the decoder flags corrupt, drops, or cannot decode at all)."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest

from media import damaged_video, field_orders, read_video, write_video
from resume_tools import (RESTORE_SEGMENT, interrupting_box, restore_interrupted_and_resumed, same_video,
                          transcode_resumable)
from tiny_model import tiny_osdface, tiny_osdface_model  # noqa: F401 (fixtures)
from vidface.errors import InputError
from vidface.pipeline import ResumableInterrupt, TimeRange, plan_transcode, transcode
from vidface.resume import work_folder

OPEN_GOP = {
    "h264": dict(codec="libx264", bframes=3, codec_options={
        "x264-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0:b-pyramid=none"}),
    "mpeg2": dict(codec="mpeg2video", codec_options={"g": "12", "bf": "2"}),
}
FRAMES = 48


def _leading_frames(path: Path) -> list[int]:
    """Frames (presentation order) that a decoder drops after seeking to them: those shown
    before a keyframe but decoded after it."""
    pts = sorted(p.pts for p in _packets(path))
    keys = [p.pts for p in _packets(path) if p.is_keyframe]
    decode_order = [p.pts for p in _packets(path)]
    leading = []
    for key in keys[1:]:
        after = decode_order[decode_order.index(key) + 1:]
        leading += [pts.index(p) for p in after if p < key and pts.index(p) > 0]
    return sorted(set(leading))


def _packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(container.streams.video[0]) if p.size]


def _rgb(path: Path) -> list[np.ndarray]:
    return read_video(path, images=True).images


@pytest.mark.parametrize("source", sorted(OPEN_GOP))
def test_open_gop_resume_from_a_leading_frame(source: str, tmp_path: Path) -> None:
    """The resumed run's first needed frame is shown before an open-GOP keyframe but decoded
    after it: a plain seek loses it (and would shift every later frame); the resumed output
    must still be the uninterrupted run's."""
    path = write_video(tmp_path / "in.mp4", frames=FRAMES, **OPEN_GOP[source])
    leading = _leading_frames(path)
    segment, warmup, lookahead = 13, 3, 2
    assert 2 * segment - warmup in leading  # the 3rd segment's warm-up starts on one
    reference = tmp_path / "reference.mp4"
    transcode_resumable(path, reference, segment, warmup, lookahead)
    output = tmp_path / "out.mp4"
    with pytest.raises(ResumableInterrupt):
        transcode_resumable(path, output, segment, warmup, lookahead, interrupting_box(2 * segment + lookahead))
    assert transcode_resumable(path, output, segment, warmup, lookahead).resumed == 2 * segment
    same_video(output, reference)
    assert len(read_video(output).frame_pts) == FRAMES


def test_preview_starting_on_an_open_gop_leading_frame(tmp_path: Path) -> None:
    """--start on a frame that a seek cannot decode directly: all frames of the range, from it."""
    path = write_video(tmp_path / "in.mp4", frames=FRAMES, fps=24, **OPEN_GOP["h264"])
    first = _leading_frames(path)[0]
    output = tmp_path / "out.mkv"
    plan = plan_transcode(path, output, time_range=TimeRange(start=first / 24, duration=12 / 24))
    assert plan.first_frame == first
    assert transcode(plan).frames == 12
    whole = _rgb(path)
    got = _rgb(output)
    assert len(got) == 12
    # the first frame is the one asked for (lossy re-encode: nearest of the source's frames)
    errors = [np.abs(got[0].astype(int) - frame.astype(int)).mean() for frame in whole]
    assert int(np.argmin(errors)) == first


def _decoder_dropping(monkeypatch: pytest.MonkeyPatch, dropped: set[int], *, after_seek_past: int | None = None
                      ) -> None:
    """Make the decoder give no picture for the frames of pts `dropped`; with after_seek_past,
    only when decoding starts at a later pts (a damaged frame that comes out only where decoding
    began early enough, as concealment from earlier frames does)."""
    from vidface.io import placement

    decode_frames = placement.decode_frames

    def dropping(*args, **kwargs):
        start = kwargs.get("start_pts")
        if after_seek_past is not None and (start is None or start <= after_seek_past):
            return decode_frames(*args, **kwargs)
        return (frame for frame in decode_frames(*args, **kwargs) if frame.pts not in dropped)

    monkeypatch.setattr(placement, "decode_frames", dropping)


def test_a_damaged_frame_met_after_a_seek_is_decoded_as_the_uninterrupted_run_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Frame 26 comes out only when decoding starts before frame 16 (as a damaged frame's
    concealed picture depends on where decoding began). The resumed run seeks to frame 21,
    misses it, and decodes again from the start: its output is the uninterrupted run's."""
    from vidface.io.probe import probe

    path = write_video(tmp_path / "in.mkv", frames=40, fps=24)
    pts = probe(path).video.pts
    _decoder_dropping(monkeypatch, {pts[26]}, after_seek_past=pts[16])
    reference = tmp_path / "reference.mkv"
    assert transcode_resumable(path, reference, 8, 3, 2).frames == 40
    output = tmp_path / "out.mkv"
    with pytest.raises(ResumableInterrupt):
        transcode_resumable(path, output, 8, 3, 2, interrupting_box(27))
    caplog.set_level(logging.INFO, logger="vidface")
    assert transcode_resumable(path, output, 8, 3, 2).resumed == 24
    assert any("frame 26" in r.message and "decoding again from the first frame" in r.message
               for r in caplog.records), caplog.text
    same_video(output, reference)


def test_undecodable_data_stops_every_run_in_one_line(tmp_path: Path) -> None:
    """A damaged MP4 whose broken packet FFmpeg refuses: the run stops with one line (the
    segments before it kept), and so does the resumed one; no output appears."""
    path = damaged_video(tmp_path / "in.mp4")
    output = tmp_path / "out.mp4"
    for _ in range(2):
        with pytest.raises(InputError, match=r"cannot be decoded after frame \d+ .*corrupt") as error:
            transcode_resumable(path, output, 8, 3, 2)
        assert "\n" not in str(error.value)
        assert not output.exists()
    assert work_folder(output).is_dir()  # finished segments are kept for a rerun of a repaired file


def test_frames_the_decoder_drops_leave_gaps_not_shifts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A decoder that gives no picture for some frames (9 and 20-22 here, wherever decoding
    starts): every other frame keeps its place, in the uninterrupted and the resumed run alike."""
    from vidface.io.probe import probe

    path = write_video(tmp_path / "in.mkv", frames=40, fps=24)
    pts = probe(path).video.pts
    _decoder_dropping(monkeypatch, {pts[i] for i in (9, 20, 21, 22)})
    caplog.set_level(logging.WARNING, logger="vidface")
    reference = tmp_path / "reference.mkv"
    assert transcode_resumable(path, reference, 8, 3, 2).frames == 36
    assert any("frame 9 of" in r.message and "it is left out" in r.message for r in caplog.records)
    output = tmp_path / "out.mkv"
    with pytest.raises(ResumableInterrupt):
        transcode_resumable(path, output, 8, 3, 2, interrupting_box(26))
    assert transcode_resumable(path, output, 8, 3, 2).resumed == 24 - 4
    same_video(output, reference)
    kept = [i for i in range(40) if i not in (9, 20, 21, 22)]
    source = read_video(path, images=True)
    result = read_video(output, images=True)
    assert result.frame_pts == [source.frame_pts[i] for i in kept]
    for got, index in zip(result.images, kept):  # each frame is nearest to its own source frame
        errors = [np.abs(got.astype(int) - frame.astype(int)).mean() for frame in source.images]
        assert int(np.argmin(errors)) == index


def test_a_frame_out_of_place_stops_the_run_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that gives frame 5 twice: no place for the second one, so no guessing."""
    from vidface.io import placement

    decode_frames = placement.decode_frames

    def repeating(*args, **kwargs):
        for frame in decode_frames(*args, **kwargs):
            yield frame
            if frame.index == 5:
                yield frame

    monkeypatch.setattr(placement, "decode_frames", repeating)
    path = write_video(tmp_path / "in.mkv", frames=12)
    with pytest.raises(InputError, match=r"out of place \(not the timestamp of frame 6 or a later one\)"):
        transcode_resumable(path, tmp_path / "out.mkv", 8, 3, 2)
    assert not (tmp_path / "out.mkv").exists()


INTERLACED = {
    # PAL DV and DVD are often bottom field first; an MPEG-2 program stream with MP2 audio
    "bottom-first .mpg": dict(suffix=".mpg", letter="B", write=dict(
        codec="mpeg2video", audio="mp2", fields="bff", codec_options={"flags": "+ildct+ilme", "b": "2M"})),
    # HD broadcast (1080i) is top field first
    "top-first .mkv": dict(suffix=".mkv", letter="T", write=dict(
        codec="libx264", audio="aac", fields="tff", codec_options={"flags": "+ildct+ilme"})),
}


@pytest.mark.parametrize("source_kind", sorted(INTERLACED))
def test_interlaced_video_restores_and_resumes_as_fields(source_kind: str, tmp_path: Path, tiny_osdface_model) -> None:
    """Interlaced video through the real face restorer, interrupted in its 3rd segment and
    resumed: the output is the uninterrupted run's, coded interlaced with the source's field
    order in every frame (the restored ones too), with every frame's timestamp and every audio
    packet of the source."""
    from face_clips import moving_face_clip
    from vidface.io.probe import probe

    kind = INTERLACED[source_kind]
    clip = moving_face_clip(30, 256, 192)
    source = write_video(tmp_path / f"in{kind['suffix']}", frames=30, size=(256, 192), fps=25,
                         images=lambda i: clip.frames[i], **kind["write"])
    assert probe(source).video.interlaced and field_orders(source) == kind["letter"] * 30
    output = tmp_path / "out.mp4"
    restore_interrupted_and_resumed(source, output, tiny_osdface_model)
    assert probe(output).video.interlaced and field_orders(output) == kind["letter"] * 30
    plain = tmp_path / "plain.mp4"  # the unrestored frames encoded in the same segments
    transcode_resumable(source, plain, RESTORE_SEGMENT, 0, 0, lambda frames: frames)
    output_video, plain_images = read_video(output, images=True), read_video(plain, images=True).images
    restored = [np.abs(a.astype(int) - b).max() > 64 for a, b in zip(output_video.images, plain_images)]
    assert sum(restored) >= 20  # the tiny random model's faces are far from the source's
    source_video = read_video(source)
    assert output_video.frame_pts == source_video.frame_pts
    assert [p[0] for p in output_video.packets[1]] == [p[0] for p in source_video.packets[1]]


@pytest.mark.parametrize("resumable", [False, True])
@pytest.mark.parametrize("change", ["truncated", "replaced"])
def test_an_input_changed_while_it_is_read_writes_nothing(change: str, resumable: bool, tmp_path: Path) -> None:
    """IN truncated in place, or replaced by another file, while the run reads it: one-line
    InputError, no OUT; and a rerun starts over rather than mixing the two versions."""
    import os

    from vidface.errors import InputError
    from vidface.pipeline import Resume, Segmenting, plan_transcode, transcode

    source = write_video(tmp_path / "in.mkv", frames=24)
    other = write_video(tmp_path / "other.mkv", frames=30, size=(64, 48))
    output = tmp_path / "out.mkv"

    def changing(frames):
        for frame in frames:
            if frame.index == 12:
                if change == "truncated":
                    os.truncate(source, source.stat().st_size // 2)
                else:
                    os.replace(other, source)
            yield frame

    resume = Resume(segmenting=Segmenting(frames=8, warmup=2, lookahead=2)) if resumable else None
    with pytest.raises(InputError, match="changed while it was read"):
        transcode(plan_transcode(source, output), changing, resume=resume)
    assert not output.exists()
    if change == "replaced":  # the rerun reads the new version only (the work folder's key names the old one)
        assert transcode(plan_transcode(source, output), resume=resume).resumed == 0
        written = read_video(output)
        assert len(written.frame_pts) == 30 and written.size == (64, 48)
