"""Alignment to the FFHQ template and paste-back: round trips, padding, masks, paste order."""

from __future__ import annotations

import numpy as np
import pytest

from face_clips import Pose, background, head_sprite, render
from vidface.faces.align import (FFHQ_TEMPLATE_512, face_crop, invert_affine, similarity_transform,
                                 transform_points, warp_face)
from vidface.faces.paste import crop_mask, paste_faces


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def test_similarity_transform_recovers_a_known_similarity() -> None:
    truth = similarity(0.37, 23.0, 41.5, -7.25)
    src = FFHQ_TEMPLATE_512 + np.array([[3.0, -1.0], [0, 2], [-4, 0], [1, 1], [0, -3]])
    fitted = similarity_transform(src, transform_points(truth, src))
    np.testing.assert_allclose(fitted, truth, atol=1e-9)


def test_shifting_the_targets_moves_only_the_fits_translation() -> None:
    """What the refinement relies on to fit once per face for all its crops: fitting onto the
    targets shifted by s gives the fit onto the targets, followed by a move by s."""
    from vidface.faces.detect import _shifted

    rng = np.random.default_rng(3)
    for _ in range(20):
        source, target = rng.uniform(0, 500, (5, 2)), rng.uniform(0, 200, (5, 2))
        shift = rng.uniform(-20, 20, 2)
        np.testing.assert_allclose(_shifted(similarity_transform(source, target), shift),
                                   similarity_transform(source, target + shift), atol=1e-9)


def test_face_crop_puts_landmarks_on_the_template_and_inverts() -> None:
    to_frame = similarity(0.4, -17.0, 120.0, 35.0)
    landmarks = transform_points(to_frame, FFHQ_TEMPLATE_512)
    crop = face_crop(landmarks)
    np.testing.assert_allclose(transform_points(crop.affine, landmarks), FFHQ_TEMPLATE_512, atol=1e-6)
    np.testing.assert_allclose(transform_points(crop.inverse, FFHQ_TEMPLATE_512), landmarks, atol=1e-6)
    np.testing.assert_allclose(invert_affine(crop.inverse), crop.affine, atol=1e-9)
    small = face_crop(landmarks, size=128)
    np.testing.assert_allclose(transform_points(small.affine, landmarks), FFHQ_TEMPLATE_512 / 4, atol=1e-6)


@pytest.mark.parametrize("pixel_shape", [(64 / 45, 1.0), (1.0, 64 / 45)], ids=["wide", "turned"])
def test_an_anamorphic_face_is_cut_as_it_is_shown(pixel_shape: tuple[float, float]) -> None:
    """A 16:9 PAL SD picture stores its faces 64:45 narrower than it shows them (taller, for a
    picture turned upright): the crop stretches its pixels back, so the model sees the face
    the displayed picture shows, whose landmarks fit the template as a square-pixel face's do;
    cut as square pixels it is another, squashed face. The paste puts it back where it was."""
    import cv2

    shown, (landmarks,) = render(background(400, 300, "coffee"), [Pose(200, 150, 0.7, 12.0)])
    sx, sy = pixel_shape
    stored = cv2.resize(shown, (round(400 / sx), round(300 / sy)), interpolation=cv2.INTER_AREA)
    stored_landmarks = landmarks / (400 / stored.shape[1], 300 / stored.shape[0])
    truth = warp_face(shown, face_crop(landmarks)).astype(float)
    anamorphic = face_crop(stored_landmarks, pixel_shape=(400 / stored.shape[1], 300 / stored.shape[0]))
    square = face_crop(stored_landmarks)
    fit = np.abs(transform_points(face_crop(landmarks).affine, landmarks) - FFHQ_TEMPLATE_512).max()
    fits = [np.abs(transform_points(crop.affine, stored_landmarks) - FFHQ_TEMPLATE_512).max()
            for crop in (anamorphic, square)]
    assert abs(fits[0] - fit) < 1e-6 and fits[1] > 2 * fit, (fit, fits)
    as_shown, squashed = (np.abs(warp_face(stored, crop).astype(float) - truth).mean() for crop in (anamorphic, square))
    assert as_shown < 4 and squashed > 10 * as_shown, (as_shown, squashed)
    rgb, mask, _, _ = paste_faces(stored, [(warp_face(stored, anamorphic), anamorphic)])
    assert np.abs(rgb.astype(int) - stored.astype(int))[mask > 0.99].mean() < 2.0


