"""RetinaFace through its real loading path, offline: random weights saved in facexlib's file
format (a torch state dict with DataParallel's `module.` prefixes) under the real file name."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from vidface.errors import WeightsError
from vidface.faces import retinaface
from vidface.faces.detect import Face, create_detector


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VIDFACE_OFFLINE", raising=False)
    return tmp_path / "vidface" / "facexlib"


def save_random_mobilenet(path: Path) -> None:
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    model = RetinaFace(network_name="mobile0.25", device=torch.device("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)


def test_loads_cached_weights_and_detects(cache: Path) -> None:
    save_random_mobilenet(cache / "detection_mobilenet0.25_Final.pth")
    detector = create_detector("retinaface-mobilenet0.25", threshold=0.97, refine=False)
    faces = detector.detect(np.full((64, 96, 3), 120, np.uint8))
    assert all(isinstance(f, Face) and f.box.shape == (4,) and f.landmarks.shape == (5, 2) for f in faces)
    assert all(f.score > 0.97 for f in faces)


def test_detector_weights_path_overrides_the_cache(cache: Path, tmp_path: Path) -> None:
    own = tmp_path / "mine.pth"
    save_random_mobilenet(own)
    assert retinaface.resolve_weights("retinaface-mobilenet0.25", own) == own
    create_detector("retinaface-mobilenet0.25", weights=own, refine=False)
    with pytest.raises(WeightsError, match="does not exist"):
        retinaface.resolve_weights("retinaface-mobilenet0.25", tmp_path / "absent.pth")


def test_wrong_network_weights_are_a_clear_error(cache: Path) -> None:
    save_random_mobilenet(cache / "detection_Resnet50_Final.pth")
    with pytest.raises(WeightsError, match="not a RetinaFace resnet50 checkpoint"):
        create_detector("retinaface-resnet50")
    (cache / "detection_mobilenet0.25_Final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        create_detector("retinaface-mobilenet0.25")


def test_offline_without_weights_says_what_to_do(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as error:
        create_detector("retinaface-resnet50")
    message = str(error.value)
    assert "\n" not in message and "detection_Resnet50_Final.pth" in message and "--detector-weights" in message
    assert not cache.exists() or not any(cache.iterdir())


def test_download_keeps_only_a_file_with_the_right_checksum(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facexlib.detection.retinaface import RetinaFace

    from weights_server import WeightsServer

    payload = io.BytesIO()
    torch.save(RetinaFace(network_name="mobile0.25", device=torch.device("cpu")).state_dict(), payload)
    data = payload.getvalue()
    server = WeightsServer(files={"/releases/detection_mobilenet0.25_Final.pth": data})
    url = f"{server.start()}/releases/detection_mobilenet0.25_Final.pth"
    try:
        wrong = retinaface.WeightsFile("mobile0.25", "detection_mobilenet0.25_Final.pth", url, "0" * 64, len(data))
        monkeypatch.setitem(retinaface.WEIGHTS, "retinaface-mobilenet0.25", wrong)
        with pytest.raises(WeightsError, match="SHA-256"):
            retinaface.resolve_weights("retinaface-mobilenet0.25")
        assert not any(cache.iterdir())  # no partial or unverified file left behind
        good = retinaface.WeightsFile("mobile0.25", "detection_mobilenet0.25_Final.pth", url,
                                      hashlib.sha256(data).hexdigest(), len(data))
        monkeypatch.setitem(retinaface.WEIGHTS, "retinaface-mobilenet0.25", good)
        path = retinaface.resolve_weights("retinaface-mobilenet0.25")
    finally:
        server.stop()
    assert path == cache / good.filename and path.read_bytes() == data
    create_detector("retinaface-mobilenet0.25", refine=False)
