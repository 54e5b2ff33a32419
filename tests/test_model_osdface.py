"""OSDFace forward on the tiny model: against an independent re-derivation of the reference
inference math (jkwang28/OSDFace infer.py + lq_embed/), batch invariance, determinism, dtypes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tiny_model import TINY_FACE, smooth_faces, tiny_osdface, tiny_osdface_model, tiny_osdface_options  # noqa: F401
from vidface.errors import InputError
from vidface.models.embedder import select_codes
from vidface.models.loading import load_osdface


# --- the reference, re-derived from its source with plain tensor ops --------------------------


def _swish(x):
    return x * torch.sigmoid(x)


def _norm(x, sd, name):
    return F.group_norm(x, 32, sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)


def _conv(x, sd, name, **kwargs):
    return F.conv2d(x, sd[name + ".weight"], sd[name + ".bias"], **kwargs)


def _resnet(x, sd, name):
    h = _conv(_swish(_norm(x, sd, name + ".norm1")), sd, name + ".conv1", padding=1)
    h = _conv(_swish(_norm(h, sd, name + ".norm2")), sd, name + ".conv2", padding=1)
    if name + ".nin_shortcut.weight" in sd:
        x = _conv(x, sd, name + ".nin_shortcut")
    return x + h


def _attention(x, sd, name):
    h = _norm(x, sd, name + ".norm1")
    q, k, v = (_conv(h, sd, f"{name}.{p}") for p in "qkv")
    b, c, height, width = q.shape
    q = q.reshape(b, c, height * width).permute(0, 2, 1) * c ** -0.5
    weights = torch.softmax(q @ k.reshape(b, c, height * width), dim=2)
    out = (weights @ v.reshape(b, c, height * width).permute(0, 2, 1)).permute(0, 2, 1).reshape(b, c, height, width)
    return x + _conv(out, sd, name + ".proj_out")


def _reference_prompt(lq: torch.Tensor, sd: dict, resolution: int) -> torch.Tensor:
    """vqvae_encoder + TwoLayerConv1x1 for one image; lq in [-1, 1]."""
    img = F.interpolate(lq, size=(resolution, resolution), mode="bilinear", align_corners=False)
    h = _conv((img - 0.5) / 0.5, sd, "encoder.conv_in", padding=1)
    levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.down."))
    blocks = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block."))
    for level in range(levels):
        for block in range(blocks):
            h = _resnet(h, sd, f"encoder.down.{level}.block.{block}")
            if f"encoder.down.{level}.attn.{block}.q.weight" in sd:
                h = _attention(h, sd, f"encoder.down.{level}.attn.{block}")
        if level != levels - 1:
            h = _conv(F.pad(h, (0, 1, 0, 1)), sd, f"encoder.down.{level}.downsample.conv", stride=2)
    h = _resnet(h, sd, "encoder.mid.block_1")
    h = _attention(h, sd, "encoder.mid.attn_1")
    h = _resnet(h, sd, "encoder.mid.block_2")
    h = _conv(_swish(_norm(h, sd, "encoder.norm_out")), sd, "encoder.conv_out", padding=1)
    z = _conv(h, sd, "quant_conv").permute(0, 2, 3, 1).reshape(1, -1, h.shape[1])
    codebook = sd["quantize.embedding.weight"]
    d = (z ** 2).sum(2, keepdim=True) + (codebook ** 2).sum(1) - 2 * z @ codebook.t()
    min_values, min_indices = d[0].min(dim=1)
    order = torch.sort(min_values).indices
    selected, seen = [], set()
    for index in min_indices[order].tolist():
        if index not in seen:
            selected.append(index)
            seen.add(index)
        if len(selected) >= 77:
            break
    encodings = torch.zeros(77, codebook.shape[0])
    encodings[torch.arange(len(selected)), torch.tensor(selected)] = 1
    tokens = (encodings @ codebook).unsqueeze(0).permute(0, 2, 1)
    x = _swish(F.conv1d(tokens, sd["projection.conv1.weight"], sd["projection.conv1.bias"]))
    x = _swish(F.conv1d(x, sd["projection.conv2.weight"], sd["projection.conv2.bias"]))
    return x.permute(0, 2, 1)


def _reference_unet(base, lora_path):
    """Base UNet with the LoRA merged by hand: W + (alpha / rank) B A, alpha = rank."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet").eval()
    lora = load_file(str(lora_path))
    state = unet.state_dict()
    for key in lora:
        if ".lora_A." in key:
            target = key.replace(".lora_A.weight", ".weight")[len("unet."):]
            down, up = lora[key], lora[key.replace("lora_A", "lora_B")]
            delta = up.flatten(1) @ down.flatten(1)
            state[target] = state[target] + delta.reshape(state[target].shape)
    unet.load_state_dict(state)
    return unet


