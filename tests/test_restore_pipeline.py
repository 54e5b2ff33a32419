"""The face-restoring pipeline (vidface.restore) and `vidface restore --model osdface`, with the
tiny random OSDFace on generated clips of a real face."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from face_clips import Pose, background, degrade, moving_face_clip, render
from media import read_video, write_video
from restore_clips import TemporalProbe, face_core, face_middle_change, face_region, frames_of, tag_hdr
from tiny_model import tiny_osdface, tiny_osdface_model  # noqa: F401 (fixtures)
from vidface.cli import build_parser
from vidface.commands.restore import build_settings
from vidface.config import Settings, load_settings
from vidface.io.options import EncodeOptions
from vidface.pipeline import Resume, Segmenting, plan_transcode, transcode
from vidface.restore import RestoreStats, face_restorer

SIZE = (256, 192)  # width, height: faces ~100 px tall, eye distance ~26 px


def _settings(**temporal) -> Settings:
    settings = load_settings()
    return dataclasses.replace(settings, model=dataclasses.replace(settings.model, batch_size=4),
                               temporal=dataclasses.replace(settings.temporal, **temporal))


def test_faces_are_restored_and_nothing_else_changes(tiny_osdface_model) -> None:
    clip = moving_face_clip(12, *SIZE, face_free=(0, 9, 10, 11))
    source = frames_of(clip.frames)  # the restorer edits them in place
    stats = RestoreStats()
    out = list(face_restorer(tiny_osdface_model, _settings(), stats=stats)(iter(source)))

    assert [f.index for f in out] == [f.index for f in source]
    assert [f.pts for f in out] == [f.pts for f in source]
    assert stats.frames == 12 and stats.faces == stats.frames_with_faces == 8 and len(stats.tracks) == 1
    for before, after, old, truth in zip(source, out, clip.frames, clip.truth):
        new = after.to_rgb()
        if not truth:  # no face: the very same frame, so its pixels reach the encoder as decoded
            assert after is before and (new == old).all()
            continue
        (landmarks,) = truth.values()
        changed = (old != new).any(axis=2)
        outside = ~face_region(landmarks, changed.shape)
        assert not changed[outside].any(), f"frame {before.index}: pixels changed outside the face"
        core = face_core(landmarks, changed.shape)
        difference = np.abs(old.astype(int) - new.astype(int))[core].mean()
        assert difference > 4, f"frame {before.index}: face barely changed ({difference:.1f} levels)"


@pytest.mark.parametrize("pix_fmt", ["rgb24", "yuv444p10le"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("mask", ["box", "parsing"])
def test_faces_on_the_device_match_opencv(mask: str, device: str, pix_fmt: str, tiny_osdface_model, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops cut and faces pasted with torch (a GPU run's way; on a GPU the paste runs on a stream
    of its own, waiting for its faces' batch) give OpenCV's frames within a level or two: the
    crops are the same whole levels but for a rare one-level difference, the paste the same. The
    random face parser's masks amplify those a little. On a GPU the model's convolutions run
    without TF32 (cuDNN's default), whose coarser rounding the model would add to what is compared.
    A 10-bit picture's faces are cut and pasted in 16-bit RGB on both ways (compared in 8-bit
    levels here, in 16-bit levels by test_a_face_restored_into_a_deep_picture_keeps_its_precision)."""
    import copy

    import torch

    from mask_tools import save_random_bisenet

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = tiny_osdface_model if device == "cpu" else copy.deepcopy(tiny_osdface_model).to(device)
    settings = _settings()
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, device=device))
    if mask == "parsing":
        settings = dataclasses.replace(settings, paste=dataclasses.replace(
            settings.paste, mask=mask, parse_size=64, parsing_weights=save_random_bisenet(tmp_path / "bisenet.pth")))
    clip = moving_face_clip(8, *SIZE, face_free=(7,))
    originals = [frame.to_rgb() for frame in frames_of(clip.frames, pix_fmt)]
    frames = {}
    for on_device in (False, True):
        restorer = face_restorer(model, settings, faces_on_device=on_device)
        frames[on_device] = [frame.to_rgb().astype(int) for frame in restorer(iter(frames_of(clip.frames, pix_fmt)))]
    for index, (opencv, torch_side, old) in enumerate(zip(frames[False][:7], frames[True], originals)):
        assert np.abs(opencv - old).mean() > 2, f"frame {index}: the face was not restored"
        difference = np.abs(torch_side - opencv)
        if mask == "box":
            # 16-bit faces are not rounded to 8-bit levels, which absorb some of the model's
            # response to a one-level crop difference: measured up to 2.6 levels, 0.05 on average
            assert difference.max() <= (3 if pix_fmt != "rgb24" else 2), f"frame {index}"
            assert difference.mean() < 0.1, f"frame {index}"
        else:  # pasting with the box mask instead would differ by 2 levels on average, 30 at the 99th percentile
            assert difference.mean() < 0.25 and np.percentile(difference, 99) <= 3, f"frame {index}"
    assert (frames[True][7] == originals[7]).all()


