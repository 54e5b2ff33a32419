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
    facexlib's parsing_bisenet.pth is: a plain state dict.

    Straight from initialisation its logits barely differ between classes (a mask of ~0.68
    everywhere), so, to parse like a trained network does, with a mask that follows the
    picture: its batch-norm statistics are measured on the astronaut's face and noise, and
    its classifier is scaled until the logits spread over several units."""
    import skimage.data
    import torch.nn.functional as F
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(seed)
    network = BiSeNet(num_class=19)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batch
            module.reset_running_stats()
    face = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float()[None] / 255
    face = F.interpolate(face, size=(64, 64), mode="bilinear", antialias=True)
    batch = torch.cat([face, face.flip(-1), torch.rand(6, 3, 64, 64)])
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        network.train()((batch - mean) / std)
        network.conv_out.conv_out.weight.mul_(10)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


@contextmanager
def recorded_paste_masks() -> Iterator[list[np.ndarray]]:
    """While the block runs, every frame mask that vidface.model_stage pastes faces with
    (H×W float32 in [0, 1], the mask `Frame.with_rgb` gets) is appended to the yielded list."""
    import vidface.model_stage

    masks: list[np.ndarray] = []
    paste = vidface.model_stage.paste_faces

    def recording(frame_rgb, *args, **kwargs):
        pasted = paste(frame_rgb, *args, **kwargs)
        whole = np.zeros(frame_rgb.shape[:2], np.float32)
        (x, y), (height, width) = pasted.origin, pasted.mask.shape
        whole[y:y + height, x:x + width] = pasted.mask
        masks.append(whole)
        return pasted

    vidface.model_stage.paste_faces = recording
    try:
        yield masks
    finally:
        vidface.model_stage.paste_faces = paste
