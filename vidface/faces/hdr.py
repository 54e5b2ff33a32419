"""HDR faces shown to the restorer as SDR faces, and its faces coded back.

OSDFace learnt faces from SDR photos (BT.709 primaries, a display gamma). An HDR picture codes
the same face otherwise: with PQ (HDR10, SMPTE ST 2084) a face at reference white is about 58 %
of the signal and shadows crowd the bottom; with HLG (broadcast, phones) skin sits lower than
in SDR; and both use BT.2020's wider primaries, in which a face's colours read as washed out
when taken for BT.709. Restoring the coded values as they are, the model would "correct" contrast
and colour that are not wrong, and the pasted face would stand out from the picture.

So a face of an HDR picture goes to the model in SDR terms, by BT.2408's anchor (HDR reference
white, 203 cd/m², stands for SDR's white): the signal's display light relative to reference white
(PQ's absolute light over 203 cd/m²; HLG's scene light through its OOTF, system gamma 1.2,
relative to the light of its 75 % signal), BT.2020 to BT.709 primaries, and above 80 % of
reference white a soft knee that reaches 1 only at infinity, so that every value the model
gives back maps to one light level (`from_model` inverts `to_model` exactly, up to the brightest
light the format holds); then the SDR display gamma, 2.4 (BT.1886). Colours outside BT.709
(rare on skin) are clipped to it. An SDR picture's faces pass unchanged, but for BT.2020's
primaries (UHD SDR), which change to BT.709's the same way. The face detector and
tracker, and `vidface report`, see an HDR picture through the same tone curve (`sdr_rgb`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vidface.io.probe import PRIMARIES_NAMES, TRANSFER_NAMES

if TYPE_CHECKING:
    import av
    import torch

    from vidface.io.frames import Frame

__all__ = ["FaceColour", "sdr_rgb", "face_colour"]

HDR_TRANSFERS = {"smpte2084": "pq", "arib-std-b67": "hlg"}
"""The HDR transfers, by FFmpeg's name of the tag (`vidface.io.probe.TRANSFER_NAMES`)."""

REFERENCE_WHITE_NITS = 203.0
"""BT.2408: HDR reference (diffuse) white, which stands for SDR's white."""
SDR_GAMMA = 2.4
"""BT.1886's display gamma: what the SDR pictures the model learnt from were coded for."""
KNEE = 0.8
"""Display light, relative to reference white, above which the soft knee compresses."""
HLG_SYSTEM_GAMMA = 1.2
"""BT.2100's HLG OOTF gamma at its 1000 cd/m² reference display."""

# BT.2100 PQ constants.
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# BT.2100 HLG constants.
_A = 0.17883277
_B = 1 - 4 * _A
_C = 0.5 - _A * math.log(4 * _A)

# Chromaticities (CIE 1931 x, y) of the primaries, red, green, blue, and of D65 white.
_BT709_XY = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
_BT2020_XY = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
_D65_XY = (0.3127, 0.3290)


def pq_to_light(signal: torch.Tensor) -> torch.Tensor:
    """PQ signal [0, 1] -> display light in cd/m² / 10000 (BT.2100's EOTF)."""
    power = signal.clamp(0, 1).pow(1 / _M2)
    return ((power - _C1).clamp(min=0) / (_C2 - _C3 * power)).pow(1 / _M1)


def light_to_pq(light: torch.Tensor) -> torch.Tensor:
    """Display light in cd/m² / 10000 -> PQ signal [0, 1] (BT.2100's inverse EOTF)."""
    power = light.clamp(0, 1).pow(_M1)
    return ((_C1 + _C2 * power) / (1 + _C3 * power)).pow(_M2)


def hlg_to_scene(signal: torch.Tensor) -> torch.Tensor:
    """HLG signal [0, 1] -> scene light [0, 1] (BT.2100's inverse OETF)."""
    import torch

    signal = signal.clamp(0, 1)
    return torch.where(signal <= 0.5, signal * signal / 3, (torch.exp((signal - _C) / _A) + _B) / 12)


def scene_to_hlg(scene: torch.Tensor) -> torch.Tensor:
    """Scene light [0, 1] -> HLG signal [0, 1] (BT.2100's OETF)."""
    import torch

    scene = scene.clamp(0, 1)
    return torch.where(scene <= 1 / 12, (3 * scene).sqrt(), _A * torch.log((12 * scene - _B).clamp(min=1e-12)) + _C)


