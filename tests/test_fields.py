"""Interlaced video restored field by field (`--fields`): each field is a picture of its own
(vidface.io.interlace), its faces cut from it alone and pasted back into its own rows."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from face_clips import moving_face_clip
from media import field_orders, read_video, write_video
from restore_clips import frames_of
from tiny_model import tiny_osdface, tiny_osdface_model  # noqa: F401 (pytest fixtures)
from vidface.config import Settings, load_settings
from vidface.io.frames import FieldMarker, Frame
from vidface.io.interlace import field_frames, field_parities, splits_into_fields, weave
from vidface.io.pixels import plane_rows, row_bytes
from vidface.restore import RestoreStats, face_restorer

SIZE = (160, 120)


def _interlaced(video: av.VideoFrame, index: int, bottom_first: bool = False,
                pixel_aspect: Fraction = Fraction(1)) -> Frame:
    marked = FieldMarker("bff" if bottom_first else "tff")(video)
    return Frame(index=index, pts=index, time_base=Fraction(1, 25), duration=1, video=marked,
                 bottom_first=bottom_first, pixel_aspect=pixel_aspect)


def _samples(video: av.VideoFrame) -> list[np.ndarray]:
    return [plane_rows(plane)[:, :used].copy() for plane, used in zip(video.planes, row_bytes(video))]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p10le", "yuv411p", "uyvy422", "rgb24"])
@pytest.mark.parametrize("bottom_first", [False, True], ids=["tff", "bff"])
def test_a_frames_fields_are_its_alternate_rows_and_weave_back(pix_fmt: str, bottom_first: bool) -> None:
    """Each field holds every other row of every plane (chroma rows too), shown in the stream's
    order, half a frame apart, with pixels twice as tall; weaving back an edited field changes
    its rows alone, and a frame whose fields were not edited comes back as the same object."""
    rng = np.random.default_rng(0)
    video = av.VideoFrame(32, 16, pix_fmt)
    for plane in video.planes:
        rows = plane_rows(plane)
        rows[:] = rng.integers(0, 256, rows.shape, dtype=np.uint8)
    frame = _interlaced(video, 3, bottom_first, Fraction(16, 15))
    assert splits_into_fields(frame)
    before = _samples(frame.video)
    fields = field_frames(frame)
    parities = field_parities(frame)
    assert parities == ((1, 0) if bottom_first else (0, 1))
    for order, (field, parity) in enumerate(zip(fields, parities)):
        assert (field.index, field.pts, field.time_base, field.pixel_aspect) == (6 + order, 6 + order, Fraction(1, 50),
                                                                                Fraction(8, 15))
        assert (field.video.width, field.video.height, field.video.format.name) == (32, 8, pix_fmt)
        for field_plane, plane in zip(_samples(field.video), before):
            np.testing.assert_array_equal(field_plane, plane[parity::2])
    assert weave(frame, fields, (False, False)) is frame
    for plane in fields[1].video.planes:
        plane_rows(plane)[:] = 7
    woven = weave(frame, fields, (False, True))
    for plane, old, field_plane in zip(_samples(woven.video), before, _samples(fields[1].video)):
        np.testing.assert_array_equal(plane[parities[1]::2], field_plane)
        np.testing.assert_array_equal(plane[parities[0]::2], old[parities[0]::2])


def test_which_frames_split_into_fields() -> None:
    """Only interlaced pictures split, upright, with an even number of rows in every plane."""
    progressive = av.VideoFrame(32, 16, "yuv420p")
    assert not splits_into_fields(Frame(0, 0, Fraction(1, 25), 1, progressive))
    assert splits_into_fields(_interlaced(av.VideoFrame(32, 16, "yuv420p"), 0))
    assert not splits_into_fields(_interlaced(av.VideoFrame(32, 18, "yuv420p"), 0))  # 9 chroma rows
    assert splits_into_fields(_interlaced(av.VideoFrame(32, 18, "yuv422p"), 0))
    assert not splits_into_fields(dataclasses.replace(_interlaced(av.VideoFrame(32, 16, "yuv420p"), 0), rotation=90))


TINT = 50
"""Levels of red added to the top field's picture and taken from the bottom field's."""


def _woven_clip(frames: int, face_free: tuple[int, ...] = ()
                ) -> tuple[list[np.ndarray], tuple[list[np.ndarray], list[np.ndarray]]]:
    """Interlaced frames whose two fields are two moments told apart by colour: the top field's
    picture redder by TINT, the bottom field's less red by TINT (face_free: frames without the
    face). Returns the frames' RGB and the two fields' pictures, whole (top, bottom)."""
    clip = moving_face_clip(frames, *SIZE, scale=0.8, degraded=False, face_free=face_free)
    tinted = []
    for shift in (TINT, -TINT):
        pictures = [picture.astype(int) for picture in clip.frames]
        for picture in pictures:
            picture[..., 0] += shift
        tinted.append([np.clip(picture, 0, 255).astype(np.uint8) for picture in pictures])
    woven = []
    for top, bottom in zip(*tinted):
        rgb = top.copy()
        rgb[1::2] = bottom[1::2]
        woven.append(rgb)
    return woven, (tinted[0], tinted[1])


def _settings(fields: bool) -> Settings:
    settings = load_settings()
    return dataclasses.replace(settings, model=dataclasses.replace(settings.model, batch_size=4),
                               faces=dataclasses.replace(settings.faces, fields=fields))


@pytest.mark.parametrize("on_device", [False, True], ids=["opencv", "torch"])
@pytest.mark.parametrize("bottom_first", [False, True], ids=["tff", "bff"])
def test_interlaced_faces_are_cut_from_one_field_and_pasted_into_its_rows(bottom_first: bool, on_device: bool,
                                                                         tiny_osdface_model,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With --fields, the model sees each face as one field shows it, in the order the fields
    are shown (a crop of the whole frame mixes both moments); each field's face is pasted into
    that field's rows, nothing outside the regions the frame's edit records name changes, a
    frame without faces between passes as it is, and the counts are of frames."""
    import torch

    from vidface.faces.align import face_crop, warp_face
    from vidface.models.osdface import OSDFace

    woven, _ = _woven_clip(6, face_free=(3,))
    seen: list[torch.Tensor] = []
    encode = OSDFace.encode
    monkeypatch.setattr(OSDFace, "encode", lambda model, images: seen.append(images.clone()) or encode(model, images))
    errors = {}
    for fields in (False, True):
        seen.clear()
        stats = RestoreStats()
        source = [_interlaced(frame.video, frame.index, bottom_first) for frame in frames_of(woven, "yuv444p")]
        originals = [_samples(frame.video) for frame in source]
        fields_before = [field_frames(frame) for frame in source]  # the restorer edits the frames in place
        restorer = face_restorer(tiny_osdface_model, _settings(fields), stats=stats, faces_on_device=on_device)
        out = list(restorer(iter(source)))
        assert [frame.index for frame in out] == list(range(6))
        assert (stats.frames, stats.frames_with_faces, stats.faces) == (6, 5, 5)
        assert (stats.model_faces, stats.crops_per_face) == (5 * (1 + fields), 1 + fields)
        assert out[3] is source[3] and not out[3].edits
        crops = torch.cat(seen).permute(0, 2, 3, 1).numpy() * 255
        assert len(crops) == 5 * (1 + fields)
        # each field cut as a picture of its own, in the order shown, where the frame's face is
        references = []
        for frame, shown in zip(out, fields_before):
            if not frame.edits:
                continue
            landmarks = np.array(frame.edits[0]["landmarks"])
            for field, parity in zip(shown, field_parities(frame)):
                in_field = landmarks * (1, 0.5) - (0, parity / 2)
                references.append(warp_face(field.to_rgb(), face_crop(in_field, tiny_osdface_model.face_size,
                                                                      field.pixel_shape)))
        if fields:
            errors[fields] = max(np.abs(crop - reference).mean() for crop, reference in zip(crops, references))
        else:
            errors[fields] = min(np.abs(crop - reference).mean() for index, crop in enumerate(crops)
                                 for reference in references[2 * index:2 * index + 2])
        for frame, before in zip(out, originals):
            if not frame.edits:
                continue
            (edit,) = frame.edits
            x0, y0, x1, y1 = edit["region"]
            outside = np.ones(before[0].shape, bool)
            outside[y0:y1, x0:x1] = False
            for plane, old in zip(_samples(frame.video), before):
                assert (plane[outside] == old[outside]).all()
                assert (plane[~outside] != old[~outside]).any()
    # torch's sampling differs from OpenCV's by a level or two; mixing the fields, by half the
    # tint in one channel of three
    assert errors[True] < (3 if on_device else 1) and errors[False] > TINT / 4, errors


