"""facexlib's RetinaFace (ResNet-50 or MobileNet-0.25) as the accurate detector.

Weights: `--detector-weights PATH`, else the vidface cache folder, else a SHA-256-checked
download into it (see :mod:`vidface.faces.facexlib_weights`, shared with the face parser). The
network is built here from facexlib's classes, so facexlib itself never downloads anything or
writes into site-packages.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from vidface.devices import stage_stream
from vidface.faces.detect import Face
from vidface.faces.facexlib_weights import WeightsFile, load_weights, resolve_file

_RELEASE = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
WEIGHTS = {
    "retinaface-resnet50": WeightsFile(
        "resnet50", "detection_Resnet50_Final.pth", _RELEASE + "detection_Resnet50_Final.pth",
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d", 109_497_761),
    "retinaface-mobilenet0.25": WeightsFile(
        "mobile0.25", "detection_mobilenet0.25_Final.pth", _RELEASE + "detection_mobilenet0.25_Final.pth",
        "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220", 1_789_735),
}
_FLAG = "--detector-weights"


def resolve_weights(name: str, weights: Path | None = None) -> Path:
    """The weights file for detector `name`: `weights` if given, else the cached file,
    downloaded (and checksum-verified) first where the network allows."""
    return resolve_file(WEIGHTS[name], weights, flag=_FLAG, instead="--detector centerface")


class RetinaFaceDetector:
    """facexlib RetinaFace on torch. device: a torch device string ("cpu", "cuda", "cuda:1")."""

    def __init__(self, *, name: str = "retinaface-resnet50", threshold: float = 0.9,
                 weights: Path | None = None, device: str = "cpu") -> None:
        import torch
        from facexlib.detection.retinaface import RetinaFace

        spec = WEIGHTS[name]
        path = resolve_weights(name, weights)
        self.device = torch.device(device)
        with warnings.catch_warnings():  # facexlib asks torchvision for resnet50(pretrained=False)
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = RetinaFace(network_name=spec.network, half=False, phase="test", device=self.device)
        load_weights(model, path, spec, flag=_FLAG, kind=f"RetinaFace {spec.network}")
        self.model = model.to(self.device).eval()
        self.stream = stage_stream(device)
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in `rgb` (H×W×3 uint8 RGB), best score first, in its pixel coordinates."""
        import torch

        bgr = np.ascontiguousarray(rgb[..., ::-1])  # facexlib subtracts BGR means
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            found = self.model.detect_faces(bgr, conf_threshold=self.threshold, use_origin_size=True)
        return [Face(row[:4].astype(np.float64), row[5:15].reshape(5, 2).astype(np.float64), float(row[4]))
                for row in np.asarray(found)]