@pytest.mark.parametrize("width, height", [(320, 180), (144, 256)])
def test_warp_then_paste_reproduces_the_face(width: int, height: int) -> None:
    frame, (landmarks,) = render(background(width, height), [Pose(width / 2, height / 2, 0.6, 10.0)])
    crop = face_crop(landmarks)
    face = warp_face(frame, crop)
    assert face.shape == (512, 512, 3) and face.dtype == np.uint8
    rgb, mask, _, _ = paste_faces(frame, [(face, crop)])
    inside = mask > 0.99
    assert inside.sum() > 1000
    error = np.abs(rgb.astype(int) - frame.astype(int))[inside]
    assert error.mean() < 2.0  # bilinear up- then down-sampling of the same pixels
    untouched = mask == 0
    assert untouched.any()
    np.testing.assert_array_equal(rgb[untouched], frame[untouched])


def test_face_partly_outside_the_frame_is_padded() -> None:
    frame, (landmarks,) = render(background(200, 150), [Pose(20, 75, 0.5, 0.0)])  # half out, left
    crop = face_crop(landmarks)
    reflected = warp_face(frame, crop, border="reflect")
    constant = warp_face(frame, crop, border="constant")
    left_edge = transform_points(crop.affine, np.array([[0.0, 0.0], [0.0, 150.0]]))[:, 0]
    outside_x = int(left_edge.min()) - 2  # crop columns left of the frame's left edge
    assert outside_x > 20
    grey = constant[200:300, :outside_x].reshape(-1, 3)
    assert np.all(grey == grey[0]) and tuple(grey[0]) == (132, 133, 135)
    assert reflected[200:300, :outside_x].std() > 5  # mirrored picture, not a flat fill
    rgb, mask, _, _ = paste_faces(frame, [(reflected, crop)])
    assert rgb.shape == frame.shape and mask.shape == frame.shape[:2]
    with pytest.raises(ValueError):
        warp_face(frame, crop, border="wrap")  # type: ignore[arg-type]


def test_paste_mask_is_soft_zero_at_the_crop_edge_and_sized_to_the_face() -> None:
    mask = crop_mask(512)
    assert mask.dtype == np.float32 and mask.min() == 0.0 and mask.max() == 1.0
    assert np.all(mask[0] == 0) and np.all(mask[:, -1] == 0)
    assert np.abs(np.diff(mask, axis=1)).max() < 0.05  # no step anywhere: a feathered ramp
    frame = background(320, 240)
    areas = []
    for scale in (0.3, 0.6):
        _, (landmarks,) = render(frame, [Pose(160, 120, scale, 0.0)])
        crop = face_crop(landmarks)
        _, pasted, _, _ = paste_faces(frame, [(np.zeros((512, 512, 3), np.uint8), crop)])
        areas.append(float(pasted.sum()))
    # The ramp is a tenth of the crop wide: for this face (eye distance ~26 px) ~10 px.
    assert np.abs(np.diff(pasted, axis=0)).max() < 0.2 and np.abs(np.diff(pasted, axis=1)).max() < 0.2
    assert 3.2 < areas[1] / areas[0] < 4.8  # twice the face, four times the mask


def test_frame_without_faces_passes_unchanged() -> None:
    frame = background(96, 64)
    rgb, mask, _, _ = paste_faces(frame, [])
    np.testing.assert_array_equal(rgb, frame)
    assert mask.shape == (64, 96) and not mask.any()