@pytest.mark.parametrize("on_device", [False, True], ids=["opencv", "torch"])
def test_a_face_restored_into_a_deep_picture_keeps_its_precision(on_device: bool, tiny_osdface_model) -> None:
    """In a 12-bit RGB master, a face pasted from 8-bit RGB takes, where the mask takes it whole,
    only the 256 values per channel that 8-bit levels convert to (a quarter of the face's middle
    fell between them, where the feathered mask blends); pasted in 16-bit RGB it keeps the
    model's finer values: 15 in 16 of them lie between."""
    import av

    clip = moving_face_clip(6, *SIZE)
    grey_levels = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    eight_bit = np.unique(_planes12(av.VideoFrame.from_ndarray(grey_levels, format="rgb24").reformat(format="gbrp12le")))
    assert len(eight_bit) == 256
    source = frames_of(clip.frames, "gbrp12le")
    restored = list(face_restorer(tiny_osdface_model, _settings(), faces_on_device=on_device)(iter(source)))
    for index, (frame, truth) in enumerate(zip(restored, clip.truth)):
        (landmarks,) = truth.values()
        core = _planes12(frame.video)[face_core(landmarks, (SIZE[1], SIZE[0]))]
        between = ~np.isin(core, eight_bit)
        assert between.mean() > 0.8, f"frame {index}: {between.mean():.0%} of the face between 8-bit levels"


@pytest.mark.parametrize("on_device", [False, True], ids=["opencv", "torch"])
def test_a_deep_pictures_faces_restore_from_their_part_as_from_the_whole(on_device: bool, tiny_osdface_model,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A deep picture is converted to 16-bit RGB again for its faces, only around them (the part
    their crops, mirrored edges and pastes reach): its frames come out as from the whole
    picture's RGB, alike as the device's faces and OpenCV's are (a crop's position rounds a
    little otherwise, which moves a few crop samples by a level, and the tiny model's face by up
    to 2 levels of 255 at one pixel in a hundred)."""
    import vidface.io.frames
    import vidface.restore

    clip = moving_face_clip(6, 480, 320)
    converted = []
    reformatted = vidface.io.frames.reformatted
    monkeypatch.setattr(vidface.io.frames, "reformatted", lambda video, **options: converted.append(
        (video.width, video.height, options.get("format"))) or reformatted(video, **options))
    restored = {}
    for part in (True, False):
        if not part:
            monkeypatch.setattr(vidface.restore, "_picture_rgb",
                                lambda item, faces: (item.frame.to_rgb(deep=True), (0, 0)))
        restorer = face_restorer(tiny_osdface_model, _settings(), faces_on_device=on_device)
        restored[part] = [_planes12(frame.video).astype(int)
                          for frame in restorer(iter(frames_of(clip.frames, "gbrp12le")))]
        if part:
            faces_parts = [(width, height) for width, height, rgb in converted if rgb == "rgb48le"]
    originals = [_planes12(frame.video).astype(int) for frame in frames_of(clip.frames, "gbrp12le")]
    with_faces = [index for index, (whole, original) in enumerate(zip(restored[False], originals))
                  if np.abs(whole - original).mean() > 2]
    assert len(with_faces) >= 4 and len(faces_parts) == len(with_faces), faces_parts
    assert all(width * height < 480 * 320 / 2 for width, height in faces_parts), faces_parts
    for index, (ours, whole) in enumerate(zip(restored[True], restored[False])):
        difference = np.abs(ours - whole)
        assert difference.max() <= 3 * 4095 / 255 and difference.mean() < 0.1 * 4095 / 255, f"frame {index}"


def _planes12(video) -> np.ndarray:
    """H×W×3 samples of a gbrp12le picture (G, B, R planes)."""
    return np.stack([np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, :plane.width]
                     for plane in video.planes], axis=2)


def _coded_frames(images: list[np.ndarray], colour) -> list:
    """SDR uint8 RGB pictures coded as `colour` codes faces (HDR: `from_model`), as 16-bit RGB
    frames (as frames_of numbers them) tagged with its transfer and BT.2020 primaries."""
    import av
    import torch

    from vidface.io.pixels import reformatted

    frames = []
    for frame, rgb in zip(frames_of(images), images):
        coded = colour.from_model(torch.from_numpy(rgb / 255.0).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        video = reformatted(av.VideoFrame.from_ndarray(np.rint(coded * 65535).astype(np.uint16), format="rgb48le"),
                            format="gbrp16le")
        tag_hdr(video, colour.transfer)
        frames.append(dataclasses.replace(frame, video=video))
    return frames


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_an_hdr_pictures_faces_reach_the_model_as_sdr_faces(transfer: str, tiny_osdface_model,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The model learnt SDR faces: an HDR10 or HLG picture's faces reach it as the SDR picture
    they were made from shows them, within a level (interpolating coded values differs a little
    from interpolating SDR ones), not as their coded values (tens of levels off)."""
    import torch

    from vidface.faces.align import face_crop, warp_face
    from vidface.faces.hdr import FaceColour
    from vidface.models.osdface import OSDFace

    colour = FaceColour(transfer, bt2020=True)
    clip = moving_face_clip(6, *SIZE)
    seen = []
    encode = OSDFace.encode
    monkeypatch.setattr(OSDFace, "encode", lambda model, images: seen.append(images.clone()) or encode(model, images))
    frames = _coded_frames(clip.frames, colour)
    coded = [frame.to_rgb(deep=True) for frame in frames]
    out = list(face_restorer(tiny_osdface_model, _settings())(iter(frames)))
    faces = [(index, face_crop(np.array(edit["landmarks"]), tiny_osdface_model.face_size)) for index, frame in enumerate(out)
             for edit in frame.edits]
    images = torch.cat(seen).permute(0, 2, 3, 1).numpy() * 255
    assert len(faces) == len(images) == 6
    for image, (index, placement) in zip(images, faces):
        sdr = warp_face(clip.frames[index], placement).astype(float)
        assert np.abs(image - sdr).mean() < 1.0, f"frame {index}"
        assert np.abs(warp_face(coded[index], placement) / 257 - sdr).mean() > 10  # the coded face is another


