"""How the restorer runs: device, dtype, batch size, compilation, and temporal stabilisation. Shared by every command that
restores faces (``vidface faces``, ``vidface restore --model osdface``) and by the settings file.
Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidface.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPES", "ModelOptions", "TemporalOptions", "auto_batch_size", "resolve_device", "resolve_dtype", "torch_dtype"]

DTYPES = ("fp32", "fp16", "bf16")

# Estimated peak activation memory of one 512 x 512 face through the full model in 16-bit
# precision (the VAE decoder's 512 x 512 x 128-channel stages dominate), with headroom; fp32
# needs twice as much. Not yet measured on a GPU: tools/bench_model.py reports the real peak.
_BYTES_PER_FACE_16BIT = 700 * 2**20
_MAX_AUTO_BATCH = 32


@dataclass(frozen=True)
class ModelOptions:
    """Where the weights come from and how the restorer runs.

    weights: folder with the three OSDFace release files, or a bundle made by
        ``vidface weights convert``; None: ``weights_repo`` if set, else the installed release
        (downloaded on first use; see vidface.weights).
    base: Stable Diffusion 2.1-base as a local diffusers folder or a hub id; None: the
        VIDFACE_BASE environment variable, else the installed base (see vidface.weights).
    weights_repo: hub repo id holding the release files; None: VIDFACE_WEIGHTS_REPO, else the
        authors' Drive folder (see vidface.weights).
    trust_pickle: allow associate_2.ckpt to run arbitrary pickled code when it cannot be read
        safely. Only for files from a trusted source.
    device: "auto" (first CUDA GPU, else CPU), "cpu", "cuda" or "cuda:N".
    dtype: "auto" (bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU), "fp32",
        "fp16" or "bf16". The embedder's distances and code choice are float32 in every case.
    batch_size: faces per model call, or 0 for automatic (from free GPU memory; 1 on CPU).
    channels_last: NHWC memory layout for the UNet and VAE on GPUs (faster on tensor cores; no
        effect on CPU, where it measured slower).
    compile: torch.compile the UNet and VAE (slow first call, faster after).
    """

    weights: str | None = None
    base: str | None = None
    weights_repo: str | None = None
    trust_pickle: bool = False
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 0
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise InputError(f"dtype must be auto, {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.batch_size < 0:
            raise InputError(f"batch size must be >= 1 (or 0/auto), got {self.batch_size}")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of "fp32", "fp16" or "bf16"."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def resolve_device(name: str) -> torch.device:
    """torch.device for "auto", "cpu", "cuda" or "cuda:N", checked against this machine."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InputError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """torch dtype for a --dtype name; "auto" picks bf16/fp16 on a GPU and fp32 on a CPU."""
    import torch

    if name != "auto":
        return torch_dtype(name)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def auto_batch_size(device: torch.device, dtype: torch.dtype) -> int:
    """Faces per call that fit in the device's free memory now (1 on CPU: no gain from more)."""
    import torch

    if device.type != "cuda":
        return 1
    free, _total = torch.cuda.mem_get_info(device)
    per_face = _BYTES_PER_FACE_16BIT * (2 if dtype == torch.float32 else 1)
    return max(1, min(_MAX_AUTO_BATCH, int(free * 0.8) // per_face))


@dataclass(frozen=True)
class TemporalOptions:
    """Settings of temporal stabilisation (the ``temporal`` section of the settings).

    strength: weight of a track's past in the blended latent when the face is still and the
        latent barely changes, in [0, 1]; 0 turns all temporal smoothing off (latents, prompts
        and masks). Measured in tests/test_temporal.py on noisy latents: at the default 0.6 the
        frame-to-frame variance falls to ~0.15 of its value and a slow change is followed ~1.1
        frames late; at 0.7, ~0.09 and ~1.6 frames; at 0.8, ~0.05 and ~2.3 frames.
    motion_scale: face motion (:func:`landmark_motion`: RMS landmark displacement since the
        previous frame over the longer side of the face box) at which the latent and mask
        weights have fallen to exp(-1/2) ~ 0.61 of their still-face value; they fall as
        exp(-(motion / motion_scale)^2 / 2). At 0.08, a face drifting 2% of its size per frame
        keeps 97% of the weight and one moving 24% keeps 1%.
    change_scale: how many times the track's usual frame-to-frame latent change (a running
        median over latent positions, so flicker sets it) a change at one latent position may be
        before it stops blending: the weight there falls as exp(-(change / (change_scale *
        usual))^2 / 2). Flicker keeps blending; an expression change, an occlusion or a new
        face replaces the past where it happens, whatever the model's latent scale. Measured
        in tests/test_temporal.py: at 2, a change 7x the flicker leaves under 1% ghost.
    prompt_momentum: weight of a track's past in its running average of the embedder's code
        distances, in [0, 1); 0 selects codes from each frame alone.
    mask_momentum: weight of a track's past paste mask (crop coordinates), in [0, 1), scaled by
        the motion weight.
    max_gap: frames a track may go unseen before its state is dropped and it starts afresh.
    """

    strength: float = 0.6
    motion_scale: float = 0.08
    change_scale: float = 2.0
    prompt_momentum: float = 0.8
    mask_momentum: float = 0.5
    max_gap: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise InputError(f"temporal strength must be in [0, 1] (0 turns it off), got {self.strength}")
        for name in ("motion_scale", "change_scale"):
            value = getattr(self, name)
            if not value > 0:
                raise InputError(f"temporal {name} must be > 0, got {value}")
        for name in ("prompt_momentum", "mask_momentum"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise InputError(f"temporal {name} must be in [0, 1), got {value}")
        if self.max_gap < 1:
            raise InputError(f"temporal max_gap must be >= 1 frame, got {self.max_gap}")

    @property
    def enabled(self) -> bool:
        return self.strength > 0
