"""Frame records: upright RGB, and blending that keeps every unmasked source sample exactly."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from skimage import data

from media import moving_pattern, write_video
from vidface.io.decode import decode_frames
from vidface.io.blend import BLEND_CONTEXT
from vidface.io.frames import Frame
from vidface.io.pixels import reformatted


def _frame(video: av.VideoFrame, rotation: int = 0) -> Frame:
    return Frame(index=0, pts=0, time_base=Fraction(1, 24), duration=1, video=video, rotation=rotation)


def _planes(video: av.VideoFrame) -> list[np.ndarray]:
    """Each plane's samples as rows × columns × components (uint16 for >8-bit formats)."""
    out = []
    deep = max(c.bits for c in video.format.components) > 8
    dtype = np.uint16 if deep else np.uint8
    for index, plane in enumerate(video.planes):
        channels = len([c for c in video.format.components if c.plane == index])
        rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
        out.append(rows[:, : plane.width * channels].reshape(plane.height, plane.width, channels).copy())
    return out


def _touched(mask: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """rows × columns: True where a subsampled sample's footprint has any nonzero mask."""
    fy, fx = -(-mask.shape[0] // rows), -(-mask.shape[1] // columns)
    touched = np.zeros((rows, columns), bool)
    for y, x in zip(*np.nonzero(mask)):
        touched[y // fy, x // fx] = True
    return touched


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_to_rgb_is_upright(rotation: int) -> None:
    upright = moving_pattern(40, 24)(3)  # 24 rows, 40 columns, as displayed
    stored = np.ascontiguousarray(np.rot90(upright, k=rotation // 90))  # undo a clockwise turn
    video = av.VideoFrame.from_ndarray(stored, format="rgb24")
    rgb = _frame(video, rotation).to_rgb()
    assert rgb.shape == (24, 40, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, upright)


@pytest.mark.parametrize(
    ("pix_fmt", "size", "rotation"),
    [("yuv420p", (64, 48), 0), ("yuv420p10le", (64, 48), 0), ("yuv420p", (63, 47), 90),
     ("nv12", (64, 48), 270), ("yuv444p", (39, 29), 180)],
)
def test_with_rgb_keeps_unmasked_samples_exactly(pix_fmt: str, size: tuple[int, int], rotation: int) -> None:
    width, height = size
    rng = np.random.default_rng(0)
    source = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                        format="rgb24").reformat(format=pix_fmt)
    frame = _frame(source, rotation)
    up_h, up_w = (width, height) if rotation in (90, 270) else (height, width)
    mask = np.zeros((up_h, up_w), np.float32)
    mask[up_h // 4: up_h // 2, up_w // 4: up_w // 2] = 1.0  # a block in the upright picture
    original = _planes(source)
    edited = frame.with_rgb(np.full((up_h, up_w, 3), 255, np.uint8), mask)

    assert edited.video.format.name == pix_fmt
    assert (edited.video.width, edited.video.height) == (width, height)
    assert (edited.pts, edited.rotation, edited.index) == (frame.pts, frame.rotation, frame.index)
    stored_mask = np.rot90(mask, k=rotation // 90)
    for before, after in zip(original, _planes(edited.video)):
        touched = _touched(stored_mask, before.shape[0], before.shape[1])
        np.testing.assert_array_equal(after[~touched], before[~touched])
        assert not np.array_equal(after[touched], before[touched])
    # inside the mask (away from its edge, where chroma is interpolated) the picture is white
    inner = np.zeros_like(mask, dtype=bool)
    inner[up_h // 4 + 2: up_h // 2 - 2, up_w // 4 + 2: up_w // 2 - 2] = True
    np.testing.assert_allclose(edited.to_rgb()[inner], 255, atol=3)


def test_with_rgb_blends_partially_and_validates_shapes() -> None:
    source = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    frame = _frame(source)
    half = frame.with_rgb(np.full((32, 32, 3), 200, np.uint8), np.full((32, 32), 0.5, np.float32))
    assert abs(int(half.to_rgb().mean()) - 100) <= 3
    with pytest.raises(ValueError, match="rgb must be"):
        frame.with_rgb(np.zeros((16, 32, 3), np.uint8), np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="mask must be"):  # a patch reaching past the picture's edge
        frame.with_rgb(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.float32), origin=(20, 0))


@pytest.mark.parametrize("pix_fmt, alpha", [("rgba", 3), ("argb", 0), ("bgra", 3), ("abgr", 0)])
def test_with_rgb_keeps_packed_alpha(pix_fmt: str, alpha: int) -> None:
    """In formats that pack alpha beside colour, wherever it sits, the blend changes colour only."""
    stored = np.full((32, 32, 4), 90, np.uint8)
    stored[..., alpha] = np.arange(32, dtype=np.uint8)[:, None] * 8
    frame = _frame(av.VideoFrame.from_ndarray(stored, format=pix_fmt))
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1
    after = frame.with_rgb(np.full((32, 32, 3), 200, np.uint8), mask).video.to_ndarray()
    np.testing.assert_array_equal(after[..., alpha], stored[..., alpha])
    colour = [channel for channel in range(4) if channel != alpha]
    assert (after[8:24, 8:24][..., colour] == 200).all()


@pytest.mark.parametrize(
    ("pix_fmt", "size", "rotation", "context"),
    [("yuv420p", (128, 96), 0, BLEND_CONTEXT), ("yuv420p10le", (128, 96), 90, BLEND_CONTEXT),
     ("nv12", (128, 96), 180, BLEND_CONTEXT), ("yuv444p", (128, 96), 270, BLEND_CONTEXT),
     ("yuv420p", (128, 96), 90, 2), ("yuv420p", (127, 95), 270, BLEND_CONTEXT)],
)
def test_a_patch_blends_as_the_whole_picture_does(pix_fmt: str, size: tuple[int, int], rotation: int, context: int,
                                                  monkeypatch) -> None:
    """with_rgb of a patch (the pasted faces and `context` pixels around them) changes the
    picture exactly as the whole picture with the patch in place does: with BLEND_CONTEXT
    pixels around its mask the patch alone is converted; with less context, or an odd-sized
    picture (whose chroma converts as a whole), the picture's own RGB fills in."""
    width, height = size
    rng = np.random.default_rng(1)
    source = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                        format="rgb24").reformat(format=pix_fmt)
    frame = _frame(source, rotation)
    original = _planes(source)
    upright = frame.to_rgb()
    up_h, up_w = upright.shape[:2]
    x0, y0, x1, y1 = 41, 37, 63, 55  # the mask's box, upright: odd corners, off the chroma grid
    mask = np.zeros((up_h, up_w), np.float32)
    mask[y0:y1, x0:x1] = rng.uniform(0.2, 1.0, (y1 - y0, x1 - x0))
    painted = upright.copy()
    painted[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
    whole = frame.copy().with_rgb(painted, mask)

    px0, py0, px1, py1 = max(0, x0 - context), max(0, y0 - context), min(up_w, x1 + context), min(up_h, y1 + context)
    fills_in = context < BLEND_CONTEXT or width % 2 or height % 2
    if not fills_in:
        monkeypatch.setattr(Frame, "to_rgb", lambda self: pytest.fail("the patch should have been enough"))
    patched = frame.with_rgb(painted[py0:py1, px0:px1], mask[py0:py1, px0:px1], origin=(px0, py0))
    for ours, reference in zip(_planes(patched.video), _planes(whole.video)):
        np.testing.assert_array_equal(ours, reference)
    assert any(not np.array_equal(a, b) for a, b in zip(_planes(patched.video), original))


@pytest.mark.parametrize(
    ("pix_fmt", "size", "rotation"),
    [("yuv420p10le", (160, 96), 0), ("yuv422p10le", (160, 96), 90), ("p010le", (160, 96), 180),
     ("yuv444p12le", (160, 96), 270), ("gbrp10le", (160, 96), 0), ("yuva444p10le", (160, 96), 90),
     ("nv12", (160, 96), 0), ("yuv420p10le", (159, 95), 90), ("yuyv422", (160, 96), 0)],
)
@pytest.mark.parametrize("deep", [False, True], ids=["8-bit", "16-bit"])
def test_a_box_converts_as_the_whole_picture_does(pix_fmt: str, size: tuple[int, int], rotation: int, deep: bool,
                                                  monkeypatch) -> None:
    """to_rgb of a box gives the whole picture's RGB there, sample for sample, at the picture's
    edges too; where the picture can be cut (an even size, a planar or semi-planar format) only
    the box and a margin are converted."""
    import vidface.io.frames as frames_module
    from vidface.io.pixels import plane_array

    width, height = size
    rng = np.random.default_rng(2)
    source = reformatted(av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                                    format="rgb24"), format=pix_fmt)
    for index, plane in enumerate(source.planes if pix_fmt != "yuyv422" else ()):  # noise in every sample:
        samples = plane_array(plane, source.format, index)
        bits = max(c.bits for c in source.format.components if c.plane == index)
        samples[:] = rng.integers(0, 1 << bits, samples.shape)  # every chroma neighbour differs
    frame = _frame(source, rotation)
    whole = frame.to_rgb(deep=deep)
    up_h, up_w = whole.shape[:2]
    converted = []
    monkeypatch.setattr(frames_module, "reformatted",
                        lambda video, **options: converted.append(video.width * video.height)
                        or reformatted(video, **options))
    boxes = [(41, 37, 63, 55), (0, 0, 23, 17), (up_w - 30, up_h - 21, up_w, up_h), (0, 30, up_w, 31),
             (5, 0, 6, up_h), (0, 0, up_w, up_h)]
    for x0, y0, x1, y1 in boxes:
        part = frame.to_rgb(deep=deep, box=(x0, y0, x1, y1))
        np.testing.assert_array_equal(part, whole[y0:y1, x0:x1], err_msg=f"box {(x0, y0, x1, y1)}")
    cut = pix_fmt != "yuyv422" and width % 2 == 0 and height % 2 == 0
    assert (converted[0] < width * height / 2) == cut, converted
    with pytest.raises(ValueError, match="box"):
        frame.to_rgb(box=(0, 0, up_w + 1, up_h))


@pytest.mark.parametrize("pix_fmt, twin", [("uyvy422", "yuv422p"), ("yuyv422", "yuv422p"), ("y210le", "yuv422p10le"),
                                            ("bgr0", "rgb24"), ("0rgb", "rgb24"), ("x2rgb10le", "gbrp10le")])
def test_a_packed_picture_is_edited_as_its_twin(pix_fmt: str, twin: str) -> None:
    """A packed picture whose samples are not whole bytes apart (a 4:2:2 "UYVY" or "YUY2"
    capture, RGB with a padding byte) takes an edit as the format holding the same samples
    does: converted to that format, the edited picture is the edited twin, and every sample the
    mask leaves is as stored. It stays the same picture."""
    from vidface.io.blend import blend_twin, editable

    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    source = reformatted(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format=pix_fmt)
    assert blend_twin(pix_fmt) == twin and editable(source)
    mask = np.zeros((48, 64), np.float32)
    mask[10:30, 21:45] = rng.uniform(0.3, 1.0, (20, 24))
    patch = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    expected = _frame(reformatted(source, format=twin)).with_rgb(patch, mask)
    before = _planes(reformatted(source, format=twin))
    edited = _frame(source).with_rgb(patch, mask)
    assert edited.video is source and source.format.name == pix_fmt
    after = _planes(reformatted(source, format=twin))
    for index, (ours, theirs, old) in enumerate(zip(after, _planes(expected.video), before)):
        np.testing.assert_array_equal(ours, theirs)
        untouched = ~_touched(mask, old.shape[0], old.shape[1])
        np.testing.assert_array_equal(ours[untouched], old[untouched], err_msg=f"plane {index}")
        assert (ours != old).any()


def test_a_picture_of_bit_fields_or_a_palette_is_not_editable() -> None:
    """16-bit RGB does not come back from any planar format as it was, nor does a 1-bit or a
    palette picture: such a picture is refused rather than changed outside the mask."""
    from vidface.io.blend import blend_twin, editable

    for pix_fmt in ("rgb565le", "rgb555le", "monob"):
        video = av.VideoFrame(32, 16, pix_fmt)
        assert blend_twin(pix_fmt) is None and not editable(video)
        with pytest.raises(ValueError, match=f"cannot blend into pixel format {pix_fmt}"):
            _frame(video).with_rgb(np.zeros((16, 32, 3), np.uint8), np.ones((16, 32), np.float32))


def test_a_shared_frame_is_changed_as_a_copy_and_never_encoded(tmp_path) -> None:
    """Ownership: with_rgb changes an owned frame's picture in place, a shared frame's copy (the
    other holder still reads the picture unchanged), and the encoder refuses a shared frame."""
    import dataclasses
    import io

    from vidface.io.copies import CopyRange
    from vidface.io.encode import OutputWriter
    from vidface.io.options import EncodeOptions
    from vidface.io.probe import probe

    source = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    owned = _frame(source)
    shared = dataclasses.replace(owned, shared=True)
    white, everywhere = np.full((32, 32, 3), 255, np.uint8), np.ones((32, 32), np.float32)
    changed = shared.with_rgb(white, everywhere)
    assert changed.video is not source and not changed.shared and changed.to_rgb().min() > 240
    assert source.to_ndarray(format="rgb24").max() < 15  # the other holder's picture is as it was
    assert shared.with_rgb(white, np.zeros((32, 32), np.float32)) is shared  # nothing to change, nothing copied
    assert owned.with_rgb(white, everywhere) is owned and source.to_ndarray(format="rgb24").min() > 240

    info = probe(write_video(tmp_path / "in.mkv", frames=2, size=(32, 32)))
    x264 = EncodeOptions(codec="libx264")
    with OutputWriter(io.BytesIO(), "matroska", info, x264, "yuv420p", (), CopyRange()) as writer:
        with pytest.raises(ValueError, match="shared"):
            writer.encode(shared)
        assert writer.encode(changed) is not None


def test_with_rgb_keeps_ten_bit_precision(tmp_path) -> None:
    """A 10-bit source edited in a corner keeps its 10-bit samples elsewhere: values that
    8-bit RGB could not express survive."""
    path = write_video(tmp_path / "deep.mkv", frames=2, size=(64, 48), codec="libx265", pix_fmt="yuv420p10le")
    frame = next(decode_frames(path))
    assert frame.video.format.name == "yuv420p10le"
    mask = np.zeros((48, 64), np.float32)
    mask[:8, :8] = 1
    before = _planes(frame.video)[0]
    edited = frame.with_rgb(frame.to_rgb(), mask)
    after = _planes(edited.video)[0]
    np.testing.assert_array_equal(after[8:, 8:], before[8:, 8:])
    assert after.dtype == np.uint16
    assert np.any(before % 4 != 0)  # genuinely 10-bit content


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv422p10le", "yuv444p12le", "gbrp12le"])
def test_a_deep_edit_keeps_the_pictures_precision_inside_the_mask(pix_fmt: str) -> None:
    """A smooth ramp blended in 16-bit RGB (`to_rgb(deep=True)`) into a deep picture comes back
    within a sample step of its values there; in 8-bit RGB it was rounded to a quarter as many
    10-bit levels (a band a colourist's grade would show)."""
    height, width = 32, 128
    ramp = np.repeat(np.linspace(0.50, 0.52, width)[None, :, None], height, axis=0).repeat(3, axis=2)
    grey = av.VideoFrame.from_ndarray(np.full((height, width, 3), 100, np.uint8), format="rgb24")
    mask = np.ones((height, width), np.float32)
    results = {}
    for deep, top, dtype in ((False, 255, np.uint8), (True, 65535, np.uint16)):
        frame = Frame(index=0, pts=0, time_base=Fraction(1, 24), duration=1, video=grey.reformat(format=pix_fmt))
        assert frame.deep
        edited = frame.with_rgb(np.rint(ramp * top).astype(dtype), mask)
        back = edited.to_rgb(deep=True)
        assert back.dtype == np.uint16
        results[deep] = back.astype(float) / 65535
    step = 1 / (2 ** max(c.bits for c in grey.reformat(format=pix_fmt).format.components) - 1)
    deep_error, shallow_error = (np.abs(results[deep] - ramp).max() for deep in (True, False))
    assert deep_error <= step, f"{deep_error / step:.2f} steps off"
    assert shallow_error > 2 * step
    middle = results[True][height // 2, :, 1]
    assert len(np.unique(middle)) >= 3 * len(np.unique(results[False][height // 2, :, 1]))


def test_with_rgb_leaves_the_decoders_pictures_and_keeps_the_frames_flags(tmp_path) -> None:
    """Editing decoded frames in place, as they come out of the decoder, writes into private
    copies: the pictures the decoder predicts later frames from stay as decoded, so every
    frame decodes as it does without edits. Each edited frame keeps what the decoder marked
    on it (here: interlaced)."""
    path = write_video(tmp_path / "fields.mkv", frames=24, size=(64, 48), codec="libx264",
                       codec_options={"flags": "+ildct+ilme", "x264-params": "tff=1:bframes=0:keyint=24"})
    clean = [_planes(frame.video) for frame in decode_frames(path)]
    mask = np.zeros((48, 64), np.float32)
    mask[8:40, 8:56] = 1
    decoded_before_edit = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # each picture is predicted from the one just handed out
        for packet in container.demux(stream):
            for video in packet.decode():
                decoded_before_edit.append(_planes(video))
                edited = _frame(video).with_rgb(np.full((48, 64, 3), 255, np.uint8), mask)
                assert edited.video.interlaced_frame
                assert _planes(edited.video)[0][16, 16, 0] > 230
    assert len(decoded_before_edit) == len(clean) == 24
    for got, want in zip(decoded_before_edit, clean):
        for got_plane, want_plane in zip(got, want):
            np.testing.assert_array_equal(got_plane, want_plane)


def test_a_face_pasted_at_the_left_edge_of_a_ten_bit_frame_keeps_every_row() -> None:
    """A face (a real photo) pasted where it touches a 10-bit frame's left edge: each pixel's
    luma depends on that pixel alone, so pasting the face and the mask upside down gives the
    same luma upside down. FFmpeg's sliced RGB -> 10-bit YUV conversion, which vidface does not
    use, wrote mid-grey into the first 8 samples of each slice's first row: there, at other
    rows of the face each way up."""
    face = data.astronaut()[20:260, 140:340]
    size = (320, 256)  # rows, columns
    for top in range(8, 80, 12):  # faces of other heights: slices start at other rows
        height = 240 - top // 2 * 2
        rgb, mask = np.zeros((*size, 3), np.uint8), np.zeros(size, np.float32)
        rgb[top:top + height, :200], mask[top:top + height, :200] = face[:height], 1
        grey = av.VideoFrame.from_ndarray(np.full((*size, 3), 100, np.uint8), format="rgb24")
        lumas = []
        for turn in (1, -1):
            frame = _frame(reformatted(grey, format="yuv420p10le"))
            edited = frame.with_rgb(np.ascontiguousarray(rgb[::turn]), np.ascontiguousarray(mask[::turn]))
            lumas.append(_planes(edited.video)[0][::turn])
        np.testing.assert_array_equal(lumas[0], lumas[1], err_msg=f"face from row {top}")


def test_frames_converted_and_kept_hold_no_threads(tmp_path) -> None:
    """Converting frames to RGB starts no thread per frame (PyAV's own `reformat` starts a
    scaler thread per core for each frame, alive while the frame is), and gives what PyAV's
    conversion gives."""
    path = write_video(tmp_path / "in.mp4", frames=40, size=(320, 240))
    frames = list(decode_frames(path))
    threads = len(os.listdir("/proc/self/task"))
    pictures = [frame.to_rgb() for frame in frames]
    assert len(os.listdir("/proc/self/task")) <= threads + 1  # at most the first call's own scaler
    for frame, rgb in zip(frames, pictures):
        np.testing.assert_array_equal(rgb, frame.video.to_ndarray(format="rgb24"))
