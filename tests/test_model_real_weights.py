"""The released OSDFace weights against the re-derived reference math: runs only where the real
files are on disk (VIDFACE_TEST_WEIGHTS=release folder, VIDFACE_TEST_BASE=SD 2.1-base folder),
since tests never download. About a minute per face on a CPU."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from test_model_osdface import _reference_prompt, _reference_unet
from tiny_model import smooth_faces
from vidface.models.loading import load_osdface
from vidface.models.options import ModelOptions

WEIGHTS = os.environ.get("VIDFACE_TEST_WEIGHTS")
BASE = os.environ.get("VIDFACE_TEST_BASE")

pytestmark = pytest.mark.skipif(not (WEIGHTS and BASE), reason="real weights not on this machine "
                                "(set VIDFACE_TEST_WEIGHTS and VIDFACE_TEST_BASE to run)")


def test_released_weights_match_the_reference_math():
    from diffusers import AutoencoderKL

    model = load_osdface(ModelOptions(weights=WEIGHTS, base=BASE, device="cpu", dtype="fp32"), ready=False)
    assert model.face_size == 512 and model.embedder.config.num_codes == 77
    face = smooth_faces(1, seed=0, size=512)
    sd = {k: v.float() for k, v in model.embedder.state_dict().items()}
    vae = AutoencoderKL.from_pretrained(BASE, subfolder="vae").eval()
    unet = _reference_unet(Path(BASE), Path(WEIGHTS) / "pytorch_lora_weights.safetensors")
    config = json.loads((Path(BASE) / "scheduler" / "scheduler_config.json").read_text())
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, 1000, dtype=torch.float32) ** 2
    alpha = torch.cumprod(1.0 - betas, dim=0).double()[399]
    with torch.no_grad():
        lq = face * 2 - 1
        prompt = _reference_prompt(lq, sd, 512)
        latent = vae.encode(lq).latent_dist.mean * vae.config.scaling_factor
        eps = unet(latent, 399, encoder_hidden_states=prompt).sample
        x0 = ((latent.double() - (1 - alpha) ** 0.5 * eps.double()) / alpha ** 0.5).float()
        expected = (vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1) * 0.5 + 0.5).clamp(0, 1)
    restored = model.restore(face)
    assert torch.allclose(restored, expected, atol=1e-3), (restored - expected).abs().max()