@dataclass(frozen=True)
class FaceColour:
    """How a picture's faces are coded, and the way to and from the model's SDR faces.

    transfer: "sdr", "pq" or "hlg"; bt2020: whether its primaries are BT.2020's (an SDR picture
    may have them too: UHD SDR broadcasts; its faces then change primaries alone). Images are
    float RGB tensors in [0, 1] (any shape with channels in dimension -3).
    """

    transfer: str = "sdr"
    bt2020: bool = False

    @property
    def is_hdr(self) -> bool:
        return self.transfer != "sdr"

    @property
    def passes_as_is(self) -> bool:
        """Whether faces go to the model as they are coded (SDR with BT.709's primaries)."""
        return not self.is_hdr and not self.bt2020

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        """The picture's coded faces as the SDR faces the model takes (float64 inside: PQ's
        steep powers would lose a level in float32)."""
        if self.passes_as_is:
            return images
        light = self._relative_light(images.double())
        if self.bt2020:
            light = _mix(light, _BT2020_TO_BT709).clamp(min=0)
        light = _knee(light) if self.is_hdr else light.clamp(max=1)
        return light.pow(1 / SDR_GAMMA).to(images.dtype)

    def from_model(self, images: torch.Tensor) -> torch.Tensor:
        """The model's SDR faces coded as the picture codes its faces (inverts `to_model`)."""
        if self.passes_as_is:
            return images
        light = images.double().clamp(0, 1).pow(SDR_GAMMA)
        if self.is_hdr:
            light = _unknee(light, self._brightest)
        if self.bt2020:
            light = _mix(light, _BT709_TO_BT2020).clamp(min=0)
        return self._signal(light).clamp(0, 1).to(images.dtype)

    @property
    def _brightest(self) -> float:
        """The brightest display light the format holds, relative to reference white."""
        return 10000 / REFERENCE_WHITE_NITS if self.transfer == "pq" else 1 / _HLG_REFERENCE_DISPLAY

    def _relative_light(self, signal: torch.Tensor) -> torch.Tensor:
        if self.transfer == "pq":
            return pq_to_light(signal) * (10000 / REFERENCE_WHITE_NITS)
        if self.transfer == "hlg":
            return hlg_to_scene(signal).pow(HLG_SYSTEM_GAMMA) / _HLG_REFERENCE_DISPLAY
        return signal.pow(SDR_GAMMA)

    def _signal(self, light: torch.Tensor) -> torch.Tensor:
        if self.transfer == "pq":
            return light_to_pq(light * (REFERENCE_WHITE_NITS / 10000))
        if self.transfer == "hlg":
            return scene_to_hlg((light * _HLG_REFERENCE_DISPLAY).clamp(0, 1).pow(1 / HLG_SYSTEM_GAMMA))
        return light.clamp(0, 1).pow(1 / SDR_GAMMA)


def face_colour(video: av.VideoFrame) -> FaceColour:
    """How `video`'s picture codes its faces, from its transfer and primaries tags."""
    transfer = HDR_TRANSFERS.get(TRANSFER_NAMES.get(video.color_trc), "sdr")
    return FaceColour(transfer, bt2020=PRIMARIES_NAMES.get(video.color_primaries) == "bt2020")


def sdr_rgb(frame: Frame) -> np.ndarray:
    """The frame's upright 8-bit RGB as SDR shows it: an HDR picture's through the tone curve its
    faces get on their way to the model (per channel, by a table, so it costs a lookup per
    sample; the primaries stay, which moves no face), an SDR picture's as it is. What the face
    detector and tracker take, having learnt SDR faces too, and what `vidface report` measures
    and shows."""
    rgb = frame.to_rgb()
    colour = face_colour(frame.video)
    return _tone_table(colour.transfer)[rgb] if colour.is_hdr else rgb  # SDR's greys are SDR's


@functools.lru_cache(maxsize=None)
def _tone_table(transfer: str) -> np.ndarray:
    """The 256 8-bit levels of a grey in `transfer`, as the model's SDR levels (uint8)."""
    import torch

    greys = torch.arange(256, dtype=torch.float64).div(255).view(1, 256, 1).expand(3, 256, 1)
    sdr = FaceColour(transfer).to_model(greys)[0, :, 0]
    return sdr.mul(255).round().to(torch.uint8).numpy()


def _to_xyz(primaries: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The linear RGB -> CIE XYZ matrix of `primaries` with D65 white (SMPTE RP 177)."""
    def xyz(x: float, y: float) -> np.ndarray:
        return np.array([x / y, 1.0, (1 - x - y) / y])

    columns = np.stack([xyz(*xy) for xy in primaries], axis=1)
    return columns * np.linalg.solve(columns, xyz(*_D65_XY))


def _matrix(source: tuple[tuple[float, float], ...], target: tuple[tuple[float, float], ...]
            ) -> tuple[tuple[float, ...], ...]:
    """Linear RGB in `source` primaries -> linear RGB in `target`'s (BT.2087's matrices, unrounded)."""
    return tuple(tuple(float(v) for v in row) for row in np.linalg.solve(_to_xyz(target), _to_xyz(source)))


_BT2020_TO_BT709 = _matrix(_BT2020_XY, _BT709_XY)
_BT709_TO_BT2020 = _matrix(_BT709_XY, _BT2020_XY)
# HLG's reference white: the display light (OOTF applied, relative to peak) of its 75 % signal.
_HLG_REFERENCE_DISPLAY = ((math.exp((0.75 - _C) / _A) + _B) / 12) ** HLG_SYSTEM_GAMMA


def _mix(images: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """A 3×3 colour matrix applied to the channels (dimension -3); the matrix goes to a GPU
    behind the work queued there (`to_device`), so the model's thread does not wait for it."""
    import torch

    from vidface.devices import to_device

    weights = to_device(matrix, images.device, images.dtype)
    return torch.einsum("ij,...jhw->...ihw", weights, images)


def _knee(light: torch.Tensor) -> torch.Tensor:
    """Relative light [0, ∞) -> [0, 1): itself up to KNEE, then k + d·t / (t + d) (slope 1 at
    the knee, 1 only at infinity)."""
    import torch

    span = 1 - KNEE
    over = (light - KNEE).clamp(min=0)
    return torch.where(light <= KNEE, light, KNEE + span * over / (over + span))


def _unknee(value: torch.Tensor, brightest: float) -> torch.Tensor:
    """`_knee`'s inverse, capped at `brightest` (a value of 1 stands for any light above it)."""
    import torch

    span = 1 - KNEE
    above = ((value - KNEE) / span).clamp(0, 1)
    over = span * above / (1 - above).clamp(min=1e-12)
    return torch.where(value <= KNEE, value, (KNEE + over).clamp(max=brightest))