def test_overlapping_faces_paste_in_the_given_order() -> None:
    frame = background(320, 240)
    _, (a, b) = render(frame, [Pose(150, 120, 0.6, 0.0), Pose(175, 120, 0.6, 0.0)])
    red, blue = np.zeros((512, 512, 3), np.uint8), np.zeros((512, 512, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    faces = [(red, face_crop(a)), (blue, face_crop(b))]
    rgb, mask, _, _ = paste_faces(frame, faces)
    again, _, _, _ = paste_faces(frame, faces)
    np.testing.assert_array_equal(rgb, again)
    centre = (120, 165)  # where both masks are 1: the later face wins
    assert mask[centre] == pytest.approx(1.0) and tuple(rgb[centre]) == (0, 0, 255)
    swapped, _, _, _ = paste_faces(frame, faces[::-1])
    assert tuple(swapped[centre]) == (255, 0, 0)
    # What Frame.with_rgb makes of (rgb, mask) is the layered result: layer by hand and compare.
    layered = frame.astype(np.float64)
    for colour, crop in faces:
        _, m, _, _ = paste_faces(frame, [(colour, crop)])
        layered = layered * (1 - m[..., None]) + colour[0, 0].astype(np.float64) * m[..., None]
    blended = frame * (1 - mask[..., None]) + rgb * mask[..., None].astype(np.float64)
    assert np.abs(blended - layered).max() <= 1.0


def test_each_face_region_is_the_box_its_mask_reaches() -> None:
    """Two faces, one turned and one half out of the frame, and one wholly outside: each region
    is the tight box of the pixels that face's own paste reaches, None for the one outside."""
    frame = background(320, 240)
    _, landmarks = render(frame, [Pose(120, 120, 0.5, 25.0), Pose(300, 100, 0.5, 0.0), Pose(900, 100, 0.5, 0.0)])
    faces = [(np.full((512, 512, 3), 200, np.uint8), face_crop(points)) for points in landmarks]
    pasted = paste_faces(frame, faces)
    assert pasted.regions[2] is None
    for face, region in zip(faces[:2], pasted.regions[:2]):
        alone = paste_faces(frame, [face]).mask
        rows, cols = np.flatnonzero(alone.any(axis=1)), np.flatnonzero(alone.any(axis=0))
        assert region == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    assert pasted.regions[1][2] == 320  # reaches the right edge, clipped to the frame
    outside = np.ones(pasted.mask.shape, bool)
    for x0, y0, x1, y1 in pasted.regions[:2]:
        outside[y0:y1, x0:x1] = False
    assert not pasted.mask[outside].any()


@pytest.mark.parametrize("context", [0, 7, 400])
def test_a_patch_with_context_is_the_whole_paste_around_the_faces(context: int) -> None:
    """paste_faces(context=N) gives the part of the whole-frame paste that the faces reach, N
    frame pixels around it (within the frame); outside the patch the whole paste's mask is 0."""
    frame = background(320, 240)
    _, landmarks = render(frame, [Pose(120, 120, 0.5, 25.0), Pose(300, 100, 0.5, 0.0), Pose(900, 100, 0.5, 0.0)])
    faces = [(np.full((512, 512, 3), 200, np.uint8), face_crop(points)) for points in landmarks]
    whole = paste_faces(frame, faces)
    patch = paste_faces(frame, faces, context=context)
    reached = [region for region in whole.regions if region is not None]
    x0, y0 = min(r[0] for r in reached), min(r[1] for r in reached)
    x1, y1 = max(r[2] for r in reached), max(r[3] for r in reached)
    assert patch.origin[0] <= max(0, x0 - context) and patch.origin[1] <= max(0, y0 - context)
    height, width = patch.mask.shape
    assert patch.origin[0] + width >= min(320, x1 + context) and patch.origin[1] + height >= min(240, y1 + context)
    if context < 400:
        assert width < 320 and height < 240
    else:
        assert patch.origin == (0, 0) and (height, width) == (240, 320)
    rows, cols = slice(patch.origin[1], patch.origin[1] + height), slice(patch.origin[0], patch.origin[0] + width)
    np.testing.assert_array_equal(patch.rgb, whole.rgb[rows, cols])
    np.testing.assert_array_equal(patch.mask, whole.mask[rows, cols])
    outside = whole.mask.copy()
    outside[rows, cols] = 0
    assert not outside.any() and patch.regions == whole.regions
    nothing = paste_faces(frame, faces[2:], context=context)
    assert nothing.rgb.shape == (0, 0, 3) and nothing.mask.shape == (0, 0) and nothing.regions == [None]


def test_float_crops_in_unit_range_paste_like_uint8() -> None:
    frame, (landmarks,) = render(background(160, 120), [Pose(80, 60, 0.4, 0.0)])
    crop = face_crop(landmarks)
    face = warp_face(frame, crop)
    as_uint8, _, _, _ = paste_faces(frame, [(face, crop)])
    as_float, _, _, _ = paste_faces(frame, [(face.astype(np.float32) / 255.0, crop)])
    assert np.abs(as_uint8.astype(int) - as_float.astype(int)).max() <= 1


def test_head_sprite_is_read_only() -> None:
    rgb, alpha, landmarks = head_sprite()
    with pytest.raises(ValueError):
        rgb[0, 0] = 0
    assert landmarks.shape == (5, 2) and alpha.max() == 1.0
