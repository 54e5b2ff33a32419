"""`vidface faces IN_DIR OUT_DIR` end to end on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_model import TINY_FACE, tiny_osdface, tiny_osdface_model  # noqa: F401 (pytest fixtures)
from vidface.models.face_images import read_face


def _write_faces(folder, sizes: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, size in sizes.items():
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BILINEAR).save(folder / name)


def _weights(tiny_osdface) -> list:
    return ["--weights", tiny_osdface.release, "--base", tiny_osdface.base, "--device", "cpu", "--dtype", "fp32"]


def test_faces_end_to_end(cli, tmp_path, tiny_osdface, tiny_osdface_model):
    _write_faces(tmp_path / "in", {"anna.png": TINY_FACE, "bert.jpg": TINY_FACE, "carl.png": 96})
    out = tmp_path / "out"
    code, stdout, err = cli("faces", tmp_path / "in", out, *_weights(tiny_osdface), "--batch-size", "2")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["anna.png", "bert.png", "carl.png"]
    assert "restored 3" in stdout
    written = np.asarray(Image.open(out / "carl.png"))
    assert written.shape == (TINY_FACE, TINY_FACE, 3)  # a 96 x 96 input is restored at the face size
    face = read_face(tmp_path / "in" / "carl.png", TINY_FACE)
    expected = (tiny_osdface_model.restore(face[None])[0] * 255).round().to(torch.uint8).permute(1, 2, 0)
    assert np.abs(written.astype(int) - expected.numpy().astype(int)).max() <= 1  # rounding, batch of 2 vs 1
    assert np.asarray(Image.open(out / "bert.png")).shape == (TINY_FACE, TINY_FACE, 3)

    before = (out / "anna.png").stat().st_mtime_ns
    code, stdout, err = cli("faces", tmp_path / "in", out, *_weights(tiny_osdface))
    assert code == 0 and "nothing to do" in stdout  # existing outputs are skipped
    assert (out / "anna.png").stat().st_mtime_ns == before


@pytest.mark.parametrize("bad, needle", [
    ("notes.png", "is not an image"),
    ("wide.png", "faces must be square"),
])
def test_faces_refuses_bad_inputs_before_writing(cli, tmp_path, tiny_osdface, bad, needle):
    _write_faces(tmp_path / "in", {"ok.png": TINY_FACE})
    if bad == "notes.png":
        (tmp_path / "in" / bad).write_text("not an image")
    else:
        Image.new("RGB", (96, 64)).save(tmp_path / "in" / bad)
    out = tmp_path / "out"
    code, _stdout, err = cli("faces", tmp_path / "in", out, *_weights(tiny_osdface))
    assert code == 1
    assert err.startswith("vidface: error: ") and needle in err and bad in err and err.count("\n") == 1
    assert not out.exists()


def test_faces_needs_a_folder(cli, tmp_path, tiny_osdface):
    code, _stdout, err = cli("faces", tmp_path / "missing", tmp_path / "out", *_weights(tiny_osdface))
    assert code == 1 and "not a folder" in err
