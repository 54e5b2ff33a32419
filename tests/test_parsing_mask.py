"""The face-parsing paste mask (vidface.faces.parsing, paste.mask: parsing), offline: facexlib's
BiSeNet with random weights, saved as facexlib's file under its real name in a temporary
vidface cache, loaded through the real path; and its smoothing over time in the pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vidface.config import Settings, load_settings
from vidface.errors import InputError, WeightsError
from vidface.faces.align import face_crop
from vidface.faces.facexlib_weights import cache_dir
from vidface.faces.parsing import PARSING_WEIGHTS, FaceParser
from vidface.faces.paste import PasteOptions, paste_faces
from vidface.metrics import temporal_flicker
from vidface.restore import face_restorer

from face_clips import ASTRONAUT_LANDMARKS, Pose, background, degrade, moving_face_clip, render
from mask_tools import recorded_paste_masks, save_random_bisenet
from media import write_video
from restore_clips import face_region, frames_of
from tiny_model import tiny_osdface, tiny_osdface_model  # noqa: F401 (fixtures)

PARSE_SIZE = 64  # tiny crops in tests: the network sees 64×64 (its features at 8×8)
SIZE = (256, 192)  # width, height of the generated clips: faces ~100 px tall


def _settings_box() -> Settings:
    return load_settings(overrides={"model.batch_size": 4})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty vidface cache folder for facexlib files; downloads off."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("VIDFACE_OFFLINE", "1")
    return cache_dir()


@pytest.fixture(scope="module")
def bisenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_bisenet(tmp_path_factory.mktemp("bisenet") / PARSING_WEIGHTS.filename)


def test_cached_weights_load_and_give_soft_masks_of_the_crop_size(cache: Path, bisenet_file: Path) -> None:
    (cache / PARSING_WEIGHTS.filename).parent.mkdir(parents=True)
    (cache / PARSING_WEIGHTS.filename).symlink_to(bisenet_file)
    parser = FaceParser(size=PARSE_SIZE)
    images = torch.rand(3, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    masks = parser.face_masks(images)
    assert masks.shape == (3, 80, 80) and masks.dtype == torch.float32
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    assert float(masks.std()) > 1e-3  # depends on the picture, not a constant
    assert not torch.equal(masks[0], masks[1])
    # float16 input parses like float32 (the parser runs in float32)
    torch.testing.assert_close(parser.face_masks(images.half()), parser.face_masks(images.half().float()))


def test_missing_or_corrupt_or_foreign_weights_are_one_line_errors(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as missing:
        FaceParser(size=PARSE_SIZE)
    message = str(missing.value)
    assert "\n" not in message and PARSING_WEIGHTS.filename in message and "--parsing-weights" in message
    assert "--paste-mask box" in message and not cache.exists()
    with pytest.raises(WeightsError, match="does not exist"):
        FaceParser(size=PARSE_SIZE, weights=tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        FaceParser(size=PARSE_SIZE, weights=garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(WeightsError, match="not a BiSeNet face-parsing checkpoint"):
        FaceParser(size=PARSE_SIZE, weights=foreign)


def test_paste_options_name_valid_values() -> None:
    with pytest.raises(InputError, match="paste.mask must be one of box, parsing, got .oval."):
        PasteOptions(mask="oval")
    with pytest.raises(InputError, match="multiple of 32"):
        PasteOptions(parse_size=100)


def test_paste_takes_a_mask_per_face_times_the_feathered_square() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    crop = face_crop(ASTRONAUT_LANDMARKS * 0.4 + 20, 64)
    face = np.full((64, 64, 3), 255, np.uint8)
    fixed_rgb, fixed, _, _ = paste_faces(frame, [(face, crop)])
    ones_rgb, ones, _, _ = paste_faces(frame, [(face, crop)], masks=[np.ones((64, 64), np.float32)])
    np.testing.assert_array_equal(ones, fixed)  # a mask of ones is the square alone
    np.testing.assert_array_equal(ones_rgb, fixed_rgb)
    same, _, _, _ = paste_faces(frame, [(face, crop)], masks=[None])
    np.testing.assert_array_equal(same, fixed_rgb)

    half = np.zeros((64, 64), np.float32)
    half[:, :32] = 1.0  # only the crop's left half
    rgb, mask, _, _ = paste_faces(frame, [(face, crop)], masks=[half])
    assert 0 < mask.sum() < 0.6 * fixed.sum()
    untouched = mask == 0
    np.testing.assert_array_equal(rgb[untouched], frame[untouched])
    assert (fixed[untouched] > 0).any()  # the square would have covered some of it
    _, none, _, _ = paste_faces(frame, [(face, crop)], masks=[np.zeros((64, 64), np.float32)])
    assert not none.any()
    with pytest.raises(ValueError, match="masks for"):
        paste_faces(frame, [(face, crop)], masks=[])
    with pytest.raises(ValueError, match="64x64"):
        paste_faces(frame, [(face, crop)], masks=[np.ones((32, 32), np.float32)])


def _parsing_settings(weights: Path, **temporal) -> Settings:
    settings = load_settings(overrides={"paste.mask": "parsing", "paste.parse_size": PARSE_SIZE,
                                        "paste.parsing_weights": str(weights), "model.batch_size": 4})
    return dataclasses.replace(settings, temporal=dataclasses.replace(settings.temporal, **temporal))


def test_restore_with_the_parsing_mask_changes_only_the_faces(tiny_osdface_model, bisenet_file: Path) -> None:
    clip = moving_face_clip(10, *SIZE, face_free=(0, 8, 9))
    source = frames_of(clip.frames)  # the restorer edits them in place
    with recorded_paste_masks() as masks:
        out = list(face_restorer(tiny_osdface_model, _parsing_settings(bisenet_file))(iter(source)))
    with recorded_paste_masks() as box_masks:
        list(face_restorer(tiny_osdface_model, _settings_box())(iter(frames_of(clip.frames))))

    assert [f.index for f in out] == [f.index for f in source] and len(masks) == 7
    for before, after, old, truth in zip(source, out, clip.frames, clip.truth):
        if not truth:
            assert after is before and (after.to_rgb() == old).all()  # no face: the very same frame
            continue
        (landmarks,) = truth.values()
        new = after.to_rgb()
        changed = (old != new).any(axis=2)
        assert changed.any() and not changed[~face_region(landmarks, changed.shape)].any()
    for parsed, box in zip(masks, box_masks):
        assert parsed.shape == box.shape and 0 <= parsed.min() and parsed.max() <= 1
        assert (parsed[box == 0] == 0).all()  # never beyond the crop's feathered square
        assert np.abs(parsed - box).max() > 0.1  # and shaped by the content, not the square


def test_mask_smoothing_steadies_the_pasted_mask_of_a_still_face(tiny_osdface_model, bisenet_file: Path) -> None:
    width, height = SIZE
    face, (landmarks,) = render(background(width, height), [Pose(width / 2, height / 2, 0.6, 0.0)])
    rng = np.random.default_rng(1)
    images = [degrade(face, rng, blur=1.0, noise=6.0, jpeg=50) for _ in range(12)]
    region = face_region(landmarks, (height, width))
    flicker = {}
    for name, strength in (("on", None), ("off", 0.0)):  # off: --no-temporal
        settings = _parsing_settings(bisenet_file, **({} if strength is None else {"strength": strength}))
        with recorded_paste_masks() as masks:
            list(face_restorer(tiny_osdface_model, settings)(iter(frames_of(images))))
        flicker[name] = temporal_flicker(np.stack(masks[3:]), region)
    ratio = flicker["on"] / flicker["off"]
    print(f"pasted parsing-mask flicker with temporal smoothing / --no-temporal: {ratio:.3f} "
          f"({flicker['on']:.2e} / {flicker['off']:.2e})")
    assert flicker["off"] > 0  # the random parser's masks do fluctuate with the noise
    assert ratio < 0.6


def test_cli_without_usable_parsing_weights_says_so_in_one_line(cli, cache: Path, tmp_path: Path, tiny_osdface) -> None:
    source = write_video(tmp_path / "in.mkv", frames=4, size=SIZE)
    command = ["restore", source, tmp_path / "out.mkv", "--paste-mask", "parsing", "--weights", tiny_osdface.release,
               "--base", tiny_osdface.base, "--device", "cpu", "--dtype", "fp32"]
    code, _, err = cli(*command)
    assert code == 1 and err.count("\n") == 1 and err.startswith("vidface: error: "), err
    assert PARSING_WEIGHTS.filename in err and "--parsing-weights" in err
    (cache / PARSING_WEIGHTS.filename).parent.mkdir(parents=True)
    (cache / PARSING_WEIGHTS.filename).write_bytes(b"\x80\x02truncated")
    code, _, err = cli(*command)
    assert code == 1 and err.count("\n") == 1 and "cannot read" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "xdg"]  # nothing written