def test_an_anamorphic_pictures_faces_reach_the_model_as_shown(tiny_osdface_model, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16:9 PAL SD video stores its pictures 64:45 narrower than it shows them: its faces
    reach the model as the displayed picture shows them (the stream's sample aspect ratio,
    read by the decoder), not squashed."""
    import cv2
    import torch

    from vidface.faces.align import face_crop, warp_face
    from vidface.io.decode import decode_frames
    from vidface.models.osdface import OSDFace

    clip = moving_face_clip(8, 384, 288, scale=0.8)
    stored = [cv2.resize(image, (270, 288), interpolation=cv2.INTER_AREA) for image in clip.frames]
    source = write_video(tmp_path / "pal_wide.mkv", frames=8, size=(270, 288), images=np.stack(stored),
                         pix_fmt="yuv444p", codec_options={"crf": "0"}, sample_aspect=Fraction(64, 45))
    assert {frame.pixel_aspect for frame in decode_frames(source)} == {Fraction(64, 45)}
    seen = []
    encode = OSDFace.encode
    monkeypatch.setattr(OSDFace, "encode", lambda model, images: seen.append(images.clone()) or encode(model, images))
    errors = {}
    for name, pixel_aspect in (("as shown", None), ("square", Fraction(1))):
        seen.clear()
        frames = [frame if pixel_aspect is None else dataclasses.replace(frame, pixel_aspect=pixel_aspect)
                  for frame in decode_frames(source)]
        out = list(face_restorer(tiny_osdface_model, _settings())(iter(frames)))
        placed = [(index, np.array(edit["landmarks"]) * (384 / 270, 1)) for index, frame in enumerate(out)
                  for edit in frame.edits]
        images = torch.cat(seen).permute(0, 2, 3, 1).numpy() * 255
        assert len(placed) == len(images) >= 6
        errors[name] = np.mean([np.abs(image - warp_face(clip.frames[index],
                                                         face_crop(landmarks, tiny_osdface_model.face_size))).mean()
                                for image, (index, landmarks) in zip(images, placed)])
    assert errors["as shown"] < 4 and errors["square"] > 10 * errors["as shown"], errors


@pytest.mark.parametrize("on_device", [False, True], ids=["opencv", "torch"])
@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_an_hdr_face_the_model_gives_back_unchanged_is_pasted_as_it_was(transfer: str, on_device: bool,
                                                                        tiny_osdface_model,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's SDR faces are coded back as the picture codes its faces: a model that gives
    back what it was given leaves an HDR face as it was, within the crop's and paste's
    resampling (as in an SDR picture), where SDR values pasted as they are would be far off."""
    import torch

    from vidface.faces.hdr import FaceColour
    from vidface.models.osdface import OSDFace

    given = []
    encode = OSDFace.encode
    monkeypatch.setattr(OSDFace, "encode", lambda model, images: given.append(images.clone()) or encode(model, images))
    monkeypatch.setattr(OSDFace, "decode", lambda model, latents: given.pop(0))
    colour = FaceColour(transfer, bt2020=True)
    clip = moving_face_clip(6, *SIZE)
    errors = {}
    for name, frames, seen_as in (("sdr", frames_of(clip.frames, "gbrp16le"), FaceColour()),
                                  ("hdr", _coded_frames(clip.frames, colour), colour)):
        before = [frame.to_rgb(deep=True) for frame in frames]
        out = list(face_restorer(tiny_osdface_model, _settings(), faces_on_device=on_device)(iter(frames)))
        error = []
        for old, frame, truth in zip(before, out, clip.truth):
            (landmarks,) = truth.values()
            new = frame.to_rgb(deep=True)
            core = face_core(landmarks, (SIZE[1], SIZE[0]))
            as_sdr = [seen_as.to_model(torch.from_numpy(rgb / 65535.0).permute(2, 0, 1)).permute(1, 2, 0).numpy()
                      for rgb in (old, new)]
            error.append(np.abs(as_sdr[1] - as_sdr[0])[core].mean() * 255)
        errors[name] = max(error)
    assert errors["hdr"] < errors["sdr"] + 0.5, errors
    assert errors["sdr"] < 4, errors  # the 64-pixel crops of ~100-pixel faces lose some detail


@pytest.mark.parametrize("ready", [False, True], ids=["eager", "ready"])
def test_the_model_stage_never_waits_for_the_gpu(ready: bool, tiny_osdface_model, tmp_path: Path) -> None:
    """On a GPU the model stage's steady work (upload frames, cut their crops, restore a batch
    with the stabiliser and the parser) only queues work there: torch's sync debug mode raises at
    any copy or call that waits for the GPU, which would leave it idle while the host catches up."""
    import copy

    import torch

    from mask_tools import save_random_bisenet
    from vidface.faces.align import face_crop
    from vidface.faces.parsing import FaceParser
    from vidface.faces.torch_warp import FrameUploader, warp_faces
    from vidface.models.ready import load_ready, save_ready
    from vidface.models.temporal import CropRow, TemporalStabilizer
    from vidface.model_stage import restore_batch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device("cuda")
    model = copy.deepcopy(tiny_osdface_model).to(device)
    if ready:
        save_ready(model, tmp_path / "ready", batch=2)
        model = load_ready(tmp_path / "ready", device)
    parser = FaceParser(size=64, weights=save_random_bisenet(tmp_path / "bisenet.pth"), device=device)
    stabilizer = TemporalStabilizer(forget_stale=False)
    clip = moving_face_clip(4, *SIZE)
    uploader = FrameUploader(device)

    def restore(frames: tuple[int, int]) -> list:
        crops = [warp_faces(uploader.upload(clip.frames[i]), [face_crop(clip.truth[i][0], model.face_size)])[0]
                 for i in frames]
        return restore_batch(model, stabilizer, parser, torch.stack(crops), [CropRow(0, i, 0.01) for i in frames],
                        on_host=False)

    restore((0, 1))  # what is made once: cached tensors, pinned buffers, the track's state
    torch.cuda.set_sync_debug_mode("error")
    try:
        restored = restore((2, 3))  # the track continues: the stabiliser's blending runs
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(0 < face.mean().item() < 1 and mask is not None for face, mask in restored)


def _still_face_images(count: int, seed: int) -> tuple[list, np.ndarray]:
    """A still degraded face: the same picture every frame with fresh blur/noise/JPEG."""
    width, height = SIZE
    rgb, (landmarks,) = render(background(width, height), [Pose(width / 2, height / 2, 0.6, 0.0)])
    rng = np.random.default_rng(seed)
    return [degrade(rgb, rng, blur=1.0, noise=6.0, jpeg=50) for _ in range(count)], landmarks


@pytest.mark.parametrize("seed, size", [(0, (256, 192)), (2, (160, 120)), (4, (384, 288))])
def test_temporal_blending_steadies_a_still_face_and_follows_a_change(seed, size, tmp_path: Path,
                                                                     tiny_osdface_model) -> None:
    """On any random model, not only the tests' own (seed 0): the default strength at least
    halves a still face's frame-to-frame change, and a face replaced in place comes through
    within 3 frames (at most 0.2 of the old face left beyond what no blending leaves)."""
    from tiny_model import tiny_options, write_tiny_osdface
    from vidface.models.loading import load_osdface

    model = tiny_osdface_model if seed == 0 else load_osdface(tiny_options(write_tiny_osdface(tmp_path, seed=seed)))
    width, height = size

    def run(images: list[np.ndarray], strength: float) -> np.ndarray:
        out = face_restorer(model, _settings(strength=strength))(iter(frames_of(images)))
        return np.stack([frame.to_rgb() for frame in out]).astype(float)

    flicker, ghost = TemporalProbe.make(width, height, scale=0.6 * height / 192).measure(run, _settings().temporal.strength)
    print(f"model seed {seed}, {width}x{height}: flicker {flicker:.3f} of --no-temporal's, ghost f+0..2 {ghost:.3f}")
    assert flicker <= 0.5 and ghost <= 0.2


def test_a_face_back_from_behind_a_hand_shows_no_jump(tiny_osdface_model) -> None:
    """A still face hidden for 12 frames: re-identified on its return, it continues its temporal
    state, so the restored face changes no more across the gap than between ordinary
    neighbouring frames; started afresh (no re-identification), it jumps."""
    images, landmarks = _still_face_images(40, seed=3)
    hidden = range(14, 26)
    top_left, bottom_right = (landmarks.min(axis=0) - 30).astype(int), (landmarks.max(axis=0) + 30).astype(int)
    for index in hidden:
        images[index][top_left[1]:bottom_right[1], top_left[0]:bottom_right[0]] = 128
    core = face_core(landmarks, (SIZE[1], SIZE[0]))

    def change_across_the_gap(**faces) -> tuple[float, float]:
        settings = _settings()
        settings = dataclasses.replace(settings, faces=dataclasses.replace(settings.faces, **faces))
        out = face_restorer(tiny_osdface_model, settings)(iter(frames_of([image.copy() for image in images])))
        pictures = np.stack([frame.to_rgb() for frame in out]).astype(float)
        ordinary = max(np.abs(pictures[i + 1] - pictures[i])[core].mean() for i in range(4, hidden.start - 1))
        return float(np.abs(pictures[hidden.stop] - pictures[hidden.start - 1])[core].mean()), ordinary

    back, ordinary = change_across_the_gap()
    afresh, _ = change_across_the_gap(reid_window=0.0)
    print(f"restored face change across the gap: {back:.1f} continued, {afresh:.1f} afresh; "
          f"largest between ordinary neighbours {ordinary:.1f}")
    assert back <= ordinary < afresh


@pytest.mark.parametrize("hidden", [10, 40])
def test_a_moving_face_back_from_hiding_changes_as_if_never_hidden(hidden: int, tiny_osdface_model) -> None:
    """A moving face hidden for 10 or 40 frames: its restoration changes across the gap no more
    than the same face's, never hidden, between the same two frames (the part its own motion
    causes); started afresh it changes more."""
    back = 20 + hidden
    hidden_clip = moving_face_clip(back + 12, *SIZE, occluded=tuple(range(20, back)))
    shown_clip = moving_face_clip(back + 12, *SIZE)

    def across(clip, **faces) -> float:
        settings = _settings()
        settings = dataclasses.replace(settings, faces=dataclasses.replace(settings.faces, **faces))
        out = [frame.to_rgb() for frame in face_restorer(tiny_osdface_model, settings)(iter(frames_of(clip.frames)))]
        return face_middle_change(out[19], out[back], clip.truth[19][0], clip.truth[back][0])

    continued, afresh, never = across(hidden_clip), across(hidden_clip, reid_window=0.0), across(shown_clip)
    print(f"hidden {hidden} frames: restored face change across the gap {continued:.1f} continued, "
          f"{afresh:.1f} afresh; never hidden {never:.1f}")
    assert continued <= 1.1 * never < afresh


def test_restore_command_keeps_streams_and_timing(cli, tmp_path: Path, tiny_osdface) -> None:
    clip = moving_face_clip(10, *SIZE, face_free=(8, 9))
    source = write_video(tmp_path / "in.mkv", frames=10, size=SIZE, images=np.stack(clip.frames), audio="aac")
    model = ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--dtype", "fp32",
             "--batch-size", "4"]
    code, out, err = cli("restore", source, tmp_path / "out.mkv", "--codec", "ffv1", *model)
    assert code == 0, err
    assert "8 faces restored in 8 frames" in out
    assert cli("restore", source, tmp_path / "none.mkv", "--codec", "ffv1", "--model", "none")[0] == 0

    before = read_video(source)
    restored = read_video(tmp_path / "out.mkv", images=True)
    passthrough = read_video(tmp_path / "none.mkv", images=True)
    assert restored.frame_pts == before.frame_pts
    assert restored.stream_types == before.stream_types == ["video", "audio"]
    assert [p[0] for p in restored.packets[1]] == [p[0] for p in before.packets[1]]
    # ffv1 is lossless: outside the faces the restored video is the pass-through, bit for bit
    for index, (new, old, truth) in enumerate(zip(restored.images, passthrough.images, clip.truth)):
        changed = (new != old).any(axis=2)
        if not truth:
            assert not changed.any(), f"frame {index} has no face but changed"
            continue
        (landmarks,) = truth.values()
        assert not changed[~face_region(landmarks, changed.shape)].any()
        assert changed[face_core(landmarks, changed.shape)].mean() > 0.5


