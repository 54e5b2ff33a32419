"""Helpers for the paste-mask tests and benchmark: a random-weight face parser in facexlib's
file layout, and the masks the restorer pastes with, recorded frame by frame."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch


def save_random_bisenet(path: Path, seed: int = 0) -> Path:
    """A BiSeNet (facexlib's architecture, 19 classes) with random weights, written as
    facexlib's parsing_bisenet.pth is: a plain state dict."""
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(BiSeNet(num_class=19).state_dict(), path)
    return path


@contextmanager
def recorded_paste_masks() -> Iterator[list[np.ndarray]]:
    """While the block runs, every frame mask that vidface.restore pastes faces with
    (H×W float32 in [0, 1], the mask `Frame.with_rgb` gets) is appended to the yielded list."""
    import vidface.restore

    masks: list[np.ndarray] = []
    paste = vidface.restore.paste_faces

    def recording(*args, **kwargs):
        rgb, mask = paste(*args, **kwargs)
        masks.append(mask)
        return rgb, mask

    vidface.restore.paste_faces = recording
    try:
        yield masks
    finally:
        vidface.restore.paste_faces = paste
