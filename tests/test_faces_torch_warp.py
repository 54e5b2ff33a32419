"""The torch crops and paste-back (vidface.faces.torch_warp) against the OpenCV path they replace
on a GPU: astronaut heads, turned and scaled, one half out of the frame, one wholly outside."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest
import torch

from face_clips import Pose, background, render
from vidface.faces import paste, torch_warp
from vidface.faces.align import FaceCrop, face_crop, transform_points, warp_face

SIZE = 256
WIDTH, HEIGHT = 480, 320
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
# Overlapping (0, 1), half out at the bottom left (2), small and upside down (3), wholly outside (4).
POSES = [Pose(150, 160, 0.9, 15.0), Pose(200, 150, 0.6, -30.0), Pose(20, 300, 1.2, 40.0),
         Pose(420, 60, 0.35, 170.0), Pose(900, 100, 0.5, 0.0)]


@lru_cache(maxsize=1)
def scene() -> tuple[np.ndarray, list[FaceCrop]]:
    """A photo background (texture up to the frame's edges, so the border mode shows) with the heads."""
    frame, landmarks = render(background(WIDTH, HEIGHT, "coffee"), POSES)
    frame.setflags(write=False)
    return frame, [face_crop(points, SIZE) for points in landmarks]


def scene_frame(deep: bool) -> np.ndarray:
    """The scene's frame: 8-bit, or deep (uint16, with values between the 8-bit levels)."""
    frame = scene()[0]
    if not deep:
        return frame.copy()  # writable: the upload to a CPU is the frame itself
    fine = np.random.default_rng(7).integers(0, 257, frame.shape)
    return np.clip(frame.astype(np.int64) * 257 + fine - 128, 0, 65535).astype(np.uint16)


def as_levels(faces: torch.Tensor, top: int = 255) -> np.ndarray:
    """N×3×S×S float in [0, 1] → N×S×S×3 int levels of 0-`top`, rounded."""
    return torch.round(faces.double() * top).permute(0, 2, 3, 1).cpu().numpy().astype(int)


def test_the_scene_puts_crops_across_the_frame_edge() -> None:
    frame, crops = scene()
    corners = np.array([[0, 0], [SIZE, 0], [0, SIZE], [SIZE, SIZE]], float)
    half_out = transform_points(crops[2].inverse, corners)
    assert half_out[:, 0].min() < -50 and half_out[:, 1].max() > HEIGHT + 50
    assert paste.frame_box(crops[4], WIDTH, HEIGHT) is None  # wholly outside
    # Mirroring with or without the edge pixel differs by more than the tolerance here.
    edge_repeated = cv2.warpAffine(frame, crops[2].affine, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
    assert np.abs(edge_repeated.astype(int) - warp_face(frame, crops[2]).astype(int)).max() > 10


@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "deep"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("border", ["reflect", "constant"])
def test_warp_faces_matches_warp_face(border: str, device: str, deep: bool) -> None:
    """Crops in whole levels of the frame's depth, alike within a level of 255 (OpenCV samples at
    1/32 pixel, torch exactly)."""
    _, crops = scene()
    frame = scene_frame(deep)
    top = 65535 if deep else 255
    faces = torch_warp.warp_faces(torch_warp.FrameUploader(torch.device(device)).upload(frame), crops, border)
    assert faces.device.type == device and faces.shape == (len(crops), 3, SIZE, SIZE) and faces.dtype == torch.float32
    assert 0.0 <= float(faces.min()) and float(faces.max()) <= 1.0
    ours = as_levels(faces, top)
    for face, crop in zip(ours, crops):
        theirs = warp_face(frame, crop, border)
        assert theirs.dtype == frame.dtype
        difference = np.abs(face - theirs.astype(int)) * (255 / top)
        assert difference.max() <= 1
        assert (difference > 0.5).mean() < 0.01  # off by a level only where rounding tips
    if border == "constant":
        assert np.all(ours[4] == np.multiply((132, 133, 135), top // 255))


def restored_faces(frame: np.ndarray, crops: list[FaceCrop]) -> np.ndarray:
    """Crops unlike the frame, each its own (so a misplaced or misordered paste shows): N×S×S×3 uint8."""
    return np.stack([np.roll(255 - warp_face(frame, crop), i, axis=2) for i, crop in enumerate(crops)])


def parsed_masks(count: int) -> np.ndarray:
    """Soft, off-centre, differently sized blobs as per-face masks: N×S×S float32 in [0, 1]."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    return np.stack([np.clip(1.5 - 4 * (1 + i) * ((xx - 0.5) ** 2 + (yy - 0.55 - 0.05 * i) ** 2), 0, 1)
                     for i in range(count)]).astype(np.float32)


def assert_pasted_alike(ours: paste.Pasted, theirs: paste.Pasted, frame: np.ndarray) -> None:
    """Alike within an 8-bit level (a deep frame's patches are compared in 8-bit levels too)."""
    level = 257 if frame.dtype == np.uint16 else 1
    assert ours.rgb.dtype == frame.dtype and ours.rgb.shape == frame.shape
    assert ours.mask.dtype == np.float32 and ours.mask.shape == frame.shape[:2]
    assert np.abs(ours.mask - theirs.mask).max() <= 1e-3
    # Exactly 0 where no face reaches; reaching or not may differ only where a mask is ~0 anyway.
    differ = (ours.mask == 0) != (theirs.mask == 0)
    assert np.maximum(ours.mask, theirs.mask)[differ].max(initial=0) < 1e-6
    reached = np.zeros(frame.shape[:2], bool)
    for x0, y0, x1, y1 in filter(None, ours.regions):
        reached[y0:y1, x0:x1] = True
    assert not ours.mask[~reached].any()
    # Where a pixel's mask is below 1e-4 its rgb is the float32 ratio of two near-zero numbers in
    # both versions (1 - Π(1 - mask) cancels), and can move many levels with a 1e-7 change of
    # mask; it weighs too little to move the picture, which the composite check covers.
    difference = np.abs(ours.rgb.astype(int) - theirs.rgb.astype(int))[theirs.mask >= 1e-4]
    assert difference.max() <= level
    assert (difference > 0.5 * level).mean() < 0.01  # off by a level only where rounding tips
    shown = [frame * (1 - p.mask[..., None]) + p.rgb * p.mask[..., None].astype(np.float64) for p in (ours, theirs)]
    assert np.abs(shown[0] - shown[1]).max() <= 1.01 * level
    np.testing.assert_array_equal(ours.rgb[ours.mask == 0], frame[ours.mask == 0])
    assert len(ours.regions) == len(theirs.regions)
    for mine, reference in zip(ours.regions, theirs.regions):
        assert (mine is None) == (reference is None)
        if mine is not None:
            assert np.abs(np.subtract(mine, reference)).max() <= 1


@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "deep"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_masks", [False, True])
def test_paste_faces_matches_the_numpy_paste(with_masks: bool, device: str, deep: bool) -> None:
    """Into an 8-bit frame and into a deep one (both pastes in 16-bit levels there)."""
    _, crops = scene()
    frame = scene_frame(deep)
    restored = restored_faces(scene()[0], crops)
    masks = parsed_masks(len(crops)) if with_masks else None
    uploader = torch_warp.FrameUploader(torch.device(device))
    theirs = paste.paste_faces(frame, [(face.astype(np.float32) / 255, crop) for face, crop in zip(restored, crops)],
                               None if masks is None else list(masks))
    ours = torch_warp.paste_faces(uploader.upload(frame),
                                  torch.from_numpy(restored).permute(0, 3, 1, 2).to(device) / 255, crops,
                                  None if masks is None else torch.from_numpy(masks).to(device))
    assert_pasted_alike(ours, theirs, frame)
    patch = torch_warp.paste_faces(uploader.upload(frame),
                                   torch.from_numpy(restored).permute(0, 3, 1, 2).to(device) / 255, crops,
                                   None if masks is None else torch.from_numpy(masks).to(device), context=5)
    (x, y), (height, width) = patch.origin, patch.mask.shape
    assert width < frame.shape[1] or height < frame.shape[0]
    np.testing.assert_array_equal(patch.rgb, ours.rgb[y:y + height, x:x + width])
    np.testing.assert_array_equal(patch.mask, ours.mask[y:y + height, x:x + width])
    assert theirs.regions[4] is None and all(region is not None for region in theirs.regions[:4])
    assert theirs.regions[2][0] == 0 and theirs.regions[2][3] == HEIGHT  # clipped to the frame
    x0, y0, x1, y1 = theirs.regions[0]
    a0, b0, a1, b1 = theirs.regions[1]
    assert max(x0, a0) < min(x1, a1) and max(y0, b0) < min(y1, b1)  # faces 0 and 1 overlap: order matters
    assert np.abs(ours.rgb.astype(int) - frame.astype(int)).max() > 100 * (257 if deep else 1)  # the faces did change it
    for index, region in enumerate(ours.regions[:4]):  # each the tight box of what that face alone reaches
        mask = None if masks is None else torch.from_numpy(masks[index:index + 1]).to(device)
        alone = torch_warp.paste_faces(uploader.upload(frame),
                                       torch.zeros((1, 3, SIZE, SIZE), device=device), crops[index:index + 1], mask)
        rows, cols = np.flatnonzero(alone.mask.any(axis=1)), np.flatnonzero(alone.mask.any(axis=0))
        assert region == alone.regions[0] == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


def test_paste_of_faces_wholly_outside_leaves_the_frame() -> None:
    frame, crops = scene()
    restored = torch.zeros((1, 3, SIZE, SIZE))
    ours = torch_warp.paste_faces(torch.from_numpy(frame.copy()), restored, crops[4:])
    np.testing.assert_array_equal(ours.rgb, frame)
    assert ours.mask.shape == frame.shape[:2] and not ours.mask.any() and ours.regions == [None]
    nothing = torch_warp.paste_faces(torch.from_numpy(frame.copy()), torch.zeros((0, 3, SIZE, SIZE)), [])
    np.testing.assert_array_equal(nothing.rgb, frame)
    assert not nothing.mask.any() and nothing.regions == []


def test_bad_arguments_are_refused() -> None:
    frame, crops = scene()
    pixels = torch.from_numpy(frame.copy())
    with pytest.raises(ValueError):
        torch_warp.warp_faces(pixels, crops, border="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        torch_warp.warp_faces(pixels, [crops[0], face_crop(np.eye(5, 2) * 50 + 100, 128)])
    with pytest.raises(ValueError):
        torch_warp.paste_faces(pixels, torch.zeros((2, 3, SIZE, SIZE)), crops)
    with pytest.raises(ValueError):
        torch_warp.paste_faces(pixels, torch.zeros((len(crops), 3, SIZE, SIZE)), crops, torch.ones((1, SIZE, SIZE)))


@pytest.mark.parametrize("device", DEVICES)
def test_uploaded_frames_are_the_frames_as_they_were_at_upload(device: str) -> None:
    """More frames than the uploader's pinned buffers, each changed on the host right after its
    upload: every device copy holds the frame as it was, whatever the sizes and depths that come
    in turn (parts of frames around their faces: smaller, then larger than the buffers, deep ones
    too). On the CPU the upload is the frame itself, no copy."""
    rng = np.random.default_rng(3)
    uploader = torch_warp.FrameUploader(torch.device(device))
    frames = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(2 * uploader.BUFFERS + 1)]
    for shape, dtype in (((HEIGHT // 2, WIDTH - 3), np.uint8), ((HEIGHT, 2 * WIDTH), np.uint16),
                         ((57, 91), np.uint16), ((HEIGHT, WIDTH), np.uint8)):
        frames += [rng.integers(0, np.iinfo(dtype).max + 1, (*shape, 3), dtype=dtype) for _ in range(3)]
    expected = [frame.copy() for frame in frames]
    uploaded = []
    for frame in frames:
        uploaded.append(uploader.upload(frame))
        if device != "cpu":
            frame[...] = 0
    assert np.shares_memory(uploaded[0].cpu().numpy(), frames[0]) == (device == "cpu")
    for on_device, frame in zip(uploaded, expected):
        assert on_device.device.type == device
        np.testing.assert_array_equal(torch_warp._on_host(on_device.cpu()), frame)


# Beyond the right and top edges (0), larger in the frame than its crop (1), out by more than the frame's width (2).
EDGE_POSES = [Pose(470, 10, 0.7, -20.0), Pose(240, 160, 2.5, 5.0), Pose(-700, 150, 0.5, 0.0)]


@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "deep"])
@pytest.mark.parametrize("device", DEVICES)
def test_a_part_of_the_frame_gives_the_crops_and_pastes_of_the_whole(device: str, deep: bool) -> None:
    """Cut from the part of the frame `warp_source_box` names (placed there by `FaceCrop.within`),
    each crop is the whole frame's, mirrored edges included, with OpenCV and with torch, within the
    rounding of its position (a level of 255 at a few pixels in ten thousand; for a deep frame a
    few levels of 65535, a sixtieth of an 8-bit level at most); pasted into that part, with a
    context around it, the faces land where they land in the whole."""
    from vidface.faces.align import warp_source_box

    _, landmarks = render(background(WIDTH, HEIGHT, "coffee"), EDGE_POSES)
    crops = scene()[1][:4] + [face_crop(points, SIZE) for points in landmarks]
    frame = scene_frame(deep)
    top, tolerance = (65535, 4) if deep else (255, 1)
    uploader = torch_warp.FrameUploader(torch.device(device))
    boxes = [warp_source_box(crop, WIDTH, HEIGHT) for crop in crops]
    assert 0 < boxes[0][0] and 0 < boxes[0][1] and boxes[0][2] < WIDTH and boxes[0][3] < HEIGHT  # inside
    assert boxes[2][0] == 0 and boxes[2][3] == HEIGHT  # half out at the bottom left: reaches those edges
    assert boxes[4][1] == 0 and boxes[4][2] == WIDTH and boxes[4][0] > WIDTH / 2  # out at the top right
    assert boxes[6][0] == 0 and boxes[6][2] == WIDTH  # mirrored more than once: the whole width
    for index, (crop, (x0, y0, x1, y1)) in enumerate(zip(crops, boxes)):
        part, moved = frame[y0:y1, x0:x1].copy(), crop.within(x0, y0)
        opencv = (warp_face(part, moved), warp_face(frame, crop))
        on_device = (torch_warp.warp_faces(uploader.upload(part), [moved]),
                     torch_warp.warp_faces(uploader.upload(frame), [crop]))
        for ours, theirs in (opencv, [as_levels(faces, top)[0] for faces in on_device]):
            difference = np.abs(ours.astype(int) - theirs.astype(int))
            assert difference.max() <= tolerance, f"crop {index}: {difference.max()} levels off"
            assert deep or (difference > 0).mean() < 1e-3, f"crop {index}"
        px0, py0, px1, py1 = paste.patch_box([(x0, y0, x1, y1)], 5, WIDTH, HEIGHT)
        face = 255 - warp_face(scene()[0], crop)
        whole = paste.paste_faces(frame, [(face, crop)], context=5)
        window = paste.paste_faces(frame[py0:py1, px0:px1].copy(), [(face, crop.within(px0, py0))], context=5)
        assert window.mask.shape == whole.mask.shape
        if not whole.mask.size:  # wholly outside: an empty patch, anywhere
            continue
        assert (window.origin[0] + px0, window.origin[1] + py0) == whole.origin, f"paste {index}"
        assert np.abs(window.rgb.astype(int) - whole.rgb.astype(int)).max() <= tolerance
        assert np.abs(window.mask - whole.mask).max() <= 1e-3