def test_the_command_restores_an_interlaced_file_by_fields(tmp_path: Path, cli, caplog, tiny_osdface) -> None:
    """`vidface restore --fields` of an interlaced H.264 file: --dry-run says how its faces will be
    restored, the faces of every frame are restored, OUT stays interlaced in IN's field order,
    and a progressive IN is restored in whole frames with a warning."""
    woven, _ = _woven_clip(6)
    model = ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--batch-size", "4",
             "--no-progress"]
    source = write_video(tmp_path / "in.mkv", frames=6, size=SIZE, images=np.stack(woven), fields="bff",
                         codec_options={"flags": "+ildct+ilme", "x264-params": "bff=1"})
    assert field_orders(source) == "B" * 6
    for flags, note in (([], "in whole frames; --fields restores"), (["--fields"], "field by field (--fields)")):
        code, out, err = cli("restore", source, tmp_path / "out.mkv", "--dry-run", *flags, *model)
        assert code == 0 and f"note    interlaced, bottom field first: faces are restored {note}" in out, err
    caplog.clear()
    code, out, err = cli("restore", source, tmp_path / "out.mkv", "--fields", *model)
    assert code == 0, err
    assert "6 faces restored in 6 frames" in out and "--fields" not in caplog.text
    assert field_orders(tmp_path / "out.mkv") == "B" * 6
    assert cli("restore", source, tmp_path / "frames.mkv", *model)[0] == 0
    assert "IN's fields show two moments (bottom field first) in 5 of 6 frames" in caplog.text  # idet's measure
    by_fields, whole = (read_video(tmp_path / name, images=True).images for name in ("out.mkv", "frames.mkv"))
    assert any((a != b).any() for a, b in zip(by_fields, whole))  # --fields restores otherwise
    progressive = write_video(tmp_path / "progressive.mkv", frames=6, size=SIZE, images=np.stack(woven))
    code, out, err = cli("restore", progressive, tmp_path / "whole.mkv", "--fields", *model)
    assert code == 0 and "6 faces restored in 6 frames" in out, err
    assert "--fields: IN's pictures are not interlaced" in caplog.text
    # a restore's flag: `vidface track` cuts no faces
    assert "--fields" in cli("restore", "--help")[1] and "--fields" not in cli("track", "--help")[1]


