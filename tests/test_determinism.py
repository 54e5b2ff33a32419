"""Same input, same settings, same bytes: outputs do not depend on what memory held before.

Every byte an encoder is handed must be defined: line padding is the part nobody has to
initialise (`vidface.io.pixels.defined_padding`). And an encoder must not read memory of its
own that it never wrote: x264's AVX-512 code does, so on CPUs with AVX-512 it made outputs
differ from run to run (`vidface.io.encoder_setup.repeatable_options`). The allocator test runs the
whole set of cases in two child processes whose fresh memory holds different bytes
(`MALLOC_PERTURB_`), so a machine whose memory happens to be zeroed cannot hide such a read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from media import read_video, write_video
from tiny_model import tiny_osdface  # noqa: F401 (fixture)
from vidface.io import encoder_setup
from vidface.io.encoder_setup import repeatable_options
from vidface.io.pixels import defined_padding

TESTS = Path(__file__).resolve().parent


def _padding(video: av.VideoFrame) -> list[np.ndarray]:
    """Each plane's line padding as bytes (8-bit formats)."""
    return [np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, plane.width:]
            for plane in video.planes]


def _samples(video: av.VideoFrame) -> list[np.ndarray]:
    return [np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width].copy()
            for plane in video.planes]


def test_line_padding_is_zeroed_and_samples_kept() -> None:
    video = av.VideoFrame(98, 50, "yuv420p")
    rng = np.random.default_rng(0)
    for plane in video.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        rows[:] = rng.integers(1, 256, rows.shape, dtype=np.uint8)
    assert all(area.size and area.all() for area in _padding(video))
    before = _samples(video)
    out = defined_padding(video)
    assert all(area.size and not area.any() for area in _padding(out))
    assert all((a == b).all() for a, b in zip(before, _samples(out)))


def test_padding_of_16_bit_samples_is_found_by_bytes() -> None:
    video = av.VideoFrame(99, 10, "yuv444p10le")
    for plane in video.planes:
        np.frombuffer(plane, np.uint8)[:] = 0xAB
    out = defined_padding(video)
    for plane in out.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        assert (rows[:, : 2 * plane.width] == 0xAB).all() and not rows[:, 2 * plane.width:].any()


@pytest.mark.parametrize("pix_fmt, used", [  # bytes of a row of 65 pixels
    ("bgr0", 4 * 65), ("rgb0", 4 * 65), ("uyvy422", 4 * 33), ("yuyv422", 4 * 33), ("rgb565le", 2 * 65), ("monob", 9)])
def test_padding_of_packed_pixels_is_found_by_their_bytes(pix_fmt: str, used: int) -> None:
    """Packed pictures whose pixels are not one byte a sample (a padding byte, pairs of pixels
    sharing chroma, bit fields): every byte of a row's pixels is kept, the rest zeroed. RGB with
    a padding byte is FFV1's RGB, whose right quarter was once taken for padding and zeroed."""
    video = av.VideoFrame(65, 6, pix_fmt)
    rows = np.frombuffer(video.planes[0], np.uint8).reshape(video.planes[0].height, video.planes[0].line_size)
    rows[:] = 0xAB
    assert used < rows.shape[1]
    out = defined_padding(video)
    rows = np.frombuffer(out.planes[0], np.uint8).reshape(out.planes[0].height, out.planes[0].line_size)
    assert (rows[:, :used] == 0xAB).all() and not rows[:, used:].any()


def test_rgb_into_ffv1_keeps_every_pixel(tmp_path: Path, cli) -> None:
    """FFV1 codes 8-bit RGB with a padding byte a pixel (bgr0): every pixel of OUT is IN's."""
    source = write_video(tmp_path / "in.mkv", size=(100, 48), frames=3, codec="ffv1", pix_fmt="bgr0")
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "out.mkv", "--codec", "ffv1", "--no-progress")
    assert code == 0, err
    before, after = read_video(source, images=True), read_video(tmp_path / "out.mkv", images=True)
    assert after.pix_fmt == "bgr0" and len(after.images) == 3
    for old, new in zip(before.images, after.images):
        np.testing.assert_array_equal(new, old)


def test_a_frame_the_decoder_still_predicts_from_is_copied_not_written(tmp_path: Path) -> None:
    """An odd width's cropped column sits in the padding and holds samples later frames are
    predicted from: zeroing it in the decoder's own buffer would change the frames after it."""
    source = write_video(tmp_path / "odd.mkv", size=(79, 59), pix_fmt="yuv444p", frames=12, bframes=2)

    def decoded(prepare) -> tuple[list[list[np.ndarray]], bool]:
        frames, padded = [], False
        with av.open(str(source)) as container:
            for video in container.decode(video=0):
                frames.append(_samples(video))
                padded |= any(area.any() for area in _padding(video))
                prepared = prepare(video)
                assert all((a == b).all() for a, b in zip(frames[-1], _samples(prepared)))
                if prepare is defined_padding:
                    assert not any(area.any() for area in _padding(prepared))
        return frames, padded

    untouched, padded = decoded(lambda video: video)
    assert padded
    guarded, _ = decoded(defined_padding)
    assert all((a == b).all() for x, y in zip(untouched, guarded) for a, b in zip(x, y))


def test_the_writer_hands_the_encoder_zeroed_padding(tmp_path: Path) -> None:
    from vidface.io.options import EncodeOptions
    from vidface.pipeline import plan_transcode, transcode

    source = write_video(tmp_path / "in.mp4", size=(98, 64), frames=6)
    seen = []

    def junk_padding(frames):
        for frame in frames:
            frame.video.make_writable()
            for area in _padding(frame.video):
                area[:] = 0x5A
            seen.append(frame)
            yield frame

    transcode(plan_transcode(source, tmp_path / "out.mp4", encode=EncodeOptions(codec="libx264")), junk_padding)
    assert len(seen) == 6
    assert all(not any(area.any() for area in _padding(frame.video)) for frame in seen)


def test_outputs_do_not_depend_on_the_allocator(tmp_path: Path, tiny_osdface) -> None:
    runs = []
    for perturb in ("77", "200"):
        work = tmp_path / perturb
        work.mkdir()
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        child = subprocess.run([sys.executable, str(TESTS / "same_bytes.py"), str(work), str(tiny_osdface.release),
                                str(tiny_osdface.base)], env=env, capture_output=True, text=True, timeout=600)
        assert child.returncode == 0, child.stderr[-3000:]
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert len(first) == 8
    assert first == second
    for codec in ("x264", "ffv1"):
        assert first[f"resumed {codec}"] == first[f"restore {codec}"]
        assert first[f"cli none {codec}"] == first[f"none {codec}"]
        assert first[f"restore {codec}"] != first[f"none {codec}"]


def test_x264_is_limited_to_avx2_where_avx512_runs(monkeypatch) -> None:
    """The limit is added where the CPU runs AVX-512, before the user's own x264-params (an
    `asm=` of theirs, later, wins), for x264 alone."""
    monkeypatch.setattr(encoder_setup, "cpu_has_avx512", lambda: True)
    assert repeatable_options("libx264", {"crf": "18"}) == {"crf": "18", "x264-params": "asm=AVX2"}
    assert repeatable_options("libx264", {"x264-params": "asm=0:bframes=2"}) == {
        "x264-params": "asm=AVX2:asm=0:bframes=2"}
    assert repeatable_options("libx265", {"crf": "18"}) == {"crf": "18"}
    monkeypatch.setattr(encoder_setup, "cpu_has_avx512", lambda: False)
    assert repeatable_options("libx264", {"crf": "18"}) == {"crf": "18"}