def test_faces_of_a_packed_capture_are_restored_and_nothing_else_changes(cli, tmp_path: Path, tiny_osdface) -> None:
    """Uncompressed 4:2:2 captures come packed ("UYVY" in AVI, "2vuy" in QuickTime): their faces
    are restored, OUT keeps the packing, and every pixel outside the faces is IN's. 16-bit RGB
    (old QuickTime and Video for Windows files), whose pixels no other format holds as they are,
    is refused in one line before anything is written."""
    clip = moving_face_clip(4, *SIZE)
    model = ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--dtype", "fp32"]
    source = write_video(tmp_path / "capture.avi", frames=4, size=SIZE, images=np.stack(clip.frames),
                         codec="rawvideo", pix_fmt="uyvy422")
    code, out, err = cli("restore", source, tmp_path / "out.avi", "--codec", "rawvideo", *model)
    assert code == 0, err
    before, after = read_video(source, images=True), read_video(tmp_path / "out.avi", images=True)
    assert before.pix_fmt == after.pix_fmt == "uyvy422" and len(after.images) == 4
    restored = 0
    for index, (old, new, truth) in enumerate(zip(before.images, after.images, clip.truth)):
        (landmarks,) = truth.values()
        region = face_region(landmarks, (SIZE[1], SIZE[0]), grow=0.3)
        changed = (old != new).any(axis=2)
        restored += changed[face_core(landmarks, (SIZE[1], SIZE[0]))].mean() > 0.5
        assert not changed[~region].any(), f"frame {index}: pixels outside the face changed"
    assert restored >= 3 and f"{restored} faces restored in {restored} frames" in out

    sixteen_bit = write_video(tmp_path / "old.avi", frames=2, size=SIZE, images=np.stack(clip.frames[:2]),
                              codec="rawvideo", pix_fmt="rgb555le")
    assert read_video(sixteen_bit).pix_fmt == "rgb555le"
    code, _, err = cli("restore", sixteen_bit, tmp_path / "old_out.avi", "--codec", "rawvideo", *model)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "pixel format rgb555le cannot take restored faces" in err
    assert not (tmp_path / "old_out.avi").exists()


