"""The OSDFace release's tensors, read from the official files or a converted bundle, with
strict checks: a damaged or foreign file is a WeightsError naming it.

Release layout (docs/osdface-weights.md lists every key and shape):

* ``pytorch_lora_weights.safetensors``: UNet LoRA, keys ``unet.<module>.lora_A.weight`` /
  ``lora_B.weight`` (PEFT) or ``unet.<module>.lora.down.weight`` / ``lora.up.weight`` (older
  diffusers), on linear and convolution layers.
* ``embedding_change_weights.pth``: the embedder's projection (``conv1``, ``conv2``), a plain
  state dict, read with ``torch.load(weights_only=True)``.
* ``associate_2.ckpt``: a PyTorch Lightning checkpoint; the embedder's tokenizer and dictionary
  are ``state_dict["vqvae_LQ." + ...]``: ``encoder.*``, ``quant_conv.*``, ``quantize.*``. Other
  entries (the VQ decoder, the HQ branch, losses, trainer state) are not read. It is loaded with
  ``weights_only=True``; objects of training libraries (Lightning, OmegaConf, argparse, numpy)
  that weights_only cannot build are replaced by inert placeholders, since only tensors are
  used. Any other pickled object needs ``trust_pickle=True``.

The bundle (``vidface weights convert``) is one safetensors file: ``lora.<release LoRA key>``
and ``embedder.<embedder key>`` tensors, metadata ``format=vidface-osdface``.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from vidface.errors import WeightsError
from vidface.weights import EMBEDDER_FILE, LORA_FILE, PROJECTION_FILE

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "ReleaseWeights", "first_line", "read_release"]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "vidface-osdface"
BUNDLE_VERSION = "1"
EMBEDDER_PREFIX = "vqvae_LQ."
EMBEDDER_MODULES = ("encoder.", "quant_conv.", "quantize.")
# Top-level modules whose pickled objects are replaced by inert placeholders in associate_2.ckpt.
_TRAINING_NAMESPACES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf", "argparse", "numpy")


@dataclass(frozen=True)
class ReleaseWeights:
    """The OSDFace-specific tensors, whatever file layout they came from.

    source: the release folder or the bundle file they were read from.
    lora: release LoRA key (``unet.<module>.lora_A.weight`` ...) -> tensor.
    embedder: VisualRepresentationEmbedder state-dict key -> tensor.
    """

    source: Path
    lora: dict[str, torch.Tensor]
    embedder: dict[str, torch.Tensor]

    @property
    def lora_file(self) -> Path:
        return self.source if self.source.is_file() else self.source / LORA_FILE

    def where(self, key: str) -> str:
        """Where an embedder key lives (or belongs) on disk: "file: key as stored there"."""
        if self.source.is_file():
            return f"{self.source}: embedder.{key}"
        if key.startswith("projection."):
            return f"{self.source / PROJECTION_FILE}: {key[len('projection.'):]}"
        return f"{self.source / EMBEDDER_FILE}: {EMBEDDER_PREFIX}{key}"


def first_line(error: Exception) -> str:
    return (str(error) or type(error).__name__).splitlines()[0]


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own and OS errors for damaged files
        raise WeightsError(f"{path} is not a readable safetensors file ({first_line(error)}); "
                           f"download it again") from None


class _Inert:
    """Placeholder for a training library's pickled object: accepts anything, holds nothing."""

    def __new__(cls, *args: object, **kwargs: object) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def _torch_load(path: Path, trust_pickle: bool) -> object:
    """torch.load with weights_only=True, training-library objects made inert; see module doc."""
    # a damaged or foreign file: torch's unpicklers raise many kinds
    damaged = (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError, TypeError)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except damaged as error:
        raise WeightsError(f"{path} is damaged or not a PyTorch file ({first_line(error)}); "
                           f"download it again") from None
    if trust_pickle:
        log.warning("loading %s with full pickle (--trust-pickle)", path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, ImportError, AttributeError, *damaged) as error:
            raise WeightsError(f"{path} cannot be unpickled ({first_line(error)}); download it "
                               f"again") from None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except damaged as error:
        raise WeightsError(f"{path} holds pickled objects and cannot be inspected safely "
                           f"({first_line(error)}); if you trust the file, pass --trust-pickle") from None
    foreign = [name for name in names if name.split(".")[0] not in _TRAINING_NAMESPACES]
    if foreign:
        raise WeightsError(f"{path} holds pickled objects that cannot be loaded safely ({', '.join(foreign[:3])}); "
                           f"if you trust the file, pass --trust-pickle (or convert it once with "
                           f"`vidface weights convert --trust-pickle`)")
    log.info("%s: %d training-library objects replaced by placeholders", path, len(names))
    with torch.serialization.safe_globals([(_Inert, name) for name in names]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, *damaged) as error:
            raise WeightsError(f"{path} cannot be loaded safely ({first_line(error)}); if you trust the "
                               f"file, pass --trust-pickle") from None


def _tensor_dict(value: object, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping):
        raise WeightsError(f"{path} does not hold {what} (found {type(value).__name__}); is it the right file?")
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"{path}: entry {key!r} of {what} is not a tensor; is it the right file?")
    return dict(value)


def _release_from_files(folder: Path, trust_pickle: bool) -> ReleaseWeights:
    lora, _metadata = _read_safetensors(folder / LORA_FILE)
    projection = _tensor_dict(_torch_load(folder / PROJECTION_FILE, trust_pickle), folder / PROJECTION_FILE,
                              "a state dict")
    checkpoint = _torch_load(folder / EMBEDDER_FILE, trust_pickle)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise WeightsError(f"{folder / EMBEDDER_FILE} has no 'state_dict' entry: not a Lightning checkpoint")
    state = _tensor_dict(checkpoint["state_dict"], folder / EMBEDDER_FILE, "'state_dict'")
    embedder: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key[len(EMBEDDER_PREFIX):]
        if key.startswith(EMBEDDER_PREFIX) and name.startswith(EMBEDDER_MODULES):
            embedder[name] = tensor
    if not embedder:
        raise WeightsError(f"{folder / EMBEDDER_FILE} has no embedder weights (keys '{EMBEDDER_PREFIX}encoder.*'); "
                           f"is it OSDFace's associate_2.ckpt?")
    for key, tensor in projection.items():
        embedder["projection." + key] = tensor
    return ReleaseWeights(folder, lora, embedder)


def _release_from_bundle(path: Path) -> ReleaseWeights:
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != BUNDLE_FORMAT:
        raise WeightsError(f"{path} is not an OSDFace bundle (metadata format={metadata.get('format')!r}); "
                           f"make one with `vidface weights convert`")
    if metadata.get("version") != BUNDLE_VERSION:
        raise WeightsError(f"{path} is a version {metadata.get('version')} bundle, this vidface reads version "
                           f"{BUNDLE_VERSION}; convert the release again with `vidface weights convert`")
    lora, embedder = {}, {}
    for key, tensor in tensors.items():
        if key.startswith("lora."):
            lora[key[len("lora."):]] = tensor
        elif key.startswith("embedder."):
            embedder[key[len("embedder."):]] = tensor
        else:
            raise WeightsError(f"{path}: unexpected key {key} (bundle keys start with lora. or embedder.)")
    return ReleaseWeights(path, lora, embedder)


def read_release(release: Path, trust_pickle: bool = False) -> ReleaseWeights:
    """Read a release folder (three official files) or a bundle file."""
    release = Path(release)
    return _release_from_bundle(release) if release.is_file() else _release_from_files(release, trust_pickle)
