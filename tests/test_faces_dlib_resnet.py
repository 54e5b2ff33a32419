"""dlib's face descriptor network on onnxruntime (vidface.faces.dlib_resnet), read from dlib's own
model file: the descriptors dlib computes, its graph built once and kept, and a clear error for a
file that is not that network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from face_clips import crossing_faces_clip, degrade, hopper_sprite, moving_face_clip
from vidface.faces.detect import create_detector
from vidface.faces import dlib_resnet
from vidface.faces.identity import DESCRIPTOR_FILE, FaceDescriber, _dlib_models, _model_file


def _chips() -> list[np.ndarray]:
    """dlib's 150×150 chips of real faces: the astronaut (moved, scaled, degraded) and Grace Hopper."""
    describer = FaceDescriber()
    detector = create_detector()
    rng = np.random.default_rng(0)
    pictures = [moving_face_clip(40, seed=0).frames[5], moving_face_clip(40, seed=3).frames[30],
                degrade(moving_face_clip(40, seed=1, scale=0.9).frames[12], rng, blur=2.0, noise=8.0, jpeg=30),
                crossing_faces_clip(40, people=(hopper_sprite(), hopper_sprite())).frames[0]]
    return [describer.chip(rgb, detector.detect(rgb)[0].box) for rgb in pictures]


def test_the_network_gives_dlibs_descriptors() -> None:
    dlib, _ = _dlib_models()
    path = _model_file(DESCRIPTOR_FILE)
    reference = dlib.face_recognition_model_v1(str(path))
    chips = _chips()
    expected = np.stack([np.asarray(reference.compute_face_descriptor(chip), np.float32) for chip in chips])
    found = dlib_resnet.DescriptorNetwork(path)(np.stack(chips))  # all in one batch
    assert found.shape == (len(chips), 128) and found.dtype == np.float32
    assert np.abs(found - expected).max() < 1e-4
    # Different faces give clearly different descriptors: the agreement is not of near-constant outputs.
    assert np.linalg.norm(expected[0] - expected[3]) > 0.5


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:len(data) // 2], "before the network does|past the file's end"),
    (lambda data: data[:data.find(b"affine_") + 9], "ends inside a layer record"),  # in the first affine's header
    # The first convolution's stride (2, packed as 01 02 after its 32 filters of 7×7) set to 1.
    (lambda data: data.replace(b"\x01 \x01\x07\x01\x07\x01\x02\x01\x02", b"\x01 \x01\x07\x01\x07\x01\x01\x01\x01", 1),
     r"convolution 32×7×7 /1 .* where the network has 32×7×7 /2"),
    (lambda data: data.replace(b"affine_", b"affinx_", 1), "a max_pool_2 record where the network has affine_"),
])
def test_a_file_that_is_not_the_network_is_refused(damage, message: str, tmp_path: Path) -> None:
    data = _model_file(DESCRIPTOR_FILE).read_bytes()
    damaged = tmp_path / DESCRIPTOR_FILE
    damaged.write_bytes(damage(data))
    assert damaged.read_bytes() != data
    with pytest.raises(ValueError, match=message):
        dlib_resnet.DescriptorNetwork(damaged)


def test_the_graph_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph built from dlib's file is kept in the cache: a later network reads it, without
    building it (nor importing onnx) again, and describes the same."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _model_file(DESCRIPTOR_FILE)
    chips = np.random.default_rng(1).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    first = dlib_resnet.DescriptorNetwork(path)(chips)
    assert len(list((tmp_path / "cache" / "vidface" / "face-descriptor").glob("*.onnx"))) == 1
    monkeypatch.setattr(dlib_resnet, "descriptor_graph", lambda _: pytest.fail("the graph was built again"))
    assert np.array_equal(dlib_resnet.DescriptorNetwork(path)(chips), first)
