"""`vidface compare IN OUT CMP`: the layouts as pure functions, and the command on real files
(IN and OUT with the same timing and different pictures, encoded and decoded for real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media import moving_pattern, read_video, write_video
from vidface.compare import compose, draw_labels, line_width, side_by_side, split, wipe_divide

WIDTH, HEIGHT, FRAMES, FPS = 96, 64, 24, 24
SAME = 6  # mean difference (levels) of a picture and its x264 round trip at crf 18, with margin
DIFFERENT = 40  # IN's pictures and OUT's (inverted) differ by far more


def inverted(width: int, height: int):
    pattern = moving_pattern(width, height)
    return lambda index: 255 - pattern(index)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """IN in Matroska (millisecond timestamps) and OUT in MP4 (1/24 s), with audio: the same
    frames' times in other time bases, as from another tool."""
    folder = tmp_path_factory.mktemp("pair")
    before = write_video(folder / "in.mkv", frames=FRAMES, size=(WIDTH, HEIGHT), fps=FPS, audio="aac")
    after = write_video(folder / "out.mp4", frames=FRAMES, size=(WIDTH, HEIGHT), fps=FPS, audio="aac",
                        images=inverted(WIDTH, HEIGHT))
    return before, after


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def line_columns(picture: np.ndarray) -> np.ndarray:
    """Columns white from top to bottom: the divide's line (the test pictures have none)."""
    return np.flatnonzero(picture.mean(axis=2).min(axis=0) > 190)


def test_layouts_place_each_picture() -> None:
    before = np.zeros((8, 10, 3), np.uint8)
    after = np.full((8, 10, 3), 100, np.uint8)
    side = side_by_side(before, after)
    assert side.shape == (8, 20, 3) and (side[:, :10] == 0).all() and (side[:, 10:] == 100).all()
    assert (compose(before, after, "side", 3.0) == side).all()
    cut = split(before, after, 4)
    assert cut.shape == before.shape and line_width(8) == 1
    assert (cut[:, :4] == 0).all() and (cut[:, 4] == 255).all() and (cut[:, 5:] == 100).all()
    assert (compose(before, after, "split", 3.0) == split(before, after, 5)).all()
    for divide in (0, 10):  # at an edge the line stays inside the picture
        assert len(line_columns(split(before, after, divide))) == 1
    with pytest.raises(ValueError, match="differ in size"):
        compose(before, after[:, :9], "side", 0.0)
    with pytest.raises(ValueError, match="unknown layout"):
        compose(before, after, "top", 0.0)


def test_wipe_sweeps_smoothly_across_and_back() -> None:
    assert [wipe_divide(t, 100) for t in (0, 2, 4, 6, 8)] == [50, 100, 50, 0, 50]
    path = [wipe_divide(t / 24, 100) for t in range(24 * 8)]
    assert min(path) == 0 and max(path) == 100
    assert max(abs(b - a) for a, b in zip(path, path[1:])) <= 2  # no jumps at 24 fps


