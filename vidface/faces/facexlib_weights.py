"""facexlib's released weight files (RetinaFace detectors, BiSeNet face parser): where they live,
their download, and their loading into facexlib's network classes.

A file is looked up in this order: a path the user gives (``--detector-weights``,
``--parsing-weights``); the vidface cache folder (``$XDG_CACHE_HOME/vidface/facexlib``, default
``~/.cache/vidface/facexlib``); a download from facexlib's GitHub release into that folder,
kept only if its SHA-256 matches (skipped when HF_HUB_OFFLINE or VIDFACE_OFFLINE is set; see
:mod:`vidface.downloads`).
facexlib itself never downloads anything or writes into site-packages. Every failure is one
:class:`~vidface.errors.WeightsError` line naming the file and the remedy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidface.downloads import Remote, cache_root, check_free_space, fetch, offline, session
from vidface.errors import WeightsError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    """One released file. network: facexlib's name of the architecture it fits."""

    network: str
    filename: str
    url: str
    sha256: str
    size: int


def cache_dir() -> Path:
    """Where downloaded facexlib weights live: $XDG_CACHE_HOME/vidface/facexlib."""
    return cache_root() / "facexlib"


def resolve_file(spec: WeightsFile, given: Path | None, *, flag: str, instead: str) -> Path:
    """The file of `spec`: `given` if not None, else the cached file, downloaded (and
    checksum-verified) first where the network allows.

    flag: the option that passes a file (named in errors, e.g. "--detector-weights").
    instead: the choice that needs no download, for the remedy (e.g. "--detector centerface").
    """
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise WeightsError(f"{flag} {path} does not exist; pass the path of {spec.filename}")
        return path
    path = cache_dir() / spec.filename
    if path.is_file():
        return path
    remedy = f"download {spec.url} to {path} (or pass {flag} PATH), or use {instead}, which needs no download"
    if offline():
        raise WeightsError(f"{spec.filename} is not in {path.parent} and downloads are off (offline); {remedy}")
    log.warning("downloading %s (%.1f MB) to %s", spec.url, spec.size / 1e6, path.parent)
    check_free_space(path.parent, spec.size)
    try:
        fetch(session(), Remote(spec.url, path, spec.filename, "facexlib's GitHub release", spec.size, spec.sha256))
    except WeightsError as error:
        raise WeightsError(f"{error}; {remedy}") from None
    return path


def load_weights(model: torch.nn.Module, path: Path, spec: WeightsFile, *, flag: str, kind: str) -> None:
    """Load the checkpoint at `path` into `model` strictly (keys and shapes), with
    DataParallel's ``module.`` prefixes removed. kind: what the file should be, in errors
    ("RetinaFace resnet50")."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises many kinds
        raise WeightsError(f"cannot read {path} as a torch checkpoint ({type(error).__name__}); "
                           f"delete it so it is downloaded again, or pass another {flag}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds no state dict; pass the file {spec.filename}")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(f"{path} is not a {kind} checkpoint (its keys do not match); "
                           f"pass the file {spec.filename}") from None
