"""Face parsing for a content-dependent paste mask: facexlib's BiSeNet on the restored crops.

BiSeNet (zllrunning/face-parsing.PyTorch, released by facexlib as ``parsing_bisenet.pth``)
labels every pixel of a face crop with one of 19 CelebAMask-HQ classes; it was trained on
aligned 512×512 faces. The paste mask is the probability of the face classes (1-13: skin,
brows, eyes, glasses, ears, earrings, nose, mouth, lips); background, neck, necklace, clothes,
hair and hat keep the source frame. Differences from facexlib's
``FaceRestoreHelper.paste_faces_to_input_image(use_parse=True)``, which takes the arg-max label,
counts the necklace as face and blurs twice with σ = 11 px at 512:

* the mask is the summed softmax of the face classes rather than a hard arg-max, so it
  changes smoothly with the picture (and over time);
* only BiSeNet's main head is run: it predicts at 1/8 of the input's resolution, and the two
  auxiliary heads (which facexlib computes and upsamples too) serve only its training. The face
  probability is blurred at that resolution with one Gaussian of σ = :data:`BLUR` of the side
  (facexlib's two blurs: σ = 11·√2 ≈ 15.6 px of 512) and upsampled once, to the crop's size;
* the crop's edge is left to the paste stage, which multiplies every mask by its feathered
  square (:func:`vidface.faces.paste.crop_mask`) instead of zeroing a 10-pixel border.

Weights come from the same place as the RetinaFace detector's (:mod:`vidface.faces.facexlib_weights`):
``--parsing-weights PATH``, else ``$XDG_CACHE_HOME/vidface/facexlib/parsing_bisenet.pth``,
else a SHA-256-checked download into that folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from vidface.faces.facexlib_weights import WeightsFile, load_weights, resolve_file

if TYPE_CHECKING:
    import torch

    from vidface.faces.paste import PasteOptions

__all__ = ["BLUR", "FACE_CLASSES", "PARSE_STRIDE", "PARSING_WEIGHTS", "FaceParser", "parser_for"]

PARSING_WEIGHTS = WeightsFile(
    "bisenet", "parsing_bisenet.pth",
    "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
    "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567", 53_289_463)
FACE_CLASSES = tuple(range(1, 14))
"""CelebAMask-HQ labels pasted from the restored face: skin, l/r brow, l/r eye, glasses,
l/r ear, earring, nose, mouth, upper and lower lip."""
BLUR = 11 * math.sqrt(2) / 512
"""σ of the mask's Gaussian blur as a fraction of the crop side (facexlib's two σ = 11 px blurs at 512)."""
NUM_CLASSES = 19
PARSE_STRIDE = 32
"""The backbone's total stride: the parsing size must be a multiple of it."""
# BiSeNet was trained on ImageNet-normalised RGB (facexlib's inference_parsing.py).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_FLAG = "--parsing-weights"


class FaceParser:
    """facexlib's BiSeNet turned into soft face masks of aligned crops, batched on one device.

    size: side, in pixels, of the picture the network sees (a multiple of 32); crops are resized
        to it. 512 is BiSeNet's training size.
    weights: the checkpoint file; None: the vidface cache, downloaded there where the network
        allows (see :mod:`vidface.faces.facexlib_weights`).
    device: torch device for the network (the restorer's). Runs in float32 whatever the
        restorer's precision: it is a small network next to the restorer.
    """

    def __init__(self, *, size: int = 512, weights: Path | None = None, device: str | torch.device = "cpu") -> None:
        import torch
        from facexlib.parsing.bisenet import BiSeNet

        if size < PARSE_STRIDE or size % PARSE_STRIDE:
            raise ValueError(f"parsing size must be a positive multiple of {PARSE_STRIDE}, got {size}")
        path = resolve_file(PARSING_WEIGHTS, weights, flag=_FLAG, instead="--paste-mask box")
        network = BiSeNet(num_class=NUM_CLASSES)
        load_weights(network, path, PARSING_WEIGHTS, flag=_FLAG, kind="BiSeNet face-parsing")
        self.device = torch.device(device)
        self.size = size
        self.network = network.to(self.device).eval()
        self._mean = torch.tensor(_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(_STD, device=self.device).view(1, 3, 1, 1)
        # On the device once: indexing with a list would copy it there, waiting for the GPU, per batch.
        self._face_classes = torch.tensor(FACE_CLASSES, device=self.device)
        self._blur = _gaussian_kernel(BLUR * size / 8, self.device)

    def face_masks(self, images: torch.Tensor) -> torch.Tensor:
        """Soft face masks of aligned crops.

        images: B×3×S×S RGB float in [0, 1] (any float dtype and device), aligned to the FFHQ
            template, e.g. the restorer's output.
        Returns B×S×S float32 in [0, 1] on this parser's device: per pixel, the probability that
            it shows the face (:data:`FACE_CLASSES`), blurred by :data:`BLUR` of the side.
        """
        import torch
        import torch.nn.functional as F

        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x H x W, got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        with torch.inference_mode():
            pixels = images.to(self.device, torch.float32)
            if (height, width) != (self.size, self.size):
                pixels = F.interpolate(pixels, size=(self.size, self.size), mode="bilinear",
                                       align_corners=False, antialias=self.size < max(height, width))
            logits = self._main_head((pixels - self._mean) / self._std)
            face = logits.softmax(dim=1).index_select(1, self._face_classes).sum(dim=1, keepdim=True)
            face = self._blurred(face)
            face = F.interpolate(face, size=(height, width), mode="bilinear", align_corners=False)
            return face.squeeze(1).clamp_(0.0, 1.0)

    def _main_head(self, x: torch.Tensor) -> torch.Tensor:
        """BiSeNet's forward up to its main output, at 1/8 of the input's resolution (the
        auxiliary heads and the upsampling of all three to full size are left out)."""
        net = self.network
        features8, context8, _ = net.cp(x)
        logits, _ = net.conv_out(net.ffm(features8, context8))
        return logits

    def _blurred(self, mask: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of B×1×h×w, edges replicated."""
        import torch.nn.functional as F

        kernel = self._blur
        radius = kernel.numel() // 2
        if radius == 0:
            return mask
        mask = F.pad(mask, (radius, radius, radius, radius), mode="replicate")
        mask = F.conv2d(mask, kernel.view(1, 1, 1, -1))
        return F.conv2d(mask, kernel.view(1, 1, -1, 1))


def parser_for(options: PasteOptions, device: str | torch.device = "cpu") -> FaceParser | None:
    """The face parser the paste settings ask for (loaded on `device`), or None for the box mask."""
    if options.mask != "parsing":
        return None
    return FaceParser(size=options.parse_size, weights=options.parsing_weights, device=device)


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian taps out to 3σ (a single tap for σ below a third of a pixel)."""
    import torch

    radius = int(math.floor(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    taps = torch.exp(-0.5 * (offsets / max(sigma, 1e-6)) ** 2)
    return taps / taps.sum()