def test_how_ins_fields_move_is_measured_and_said(tmp_path: Path, cli, caplog, tiny_osdface) -> None:  # noqa: F811
    """FFmpeg's idet tells fields of two moments (a camera's) from fields of one (a film transfer)
    whatever IN is flagged: `vidface probe` shows it, and a restore warns where it and the way
    faces are to be restored disagree (--dry-run notes it too); --model none measures nothing."""
    woven, _ = _woven_clip(12)
    film = np.stack(moving_face_clip(12, *SIZE, scale=0.8, degraded=False).frames)
    interlaced = {"fields": "bff", "codec_options": {"flags": "+ildct+ilme", "x264-params": "bff=1"}}
    camera = write_video(tmp_path / "camera.mkv", frames=12, size=SIZE, images=np.stack(woven), **interlaced)
    flagged_progressive = write_video(tmp_path / "capture.mkv", frames=12, size=SIZE, images=np.stack(woven),
                                      codec="ffv1")  # a lossless capture, its combing as shot
    telecine = write_video(tmp_path / "film.mkv", frames=12, size=SIZE, images=film, **interlaced)
    code, out, _ = cli("probe", flagged_progressive)
    assert code == 0 and "progressive" in out and "fields: two moments (bottom field first) in 11 of 12 frames " \
                                                  "measured by FFmpeg's idet" in out, out
    code, out, _ = cli("probe", "--json", telecine)
    motion = json.loads(out)["video"]["field_motion"]
    assert (motion["progressive"], motion["top_first"] + motion["bottom_first"], motion["measured"]) == (12, 0, 12)
    model = ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--dry-run"]
    cases = [
        (camera, [], "IN's fields show two moments (bottom field first) in 11 of 12 frames measured by FFmpeg's "
                     "idet: --fields restores its faces field by field"),
        (camera, ["--fields"], None),
        (flagged_progressive, [], "IN is flagged progressive, but its fields show two moments (bottom field first)"),
        (telecine, ["--fields"], "--fields: IN's fields show one moment in 12 of 12 frames measured by FFmpeg's idet "
                                 "(a film transfer, or progressive segmented frames): whole frames suit it"),
        (telecine, [], None),
    ]
    for source, flags, warning in cases:
        caplog.clear()
        code, out, err = cli("restore", source, tmp_path / "out.mkv", *flags, *model)
        assert code == 0 and "note    fields: " in out, err
        warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
        assert (warnings == []) if warning is None else any(warning in message for message in warnings), warnings
    caplog.clear()
    code, out, err = cli("restore", flagged_progressive, tmp_path / "out.mkv", "--model", "none", "--dry-run")
    assert code == 0 and "note    fields" not in out and "idet" not in caplog.text, out
