#!/usr/bin/env python
"""Write a tiny random OSDFace in the official file layout, for tests and quick trials, or
one of the released size for benchmarks.

    python tools/make_tiny_osdface.py OUT_DIR [--lora-style peft|legacy] [--embedder tiny|full] [--size tiny|full]

OUT_DIR/release/ gets the three release files under their official names, formats and key
names (pytorch_lora_weights.safetensors with ``unet.``-prefixed LoRA keys on linear and
convolution layers, embedding_change_weights.pth, associate_2.ckpt as a Lightning-style
checkpoint with the embedder under ``vqvae_LQ.`` next to decoder and HQ-branch entries that
loading ignores). OUT_DIR/base/ gets a tiny Stable-Diffusion-style diffusers folder: unet/ (two
blocks, 32/64 channels, cross-attention dim 1024 so the embedder's 77 x 1024 prompt fits), vae/
(three blocks, so latents are 1/4 of the image size) and scheduler/ with SD 2.1-base's scheduler
config. Images must be multiples of 8 pixels; the tiny model's face size is 64 x 64.

The tiny embedder has the official key names with fewer channels and levels (a 64 x 64 input
-> 16 x 16 grid, as the official 512 -> 16); ``--embedder full`` writes the released size.
``--size full`` writes everything at the released size (SD 2.1-base's UNet and VAE, the full
embedder; 512 x 512 faces, about 3.7 GB): random weights cost the same time as the real ones.
"""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

# SD 2.1-base's scheduler/scheduler_config.json, verbatim (the schedule OSDFace's x0 uses).
SD21_BASE_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.10.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
TINY_EMBEDDER = {"ch": 32, "ch_mult": (1, 1, 2), "num_res_blocks": 1, "resolution": 64, "z_channels": 64,
                 "n_embed": 1024, "embed_dim": 64}
SD21_BASE_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
)
SD21_BASE_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768,
)
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2", "conv_shortcut")
LORA_RANK = 4
LORA_CONV_RANK = 2


@dataclass(frozen=True)
class TinyOSDFace:
    """Paths of a written tiny model: release/ (the three files) and base/ (diffusers folder)."""

    release: Path
    base: Path


def _unet(size: str):
    from diffusers import UNet2DConditionModel

    if size == "full":
        return UNet2DConditionModel(**SD21_BASE_UNET)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
    )


def _vae(size: str):
    from diffusers import AutoencoderKL

    if size == "full":
        return AutoencoderKL(**SD21_BASE_VAE)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=32, sample_size=64,
    )


def lora_state_dict(unet: torch.nn.Module, style: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random LoRA weights on the UNet's attention, feed-forward and resnet layers, with the
    release's key names (``unet.<module>.lora_A/B.weight``, or ``.lora.down/up.weight``)."""
    down_suffix, up_suffix = {"peft": ("lora_A", "lora_B"), "legacy": ("lora.down", "lora.up")}[style]
    state = {}
    for name, module in unet.named_modules():
        if not any(name == t or name.endswith("." + t) for t in LORA_TARGETS):
            continue
        if isinstance(module, torch.nn.Linear):
            down = torch.randn(LORA_RANK, module.in_features, generator=generator) / module.in_features ** 0.5
            up = torch.randn(module.out_features, LORA_RANK, generator=generator) * 0.1
        elif isinstance(module, torch.nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            down = torch.randn(LORA_CONV_RANK, module.in_channels, *module.kernel_size, generator=generator) / fan_in ** 0.5
            up = torch.randn(module.out_channels, LORA_CONV_RANK, 1, 1, generator=generator) * 0.1
        else:
            continue
        state[f"unet.{name}.{down_suffix}.weight"] = down
        state[f"unet.{name}.{up_suffix}.weight"] = up
    return state


def write_tiny_osdface(out_dir: Path, lora_style: str = "peft", embedder: str | None = None, seed: int = 0,
                       size: str = "tiny") -> TinyOSDFace:
    """Write the model under out_dir (see module doc); deterministic for a given seed.
    size: "tiny" or "full" (the UNet and VAE, and the embedder unless `embedder` says otherwise)."""
    from safetensors.torch import save_file

    from vidface.models.embedder import VisualRepresentationEmbedder
    from vidface.weights import EMBEDDER_FILE, LORA_FILE, PROJECTION_FILE

    out_dir = Path(out_dir)
    release, base = out_dir / "release", out_dir / "base"
    release.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    unet, vae = _unet(size), _vae(size)
    unet.save_pretrained(base / "unet")
    vae.save_pretrained(base / "vae")
    (base / "scheduler").mkdir(parents=True, exist_ok=True)
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_BASE_SCHEDULER, indent=2) + "\n")

    save_file(lora_state_dict(unet, lora_style, generator), str(release / LORA_FILE))

    vre = VisualRepresentationEmbedder(**(TINY_EMBEDDER if (embedder or size) == "tiny" else {})).eval()
    with torch.no_grad():
        # A dictionary drawn from the encoder's own features on random images (as a trained one
        # would be), so that a face picks many distinct codes, as with the real weights.
        size = vre.config.resolution
        images = torch.rand(4, 3, size, size, generator=generator) * 2 - 1
        features = vre.features(images).reshape(-1, vre.config.embed_dim)
        rows = torch.randint(0, features.shape[0], (vre.config.n_embed,), generator=generator)
        noise = torch.randn(vre.config.n_embed, vre.config.embed_dim, generator=generator)
        vre.quantize.embedding.weight.copy_(features[rows] + 0.1 * features.std() * noise)
    state = vre.state_dict()
    projection = OrderedDict((k[len("projection."):], v) for k, v in state.items() if k.startswith("projection."))
    torch.save(projection, release / PROJECTION_FILE)

    lightning_state = OrderedDict()
    for key, value in state.items():
        if not key.startswith("projection."):
            lightning_state["vqvae_LQ." + key] = value
    # Entries of the training module that inference does not read.
    lightning_state["vqvae_LQ.post_quant_conv.weight"] = torch.zeros(4, 4, 1, 1)
    lightning_state["vqvae_LQ.decoder.conv_in.weight"] = torch.zeros(4, 4, 3, 3)
    lightning_state["vqvae.encoder.conv_in.weight"] = torch.zeros(4, 3, 3, 3)
    lightning_state["logit_scale"] = torch.tensor(2.66)
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": lightning_state,
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    torch.save(checkpoint, release / EMBEDDER_FILE)
    return TinyOSDFace(release=release, base=base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write release/ and base/ into")
    parser.add_argument("--lora-style", choices=("peft", "legacy"), default="peft",
                        help="LoRA key names: peft lora_A/lora_B (default) or legacy lora.down/lora.up")
    parser.add_argument("--embedder", choices=("tiny", "full"), default=None,
                        help="embedder size: tiny or the released full size (default: as --size)")
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny",
                        help="tiny (default, fast) or the released size of UNet, VAE and embedder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    written = write_tiny_osdface(args.out_dir, args.lora_style, args.embedder, args.seed, args.size)
    print(f"release: {written.release}\nbase: {written.base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
