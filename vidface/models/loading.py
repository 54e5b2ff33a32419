"""Build the OSDFace restorer from the release's tensors (vidface.models.release) and Stable
Diffusion 2.1-base, with strict checks: a missing, unexpected or mis-shaped key is a
WeightsError naming it, never silently random weights. The LoRA's targets and ranks come from
its keys; the scale is 1 (alpha = rank), as in the reference's merge, merged into the UNet
through peft. The built model is exported once as a ready model (vidface.models.ready).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vidface.errors import WeightsError
from vidface.files import atomic_output
from vidface.models.embedder import VisualRepresentationEmbedder
from vidface.models.options import (ModelOptions, auto_batch_size, cpu_threads, device_memory_error, resolve_device,
                                    resolve_dtype)
from vidface.models.osdface import OSDFace
from vidface.models.ready import load_ready, ready_folder, save_ready
from vidface.models.release import BUNDLE_FORMAT, BUNDLE_VERSION, ReleaseWeights, first_line, read_release
from vidface.weights import LORA_FILE, WeightsLocation, resolve

__all__ = ["build_embedder", "check_release", "convert_release", "load_base", "load_osdface", "merge_lora",
           "uses_channels_last"]

log = logging.getLogger(__name__)

NUM_CODES = 77
_LORA_SUFFIXES = {
    ".lora_A.weight": "A", ".lora_B.weight": "B",
    ".lora.down.weight": "A", ".lora.up.weight": "B",
}


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
        raise WeightsError(f"--base {base}: cannot load SD 2.1-base from it ({first_line(error)})") from None
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
    try:
        model = load_ready(folder, device) if folder else None
        if model is None:
            model = _build(options, location, device, dtype)
            if folder:
                model = _made_ready(model, folder, batch)
    except torch.OutOfMemoryError:
        raise device_memory_error(device, None) from None
    model.batch_size = batch
    model.static_batch = model.static_batch or options.compile  # fixed shapes: one compilation
    if uses_channels_last(options, device, dtype):
        for network in model.networks:
            network.to(memory_format=torch.channels_last)
    if options.compile:
        for network in model.networks:
            network.compile(fullgraph=False)
    return model


def uses_channels_last(options: ModelOptions, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the UNet and VAE run in NHWC (options.channels_last allowing it): on a GPU when
    compiled, on a CPU in bf16 (oneDNN's bf16 kernels). Eager on a GPU they stay NCHW, where
    PyTorch runs the UNet's GroupNorms slower in NHWC (tools/bench_gpu.py measures both)."""
    if not options.channels_last:
        return False
    return options.compile if device.type == "cuda" else dtype == torch.bfloat16


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
                    first_line(error))
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