def test_missing_weights_offline_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mp4", frames=4)
    home = tmp_path / "hf"
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1")
    for name in ("HF_HUB_CACHE", "VIDFACE_BASE", "VIDFACE_WEIGHTS_REPO"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-m", "vidface", "restore", str(source), str(tmp_path / "out.mp4")],
                         capture_output=True, text=True, env=env, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("vidface: error: model weights missing")
    assert "--weights" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf") == ["in.mp4"]


def _args(*flags: str):
    return build_parser().parse_args(["restore", "in.mp4", "out.mp4", *flags])


def test_settings_layers_preset_config_flags(tmp_path: Path) -> None:
    default = build_settings(_args())
    assert default == load_settings("default")
    archival = build_settings(_args("--config", "archival"))
    assert archival.encode.crf == 12 and archival.model.dtype == "fp32" and archival.temporal.strength == 0.7

    config = tmp_path / "run.yaml"
    config.write_text("encode:\n  crf: 23\n  options: {tune: film}\ntemporal:\n  strength: 0.3\n")
    layered = build_settings(_args("--config", "archival", "--config", str(config)))
    assert layered.encode.crf == 23 and layered.encode.preset == "slow" and layered.temporal.strength == 0.3
    flags = build_settings(_args("--config", "archival", "--config", str(config), "--preset", "veryfast", "--crf", "16", "--temporal",
                                 "0.5", "--encoder-opt", "g=48", "--lag", "3", "--device", "cpu"))
    assert flags.encode.crf == 16 and flags.encode.preset == "veryfast" and flags.temporal.strength == 0.5 and flags.faces.lag == 3
    assert flags.encode.options == (("tune", "film"), ("g", "48"))
    assert flags.model.device == "cpu" and flags.model.dtype == "fp32"  # dtype still from the preset
    assert not build_settings(_args("--no-temporal")).temporal.enabled


@pytest.mark.parametrize("flags, exit_code, words", [
    (["--temporal", "1.5"], 2, "must be in [0, 1]"),
    (["--temporal", "0.5", "--no-temporal"], 2, "not allowed with"),
    (["--config", "ultrafast"], 1, "unknown preset 'ultrafast'"),
    (["--refine-crops", "5"], 2, "invalid choice: 5"),
])
def test_bad_settings_flags_are_usage_errors(cli, flags, exit_code, words) -> None:
    code, _, err = cli("restore", "in.mp4", "out.mp4", *flags)
    assert code == exit_code and words in err


def test_unknown_config_key_is_one_line(cli, tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mp4", frames=4)
    config = tmp_path / "bad.yaml"
    config.write_text("temporal:\n  strenght: 0.5\n")
    code, _, err = cli("restore", source, tmp_path / "out.mp4", "--config", config)
    assert code == 1 and err.count("\n") == 1
    assert "'temporal.strenght'" in err and "strength" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "in.mp4"]


class _Feed:
    """Frames handed out one by one, counting how many were taken (`pulled`)."""

    def __init__(self, frames: list) -> None:
        self.frames, self.pulled = frames, 0

    def __iter__(self):
        for frame in self.frames:
            self.pulled += 1
            yield frame


def test_frames_stream_through_with_bounded_look_ahead(tiny_osdface_model) -> None:
    """A face in the first frames only, then none: the part-filled batch runs once too many
    frames wait behind it, so output flows long before the input ends (memory stays bounded)."""
    from vidface.workers import QUEUE_FRAMES
    from vidface.model_stage import MAX_WAITING_FRAMES

    count = 100
    feed = _Feed(frames_of(moving_face_clip(count, *SIZE, face_free=tuple(range(4, count))).frames))
    settings = dataclasses.replace(_settings(), model=dataclasses.replace(_settings().model, batch_size=16))
    stats = RestoreStats()
    out = face_restorer(tiny_osdface_model, settings, stats=stats)(iter(feed))
    first = next(out)
    at_first = feed.pulled
    rest = list(out)
    bound = settings.faces.lag + MAX_WAITING_FRAMES + 2 * QUEUE_FRAMES + 4
    assert at_first <= bound < count, f"first frame out after {at_first} frames in"
    assert [f.index for f in [first, *rest]] == list(range(count))
    assert stats.faces == 4


def test_a_model_still_loading_is_waited_for_and_the_wait_counted(tiny_osdface_model) -> None:
    """The restorer takes a Future of the model: frames are decoded and tracked meanwhile, past
    what the queues between the stages hold (the model stage keeps them while it waits), the
    model stage waits for it, and the wait is reported apart from the work."""
    import threading
    import time
    from concurrent.futures import Future

    from vidface.workers import QUEUE_FRAMES

    settings = _settings()
    count = settings.faces.lag + 2 * QUEUE_FRAMES + 12
    feed = _Feed(frames_of(moving_face_clip(count, *SIZE).frames))
    loading: Future = Future()
    loaded = {}

    def load() -> None:  # done once every frame was taken (or after 60 s)
        start = time.perf_counter()
        while feed.pulled < count and time.perf_counter() - start < 60:
            time.sleep(0.01)
        time.sleep(0.3)
        loaded.update(pulled=feed.pulled, seconds=time.perf_counter() - start)
        loading.set_result(tiny_osdface_model)

    threading.Thread(target=load).start()
    stats = RestoreStats()
    out = list(face_restorer(loading, settings, stats=stats)(iter(feed)))
    assert [f.index for f in out] == list(range(count)) and stats.faces == count
    assert loaded["pulled"] == count, "decoding and tracking stopped while the model loaded"
    # The model stage waited at least through the load's last 0.3 s, after all frames were in.
    assert 0.3 <= stats.model_wait <= loaded["seconds"] + 1


def test_the_wait_counts_the_model_not_the_frames_upstream(tiny_osdface_model) -> None:
    """A model that loads while the first frames are still on their way (a slow decoder) kept
    nothing waiting: the wait ends when the load does, not when the next frame comes."""
    import threading
    import time
    from concurrent.futures import Future

    clip = moving_face_clip(6, *SIZE)

    def slow_frames():
        for frame in frames_of(clip.frames):
            time.sleep(0.4)
            yield frame

    loading: Future = Future()
    threading.Timer(0.05, loading.set_result, (tiny_osdface_model,)).start()
    stats = RestoreStats()
    out = list(face_restorer(loading, _settings(), stats=stats)(slow_frames()))
    assert len(out) == 6 and stats.faces == 6
    assert stats.model_wait < 0.3  # the load's 0.05 s, and not the 0.4 s to the first frame


def test_segmented_run_counts_only_the_frames_it_writes(tiny_osdface_model, tmp_path: Path) -> None:
    """Each segment also processes warm-up frames before it and look-ahead frames after it, then
    drops them; the counts cover each written frame once, as one continuous pass does."""
    clip = moving_face_clip(16, *SIZE, face_free=(0, 1, 14, 15))
    continuous = RestoreStats()
    for _ in face_restorer(tiny_osdface_model, _settings(), stats=continuous)(iter(frames_of(clip.frames))):
        pass
    source = write_video(tmp_path / "in.mkv", frames=16, size=SIZE, images=np.stack(clip.frames), codec="ffv1")
    plan = plan_transcode(source, tmp_path / "out.mkv", encode=EncodeOptions(codec="ffv1"))
    stats = RestoreStats()
    result = transcode(plan, face_restorer(tiny_osdface_model, _settings(), stats=stats),
                       resume=Resume(segmenting=Segmenting(frames=6, warmup=3, lookahead=2)),  # 3 segments
                       on_segment=stats.keep)

    assert result.frames == stats.frames == continuous.frames == 16
    assert continuous.faces >= 12  # the 12 frames with a face (the tracker may hold it a frame longer)
    assert (stats.faces, stats.frames_with_faces) == (continuous.faces, continuous.frames_with_faces)


def test_weights_broken_while_loading_in_background_is_one_line(cli, tmp_path: Path, tiny_osdface) -> None:
    """The model loads while decoding and detection start; a file that turns out corrupt then
    stops the run with the loader's one-line error, and no output appears."""
    import shutil

    release = Path(shutil.copytree(tiny_osdface.release, tmp_path / "release"))
    lora = next(path for path in release.iterdir() if "lora" in path.name.lower())
    lora.write_bytes(lora.read_bytes()[:100])
    clip = moving_face_clip(6, *SIZE)
    source = write_video(tmp_path / "in.mp4", frames=6, size=SIZE, images=np.stack(clip.frames))
    code, out, err = cli("restore", source, tmp_path / "out.mp4", "--weights", release, "--base", tiny_osdface.base,
                         "--device", "cpu", "--no-resume")
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith("vidface: error: ") and lora.name in err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("codec, extension", [("ffv1", "mkv"), ("prores_ks", "mov"), ("auto", "mkv")])
def test_a_restored_face_keeps_the_matte(codec: str, extension: str, cli, tmp_path: Path, tiny_osdface) -> None:
    """Keyed footage with an alpha channel (soft, across the faces), as a compositor hands it
    over in FFV1 or ProRes 4444: the faces are restored in colour, and every alpha sample of
    OUT is the one a run that restores nothing writes (IN's, where the codec is lossless: FFV1,
    which --codec auto keeps)."""
    import av

    clip = moving_face_clip(6, *SIZE)
    matte = np.tile(np.linspace(0, 1023, SIZE[0]).astype(np.uint16), (SIZE[1], 1))
    source = tmp_path / "in.mkv"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuva444p10le"
        for index, rgb in enumerate(clip.frames):
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuva444p10le")
            alpha = np.frombuffer(picture.planes[3], np.uint16).reshape(SIZE[1], -1)
            alpha[:, :SIZE[0]] = matte
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    model = ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--dtype", "fp32",
             "--batch-size", "4"]
    restored, untouched = tmp_path / f"out.{extension}", tmp_path / f"none.{extension}"
    code, out, err = cli("restore", source, restored, "--codec", codec, *model)
    assert code == 0, err
    assert "6 faces restored in 6 frames" in out
    assert cli("restore", source, untouched, "--codec", codec, "--model", "none")[0] == 0

    def planes(path: Path) -> list[list[np.ndarray]]:
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.pix_fmt.startswith("yuva444p1")
            return [[np.frombuffer(plane, np.uint16).reshape(SIZE[1], -1)[:, :SIZE[0]].copy() for plane in frame.planes]
                    for frame in container.decode(video=0)]

    before, after = planes(untouched), planes(restored)
    assert len(before) == len(after) == 6
    if codec != "prores_ks":
        assert all((old[3] == matte).all() for old in before)
    for index, (old, new) in enumerate(zip(before, after)):
        np.testing.assert_array_equal(new[3], old[3], err_msg=f"frame {index}'s matte")
        (landmarks,) = clip.truth[index].values()
        core = face_core(landmarks, SIZE[::-1])
        assert (np.abs(new[0].astype(int) - old[0])[core] > 4).mean() > 0.5, f"frame {index}'s face unchanged"