def test_restore_matches_reference_math(tiny_osdface, tiny_osdface_model):
    from diffusers import AutoencoderKL

    model = tiny_osdface_model
    sd = {k: v.float() for k, v in model.embedder.state_dict().items()}
    vae = AutoencoderKL.from_pretrained(tiny_osdface.base, subfolder="vae").eval()
    unet = _reference_unet(tiny_osdface.base, tiny_osdface.release / "pytorch_lora_weights.safetensors")
    config = json.loads((tiny_osdface.base / "scheduler" / "scheduler_config.json").read_text())
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, 1000, dtype=torch.float32) ** 2
    alpha = torch.cumprod(1.0 - betas, dim=0).double()[399]

    faces = smooth_faces(2, seed=3, size=32)  # the embedder resizes to its 64 x 64 input, as the reference
    with torch.no_grad():
        for i in range(2):
            lq = faces[i:i + 1] * 2 - 1
            prompt = _reference_prompt(lq, sd, model.embedder.config.resolution)
            latent = vae.encode(lq).latent_dist.mean * vae.config.scaling_factor
            eps = unet(latent, 399, encoder_hidden_states=prompt).sample
            x0 = ((latent.double() - (1 - alpha) ** 0.5 * eps.double()) / alpha ** 0.5).float()
            expected = (vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1) * 0.5 + 0.5).clamp(0, 1)
            ours = model.prompt_from_distances(model.code_distances(faces[i:i + 1]))
            restored = model.restore(faces[i:i + 1])
            assert torch.allclose(ours, prompt, atol=1e-5), (ours - prompt).abs().max()
            assert torch.allclose(restored, expected, atol=1e-5), (restored - expected).abs().max()
            assert restored.std() > 0.01


def test_select_codes_matches_reference_loop_and_pads():
    generator = torch.Generator().manual_seed(1)
    distances = torch.rand(3, 256, 1024, generator=generator)
    distances[1] = torch.rand(256, 1024, generator=generator) + torch.arange(1024) * (torch.arange(1024) >= 20)
    codes = select_codes(distances, 77)
    for i in range(3):
        values, indices = distances[i].min(dim=1)
        expected = list(dict.fromkeys(indices[torch.sort(values, stable=True).indices].tolist()))[:77]
        assert codes[i, :len(expected)].tolist() == expected
        assert (codes[i, len(expected):] == -1).all()
    assert (codes[1] >= 0).sum() <= 20 < (codes[0] >= 0).sum()


def test_batch_invariance_and_determinism(tiny_osdface_model):
    """Each image gets what it gets alone: the same codes exactly, the same pixels up to the float
    rounding of batch-size-dependent CPU kernels (well under one 8-bit level)."""
    model = tiny_osdface_model
    faces = smooth_faces(2, seed=5)
    batch = model.restore(faces)
    assert torch.equal(batch, model.restore(faces))
    codes = select_codes(model.code_distances(faces), 77)
    for i in range(2):
        alone = model.restore(faces[i:i + 1])
        assert torch.equal(codes[i:i + 1], select_codes(model.code_distances(faces[i:i + 1]), 77))
        assert torch.allclose(batch[i:i + 1], alone, atol=1e-3), (batch[i:i + 1] - alone).abs().max()
    assert (batch[0] - batch[1]).abs().mean() > 0.01  # different faces, different results


def test_split_steps_shapes_and_dtypes(tiny_osdface_model):
    model = tiny_osdface_model
    faces = smooth_faces(2, seed=7)
    latents = model.encode(faces)
    distances = model.code_distances(faces)
    prompt = model.prompt_from_distances(distances)
    clean = model.denoise(latents, prompt)
    images = model.decode(clean)
    assert latents.shape == (2, 4, TINY_FACE // 4, TINY_FACE // 4)
    assert distances.shape == (2, 256, 1024) and distances.dtype == torch.float32
    assert prompt.shape == (2, 77, 1024)
    assert images.shape == faces.shape and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, model.restore(faces))


def test_bf16_runs_on_cpu_with_float32_distances(tiny_osdface_options, tiny_osdface_model):
    from dataclasses import replace

    model = load_osdface(replace(tiny_osdface_options, dtype="bf16"), ready=False)
    faces = smooth_faces(1, seed=9, size=32)  # bf16 convolutions are slow on CPUs
    assert model.dtype == torch.bfloat16
    assert model.embedder.quantize.embedding.weight.dtype == torch.float32
    distances = model.code_distances(faces)
    assert distances.dtype == torch.float32
    assert model.prompt_from_distances(distances).dtype == torch.bfloat16
    restored = model.restore(faces)
    assert restored.dtype == torch.float32
    reference = tiny_osdface_model.restore(faces)
    assert (restored - reference).abs().mean() < 0.05


def test_rejects_bad_image_shapes(tiny_osdface_model):
    with pytest.raises(InputError, match="multiples of 8"):
        tiny_osdface_model.restore(torch.rand(1, 3, 66, 64))
    with pytest.raises(InputError, match="B x 3 x H x W"):
        tiny_osdface_model.restore(torch.rand(3, 64, 64))