@pytest.mark.parametrize("height", [64, 1080])
def test_labels_are_in_the_top_corners_and_scale_with_the_picture(height: int) -> None:
    width = height * 16 // 9
    picture = np.full((height, width, 3), 128, np.uint8)
    changed = (draw_labels(picture) != picture).any(axis=2)
    rows, columns = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    text_height = rows[-1] - rows[0] + 1
    assert rows[-1] < height / 4 and 8 <= text_height < height / 4
    if height == 1080:
        assert text_height > 30
    left, right = changed[:, : width // 2].any(), changed[:, width // 2:].any()
    assert left and right and not changed[:, width // 2 - 2: width // 2 + 2].any()
    assert columns[0] < width / 10 and columns[-1] > width * 9 / 10


def test_side_by_side_keeps_outs_timing_and_audio(cli, tmp_path: Path, pair) -> None:
    before, after = pair
    code, out, err = cli("compare", before, after, tmp_path / "cmp.mp4", "--no-progress")
    assert code == 0, err
    assert f"{FRAMES} frames" in out
    cmp = read_video(tmp_path / "cmp.mp4", images=True)
    ins, outs = read_video(before, images=True), read_video(after, images=True)
    assert len(cmp.frame_pts) == FRAMES and cmp.frame_pts == outs.frame_pts
    assert cmp.stream_types == ["video", "audio"] and cmp.packets[1] == outs.packets[1]
    assert cmp.size == (2 * WIDTH, HEIGHT) and cmp.rotation == 0
    for picture, left, right in zip(cmp.images, ins.images, outs.images):
        assert difference(picture[:, :WIDTH], left) < SAME and difference(picture[:, WIDTH:], right) < SAME
        assert difference(picture[:, :WIDTH], right) > DIFFERENT


@pytest.mark.parametrize("layout", ["split", "wipe"])
def test_split_and_wipe_show_in_left_of_the_line_and_out_right(cli, tmp_path: Path, pair, layout: str) -> None:
    before, after = pair
    code, _, err = cli("compare", before, after, tmp_path / "cmp.mp4", "--layout", layout, "--no-progress")
    assert code == 0, err
    cmp = read_video(tmp_path / "cmp.mp4", images=True)
    ins, outs = read_video(before, images=True), read_video(after, images=True)
    assert cmp.size == (WIDTH, HEIGHT) and cmp.frame_pts == outs.frame_pts
    divides = []
    for picture, left, right in zip(cmp.images, ins.images, outs.images):
        (divide,) = line_columns(picture)
        divides.append(int(divide))
        assert difference(picture[:, :divide - 2], left[:, :divide - 2]) < SAME
        assert difference(picture[:, divide + 2:], right[:, divide + 2:]) < SAME
        assert difference(picture[:, :divide - 2], right[:, :divide - 2]) > DIFFERENT
    if layout == "split":
        assert set(divides) == {WIDTH // 2}
    else:
        assert divides == [wipe_divide(float(t), WIDTH) for t in outs.frame_pts]
        assert divides[0] == WIDTH // 2 and divides[-1] > divides[0] + WIDTH // 4


def test_labels_reach_the_video(cli, tmp_path: Path, pair) -> None:
    before, after = pair
    code, _, err = cli("compare", before, after, tmp_path / "cmp.mp4", "--label", "--no-progress")
    assert code == 0, err
    picture = read_video(tmp_path / "cmp.mp4", images=True).images[0]
    plain = compose(read_video(before, images=True).images[0], read_video(after, images=True).images[0], "side", 0.0)
    labelled = draw_labels(plain)
    text = (labelled != plain).any(axis=2)
    assert difference(picture, labelled) < SAME
    # thin text loses more to x264 than flat areas, but is far from the unlabelled picture
    assert difference(picture[text], labelled[text]) < difference(picture[text], plain[text]) / 3


def test_a_preview_compares_with_the_same_range_of_in(cli, tmp_path: Path, pair) -> None:
    before, _ = pair
    range_flags = ("--start", "0.25", "--duration", "0.5")  # frames 6-17
    code, _, err = cli("restore", before, tmp_path / "preview.mkv", "--model", "none", "--no-progress", *range_flags)
    assert code == 0, err
    code, _, err = cli("compare", before, tmp_path / "preview.mkv", tmp_path / "cmp.mp4", "--no-progress", *range_flags)
    assert code == 0, err
    cmp = read_video(tmp_path / "cmp.mp4", images=True)
    ins = read_video(before, images=True).images[6:18]
    assert len(cmp.images) == len(ins) == 12
    for picture, left in zip(cmp.images, ins):
        assert difference(picture[:, :WIDTH], left) < SAME
    assert difference(cmp.images[0][:, :WIDTH], read_video(before, images=True).images[0]) > SAME

    code, _, err = cli("compare", before, tmp_path / "preview.mkv", tmp_path / "whole.mp4")
    assert code == 1 and err.count("\n") == 1 and err.startswith("vidface: error: ")
    assert "24 frames" in err and "12" in err and "--start" in err
    assert not (tmp_path / "whole.mp4").exists()


def test_pictures_are_compared_upright(cli, tmp_path: Path, pair) -> None:
    before, after = pair
    upright = moving_pattern(WIDTH, HEIGHT)
    turned = write_video(tmp_path / "turned.mp4", frames=FRAMES, size=(HEIGHT, WIDTH), rotation=90,
                         images=lambda index: np.ascontiguousarray(np.rot90(upright(index))))
    code, _, err = cli("compare", turned, after, tmp_path / "cmp.mp4", "--no-progress")
    assert code == 0, err
    cmp = read_video(tmp_path / "cmp.mp4", images=True)
    assert cmp.size == (2 * WIDTH, HEIGHT) and cmp.rotation == 0
    for picture, left in zip(cmp.images, read_video(before, images=True).images):
        assert difference(picture[:, :WIDTH], left) < SAME

    sideways = write_video(tmp_path / "sideways.mp4", frames=FRAMES, size=(WIDTH, HEIGHT), rotation=90)
    code, _, err = cli("compare", sideways, after, tmp_path / "bad.mp4")
    assert code == 1 and f"{HEIGHT}x{WIDTH} (stored {WIDTH}x{HEIGHT}, turned 90°)" in err
    assert not (tmp_path / "bad.mp4").exists()


@pytest.mark.parametrize("case, options, message", [
    ("fewer frames", dict(frames=FRAMES - 4), "20 frames"),
    ("other frame rate", dict(fps=25), "frame 1 of"),
    ("variable frame rate", dict(vfr=True), "the same timestamps"),
    ("other size", dict(size=(WIDTH, HEIGHT + 16)), f"{WIDTH}x{HEIGHT + 16}"),
])
def test_mismatched_pairs_are_refused_and_leave_no_cmp(cli, tmp_path: Path, pair, case: str, options: dict,
                                                       message: str) -> None:
    _, after = pair
    before = write_video(tmp_path / "other.mp4", **{"frames": FRAMES, "size": (WIDTH, HEIGHT), **options})
    code, _, err = cli("compare", before, after, tmp_path / "cmp.mp4", "--no-progress")
    assert code == 1 and err.count("\n") == 1 and err.startswith("vidface: error: "), err
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.mp4"]


def test_an_existing_cmp_is_kept_without_y(cli, tmp_path: Path, pair) -> None:
    before, after = pair
    (tmp_path / "cmp.mp4").write_bytes(b"keep")
    code, _, err = cli("compare", before, after, tmp_path / "cmp.mp4")
    assert code == 1 and err.count("\n") == 1 and "-y" in err
    assert (tmp_path / "cmp.mp4").read_bytes() == b"keep"
    code, _, err = cli("compare", before, after, before, "-y")
    assert code == 1 and "input" in err
    code, _, err = cli("compare", before, after, tmp_path / "cmp.mp4", "-y", "--no-progress")
    assert code == 0, err
    assert read_video(tmp_path / "cmp.mp4").size == (2 * WIDTH, HEIGHT)
