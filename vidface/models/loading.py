"""Build the OSDFace restorer from the official release files (or a converted bundle) and
Stable Diffusion 2.1-base, with strict checks: a missing, unexpected or mis-shaped key is a
WeightsError naming it, never silently random weights.

Release layout (docs/osdface-weights.md lists every key and shape):

* ``pytorch_lora_weights.safetensors``: UNet LoRA, keys ``unet.<module>.lora_A.weight`` /
  ``lora_B.weight`` (PEFT) or ``unet.<module>.lora.down.weight`` / ``lora.up.weight`` (older
  diffusers), on linear and convolution layers. Targets and ranks come from the keys; the
  scale is 1 (alpha = rank), as in the reference's merge. Merged into the UNet through peft.
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

import json
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidface.errors import WeightsError
from vidface.files import atomic_output
from vidface.models.embedder import VisualRepresentationEmbedder
from vidface.models.options import ModelOptions, auto_batch_size, cpu_threads, resolve_device, resolve_dtype
from vidface.models.osdface import OSDFace
from vidface.models.ready import load_ready, ready_folder, save_ready
from vidface.weights import EMBEDDER_FILE, LORA_FILE, PROJECTION_FILE, WeightsLocation, resolve

__all__ = [
    "BUNDLE_FORMAT", "ReleaseWeights", "build_embedder", "check_release", "convert_release", "load_base", "load_osdface",
    "merge_lora", "read_release",
]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "vidface-osdface"
BUNDLE_VERSION = "1"
EMBEDDER_PREFIX = "vqvae_LQ."
EMBEDDER_MODULES = ("encoder.", "quant_conv.", "quantize.")
NUM_CODES = 77
# Top-level modules whose pickled objects are replaced by inert placeholders in associate_2.ckpt.
_TRAINING_NAMESPACES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf", "argparse", "numpy")
_LORA_SUFFIXES = {
    ".lora_A.weight": "A", ".lora_B.weight": "B",
    ".lora.down.weight": "A", ".lora.up.weight": "B",
}


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


# --- reading files -------------------------------------------------------------------------


def _first_line(error: Exception) -> str:
    return (str(error) or type(error).__name__).splitlines()[0]


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own and OS errors for damaged files
        raise WeightsError(f"{path} is not a readable safetensors file ({_first_line(error)}); "
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
        raise WeightsError(f"{path} is damaged or not a PyTorch file ({_first_line(error)}); "
                           f"download it again") from None
    if trust_pickle:
        log.warning("loading %s with full pickle (--trust-pickle)", path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, ImportError, AttributeError, *damaged) as error:
            raise WeightsError(f"{path} cannot be unpickled ({_first_line(error)}); download it "
                               f"again") from None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except damaged as error:
        raise WeightsError(f"{path} holds pickled objects and cannot be inspected safely "
                           f"({_first_line(error)}); if you trust the file, pass --trust-pickle") from None
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
            raise WeightsError(f"{path} cannot be loaded safely ({_first_line(error)}); if you trust the "
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


# --- embedder ------------------------------------------------------------------------------


def _embedder_config(weights: ReleaseWeights) -> dict:
    """The embedder's configuration, read off its weights' shapes (the release carries none).

    The attention blocks sit where the feature grid is 16 x 16, so the input resolution is
    16 * 2 ** (index of the first level with attention).
    """
    state = weights.embedder

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise WeightsError(f"{weights.where(key)}: missing key; the file is incomplete or not OSDFace's")
        return state[key].shape

    levels = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))), default=-1)
    if levels < 1:
        shape("encoder.down.0.block.0.conv1.weight")
    blocks = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))),
                     default=-1)
    if blocks < 1:
        shape("encoder.down.0.block.0.conv1.weight")
    ch = shape("encoder.conv_in.weight")[0]
    attn_levels = [i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in state]
    n_embed, embed_dim = shape("quantize.embedding.weight")
    return {
        "ch": ch,
        "ch_mult": tuple(shape(f"encoder.down.{i}.block.0.conv2.weight")[0] // ch for i in range(levels)),
        "num_res_blocks": blocks,
        "resolution": 16 * 2 ** (attn_levels[0] if attn_levels else levels - 1),
        "attn_resolutions": (16,),
        "z_channels": shape("encoder.conv_out.weight")[0],
        "n_embed": n_embed,
        "embed_dim": embed_dim,
        "num_codes": NUM_CODES,
        "prompt_dim": shape("projection.conv2.weight")[0],
    }


def build_embedder(weights: ReleaseWeights) -> VisualRepresentationEmbedder:
    """The Visual Representation Embedder with the release's weights, float32 on the CPU.

    Every key of the embedder must be there with its exact shape, and nothing else.
    """
    embedder = VisualRepresentationEmbedder(**_embedder_config(weights))
    expected = embedder.state_dict()
    state = weights.embedder
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    for keys, problem in ((missing, "missing key"), (unexpected, "unexpected key")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise WeightsError(f"{weights.where(keys[0])}: {problem}{more}; the file is damaged or not OSDFace's")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise WeightsError(f"{weights.where(key)}: shape {tuple(state[key].shape)}, expected "
                               f"{tuple(tensor.shape)}; the file is damaged or not OSDFace's")
    embedder.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return embedder.eval().requires_grad_(False)


# --- UNet LoRA -----------------------------------------------------------------------------


def _lora_pairs(lora: Mapping[str, torch.Tensor], source: str) -> dict[str, dict[str, tuple[str, torch.Tensor]]]:
    """UNet module name -> {"A": (key, down weight), "B": (key, up weight)}."""
    pairs: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, tensor in lora.items():
        suffix = next((s for s in _LORA_SUFFIXES if key.endswith(s)), None)
        if not key.startswith("unet.") or suffix is None:
            raise WeightsError(f"{source}: unexpected key {key} (expected unet.<module>.lora_A/lora_B.weight "
                               f"or unet.<module>.lora.down/lora.up.weight)")
        module = key[len("unet."):-len(suffix)]
        pairs.setdefault(module, {})[_LORA_SUFFIXES[suffix]] = (key, tensor)
    for module, pair in pairs.items():
        for part, partner in (("A", "B"), ("B", "A")):
            if part not in pair:
                key = pair[partner][0]
                wanted = {".lora_A.": ".lora_B.", ".lora_B.": ".lora_A.", ".lora.down.": ".lora.up.",
                          ".lora.up.": ".lora.down."}
                for old, new in wanted.items():
                    if old in key:
                        key = key.replace(old, new)
                        break
                raise WeightsError(f"{source}: missing key {key} (its pair {pair[partner][0]} is there)")
    if not pairs:
        raise WeightsError(f"{source} holds no LoRA weights")
    return pairs


def merge_lora(unet: nn.Module, lora: Mapping[str, torch.Tensor], source: str = LORA_FILE) -> nn.Module:
    """Attach the release's LoRA to the UNet through peft and merge it into the weights.

    Targets and ranks are read from the keys; scale 1 (alpha = rank). Returns the merged UNet
    (a plain UNet2DConditionModel, no peft layers left).
    """
    from peft import LoraConfig, LoraModel

    pairs = _lora_pairs(lora, source)
    ranks: dict[str, int] = {}
    for module_name, pair in pairs.items():
        key_a, down = pair["A"]
        key_b, up = pair["B"]
        try:
            module = unet.get_submodule(module_name)
        except AttributeError:
            raise WeightsError(f"{source}: key {key_a} names no UNet module; is the base model SD 2.1-base?") from None
        rank = down.shape[0]
        if isinstance(module, nn.Linear):
            want_down, want_up = (rank, module.in_features), (module.out_features, rank)
        elif isinstance(module, nn.Conv2d):
            want_down = (rank, module.in_channels, *module.kernel_size)
            want_up = (module.out_channels, rank, 1, 1)
        else:
            raise WeightsError(f"{source}: key {key_a} targets a {type(module).__name__}, not a linear or "
                               f"convolution layer")
        for key, tensor, wanted in ((key_a, down, want_down), (key_b, up, want_up)):
            if tuple(tensor.shape) != wanted:
                raise WeightsError(f"{source}: {key} has shape {tuple(tensor.shape)}, expected {wanted} for "
                                   f"{module_name}")
        ranks[module_name] = rank
    common = max(set(ranks.values()), key=list(ranks.values()).count)
    patterns = {re.escape(name): rank for name, rank in ranks.items() if rank != common}
    config = LoraConfig(r=common, lora_alpha=common, target_modules=sorted(ranks), rank_pattern=patterns,
                        alpha_pattern=dict(patterns), lora_dropout=0.0, init_lora_weights=False)
    adapter = "osdface"
    tuner = LoraModel(unet, config, adapter)
    with torch.no_grad():
        for module_name, pair in pairs.items():
            layer = unet.get_submodule(module_name)
            layer.lora_A[adapter].weight.copy_(pair["A"][1])
            layer.lora_B[adapter].weight.copy_(pair["B"][1])
    return tuner.merge_and_unload()


# --- base model ----------------------------------------------------------------------------


def load_base(base: Path) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(UNet, VAE, alphas_cumprod) of an SD 2.1-base diffusers folder, float32 on the CPU."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    base = Path(base)
    try:
        config = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=torch.float32)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=torch.float32)
    except (OSError, ValueError, json.JSONDecodeError) as error:
        raise WeightsError(f"--base {base}: cannot load SD 2.1-base from it ({_first_line(error)})") from None
    if config.get("prediction_type", "epsilon") != "epsilon":
        raise WeightsError(f"--base {base} predicts {config['prediction_type']}, OSDFace needs an epsilon model: "
                           f"use Stable Diffusion 2.1-base (not 2.1 768-v)")
    if unet.config.cross_attention_dim != 1024:
        raise WeightsError(f"--base {base}: UNet cross_attention_dim is {unet.config.cross_attention_dim}, "
                           f"OSDFace needs 1024 (Stable Diffusion 2.1-base)")
    alphas_cumprod = DDIMScheduler.from_config(config).alphas_cumprod
    return unet, vae, alphas_cumprod


# --- assembly ------------------------------------------------------------------------------


def load_osdface(options: ModelOptions, location: WeightsLocation | None = None, *, ready: bool = True) -> OSDFace:
    """Resolve the weights (see vidface.weights), build the restorer, move it to the device.

    location: already-resolved weights; None resolves options.weights/base/weights_repo.
    ready: load the ready model of these weights and settings (vidface.models.ready), making it
        first if there is none; False builds the restorer from the weights, for any batch and
        image size (a ready model takes face_size faces, padded to its static batch).
    The model's batch_size is options.batch_size, or what fits the device's free memory.
    """
    location = location or resolve(options.weights, options.base, options.weights_repo)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    batch = options.batch_size or auto_batch_size(device, dtype)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(options))
    folder = ready_folder(location, device, dtype, batch) if ready else None
    model = load_ready(folder, device) if folder else None
    if model is None:
        model = _build(options, location, device, dtype)
        if folder:
            model = _made_ready(model, folder, batch)
    model.batch_size = batch
    model.static_batch = model.static_batch or options.compile  # fixed shapes: one compilation
    if options.channels_last and device.type == "cuda":
        for network in (model.encoder, model.noise, model.decoder):
            network.to(memory_format=torch.channels_last)
    if options.compile:
        for network in (model.encoder, model.noise, model.decoder):
            network.compile(fullgraph=False)
    return model


def _build(options: ModelOptions, location: WeightsLocation, device: torch.device, dtype: torch.dtype) -> OSDFace:
    """The restorer from the release and the base, on `device` in `dtype`."""
    release = read_release(location.release, options.trust_pickle)
    embedder = build_embedder(release)
    unet, vae, alphas_cumprod = load_base(location.base)
    unet = merge_lora(unet, release.lora, str(release.lora_file))
    model = OSDFace.from_diffusers(unet, vae, embedder, alphas_cumprod).eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype)


def _made_ready(model: OSDFace, folder: Path, batch: int) -> OSDFace:
    """Save `model` as the ready model `folder` and return it with the ready model's static batch
    (its export runs the same operations: the same faces), or, where torch.export cannot export
    it, warn and return it as it is."""
    log.info("exporting the model to %s, once for these weights and settings", folder)
    try:
        save_ready(model, folder, batch)
    except Exception as error:  # torch.export raises many kinds for what it cannot trace
        log.warning("the model cannot be exported for fast loading (%s); each run builds it anew",
                    _first_line(error))
        return model
    model.static_batch = True
    return model


def check_release(release: Path, trust_pickle: bool = False) -> tuple[ReleaseWeights, VisualRepresentationEmbedder]:
    """Read a release (folder or bundle) and check it strictly: every embedder key with its
    shape and nothing else, every LoRA key paired. Returns the weights and the built embedder;
    raises WeightsError naming the first file and key that is wrong."""
    weights = read_release(release, trust_pickle)
    embedder = build_embedder(weights)
    _lora_pairs(weights.lora, str(weights.lora_file))
    return weights, embedder


def convert_release(release: Path, output: Path, trust_pickle: bool = False) -> Path:
    """Write the release's OSDFace tensors as one pickle-free safetensors bundle.

    The bundle is checked the same way as the release (strict keys and shapes) before writing;
    it is written under a temporary name and renamed, so a failure leaves nothing behind.
    """
    from safetensors.torch import save_file

    weights, embedder = check_release(release, trust_pickle)
    tensors = {f"lora.{key}": tensor.contiguous() for key, tensor in weights.lora.items()}
    tensors.update({f"embedder.{key}": tensor.contiguous() for key, tensor in embedder.state_dict().items()})
    metadata = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION}
    output = Path(output)
    with atomic_output(output) as partial:
        save_file(tensors, str(partial), metadata=metadata)
    return output
