"""facexlib's RetinaFace (ResNet-50 or MobileNet-0.25) as the accurate detector.

Weights are looked up in this order: `--detector-weights PATH`; the vidface cache folder
(`$XDG_CACHE_HOME/vidface/facexlib`, default `~/.cache/vidface/facexlib`); a download from
facexlib's GitHub release into that folder, checked against its SHA-256 (skipped when
HF_HUB_OFFLINE or VIDFACE_OFFLINE is set). The network is built here from facexlib's classes,
so facexlib itself never downloads anything or writes into site-packages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidface.errors import WeightsError
from vidface.faces.detect import Face
from vidface.files import atomic_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    network: str  # facexlib's network_name
    filename: str
    url: str
    sha256: str
    size: int


_RELEASE = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
WEIGHTS = {
    "retinaface-resnet50": WeightsFile(
        "resnet50", "detection_Resnet50_Final.pth", _RELEASE + "detection_Resnet50_Final.pth",
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d", 109_497_761),
    "retinaface-mobilenet0.25": WeightsFile(
        "mobile0.25", "detection_mobilenet0.25_Final.pth", _RELEASE + "detection_mobilenet0.25_Final.pth",
        "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220", 1_789_735),
}
_OFFLINE_ENV = ("VIDFACE_OFFLINE", "HF_HUB_OFFLINE")


def cache_dir() -> Path:
    """Where downloaded detector weights live: $XDG_CACHE_HOME/vidface/facexlib."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vidface" / "facexlib"


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no") for name in _OFFLINE_ENV)


def resolve_weights(name: str, weights: Path | None = None) -> Path:
    """The weights file for detector `name`: `weights` if given, else the cached file,
    downloaded (and checksum-verified) first where the network allows."""
    spec = WEIGHTS[name]
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"--detector-weights {path} does not exist; pass the path of {spec.filename}")
        return path
    path = cache_dir() / spec.filename
    if path.is_file():
        return path
    remedy = (f"download {spec.url} to {path} (or pass --detector-weights PATH), "
              f"or use --detector centerface, which needs no download")
    if _offline():
        raise WeightsError(f"{name} weights are not in {path.parent} and downloads are off (offline); {remedy}")
    download(spec, path, remedy)
    return path


def download(spec: WeightsFile, path: Path, remedy: str) -> None:
    """Fetch spec.url to `path` through a temporary file; keep it only if its SHA-256 matches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    log.warning("downloading %s (%.1f MB) to %s", spec.url, spec.size / 1e6, path.parent)
    try:
        with atomic_output(path) as temporary, urllib.request.urlopen(spec.url, timeout=30) as response, \
                open(temporary, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != spec.sha256:
                raise WeightsError(f"{spec.url} downloaded with SHA-256 {digest.hexdigest()}, expected "
                                   f"{spec.sha256}; nothing was kept; {remedy}")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsError(f"cannot download {spec.filename} ({reason}); {remedy}") from None


class RetinaFaceDetector:
    """facexlib RetinaFace on torch. device: a torch device string ("cpu", "cuda", "cuda:1")."""

    def __init__(self, *, name: str = "retinaface-resnet50", threshold: float = 0.9,
                 weights: Path | None = None, device: str = "cpu") -> None:
        import torch
        from facexlib.detection.retinaface import RetinaFace

        spec = WEIGHTS[name]
        path = resolve_weights(name, weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: torch raises many kinds
            raise WeightsError(f"cannot read {path} as a torch checkpoint ({type(error).__name__}); "
                               f"delete it so it is downloaded again, or pass another --detector-weights") from None
        state = {key.removeprefix("module."): value for key, value in state.items()}
        self.device = torch.device(device)
        with warnings.catch_warnings():  # facexlib asks torchvision for resnet50(pretrained=False)
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = RetinaFace(network_name=spec.network, half=False, phase="test", device=self.device)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError:
            raise WeightsError(f"{path} is not a RetinaFace {spec.network} checkpoint (its keys do not match); "
                               f"pass the file {spec.filename}") from None
        self.model = model.to(self.device).eval()
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in `rgb` (H×W×3 uint8 RGB), best score first, in its pixel coordinates."""
        import torch

        bgr = np.ascontiguousarray(rgb[..., ::-1])  # facexlib subtracts BGR means
        with torch.inference_mode():
            found = self.model.detect_faces(bgr, conf_threshold=self.threshold, use_origin_size=True)
        return [Face(row[:4].astype(np.float64), row[5:15].reshape(5, 2).astype(np.float64), float(row[4]))
                for row in np.asarray(found)]
