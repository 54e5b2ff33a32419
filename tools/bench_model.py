#!/usr/bin/env python
"""Faces per second of the OSDFace restorer at full size (random weights), against a loop in the
style of the official inference script, measured in the same run on the same device.

    python tools/bench_model.py [--device cuda] [--dtype bf16] [--batches 1,8,16,32] [--compile]
    python tools/bench_model.py --device cpu --dtype fp32 --batches 1 --iterations 1   # smoke run

The architecture is the released one (SD 2.1-base UNet and VAE, the 29 M-parameter embedder);
the weights are random, which costs the same as the real ones. "reference-style" is what the
official infer.py does per face: fp32, batch 1, a sampled VAE latent, the embedder's code choice
in a Python loop over grid positions. "vidface" is OSDFace.restore: posterior mean, vectorised
code choice, the chosen dtype, the layout vidface picks for it, optional torch.compile. Prints one
line per configuration and the speed-up over the reference style; on CUDA also the peak memory
per face.
The lines are also written into docs/benchmarks.md (section "bench_model.py (DEVICE)"), dated and with
the command that made them.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks_doc import Section  # tools/, beside this script
from make_tiny_osdface import SD21_BASE_SCHEDULER, SD21_BASE_UNET, SD21_BASE_VAE  # tools/, beside this script


def build_model(device: torch.device, dtype: torch.dtype, channels_last: bool, compile_: bool):
    """Full-size OSDFace with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from vidface.models.embedder import VisualRepresentationEmbedder
    from vidface.models.osdface import OSDFace

    torch.manual_seed(0)
    unet, vae = UNet2DConditionModel(**SD21_BASE_UNET), AutoencoderKL(**SD21_BASE_VAE)
    embedder = VisualRepresentationEmbedder()
    alphas = DDIMScheduler.from_config(SD21_BASE_SCHEDULER).alphas_cumprod
    model = OSDFace.from_diffusers(unet, vae, embedder, alphas).eval().requires_grad_(False).to(device=device, dtype=dtype)
    for network in model.networks:
        if channels_last:
            network.to(memory_format=torch.channels_last)
        if compile_:
            network.compile()
    return model


@torch.inference_mode()
def reference_style(model, images: torch.Tensor) -> torch.Tensor:
    """One face as the official infer.py does it: fp32, sampled latent, Python selection loop."""
    lq = images.to(model.device, torch.float32) * 2 - 1
    embedder = model.embedder
    z = embedder.features(lq)[0]
    codebook = embedder.quantize.embedding.weight
    d = z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * z @ codebook.t()
    min_values, min_indices = d.min(dim=1)
    order = torch.sort(min_values).indices
    seen, selected = set(), []
    for index in min_indices[order]:
        if index.item() not in seen:  # one device sync per grid position, as the reference
            seen.add(index.item())
            selected.append(index.item())
        if len(selected) >= 77:
            break
    tokens = torch.zeros(1, 77, codebook.shape[1], device=model.device)
    tokens[0, :len(selected)] = codebook[torch.tensor(selected, device=model.device)]
    prompt = embedder.projection(tokens)
    encoder = model.encoder  # vidface.models.osdface.LatentMean: sampled here, as the reference does
    mean, log_variance = encoder.quant_conv(encoder.encoder(lq)).chunk(2, dim=1)
    std = torch.exp(0.5 * log_variance.clamp(-30.0, 20.0))
    latents = (mean + std * torch.randn_like(mean)) * model.scaling_factor
    noise = model.noise(latents, prompt)
    alpha = torch.tensor(model.alpha_prod, dtype=torch.float64, device=model.device)
    x0 = ((latents.double() - (1 - alpha).sqrt() * noise.double()) / alpha.sqrt()).float()
    out = model.decoder(x0 / model.scaling_factor).clamp(-1, 1)
    return (out * 0.5 + 0.5).clamp(0, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, images: torch.Tensor, iterations: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(faces per second, peak MiB per face or nan) over ``iterations`` calls after ``warmup``."""
    for _ in range(warmup):
        run(images)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    for _ in range(iterations):
        run(images)
    _sync(device)
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 / len(images) if device.type == "cuda" \
        else float("nan")
    return len(images) * iterations / elapsed, peak


def main(argv: list[str] | None = None) -> int:
    from vidface.models.loading import uses_channels_last
    from vidface.models.options import DTYPES, ModelOptions, resolve_device, torch_dtype

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="bf16", choices=DTYPES, help="vidface's dtype (default: bf16)")
    parser.add_argument("--batches", default="1,8,16,32", help="batch sizes for vidface (default: 1,8,16,32)")
    parser.add_argument("--size", type=int, default=512, help="face size in pixels (default: 512)")
    parser.add_argument("--iterations", type=int, default=5, help="timed calls per configuration (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default: 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet and VAE")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    with Section(f"bench_model.py ({name})") as say:
        say(f"device: {name}; torch {torch.__version__}; face {args.size} x {args.size}; random weights")

        faces = torch.rand(max(batches), 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
        reference = build_model(device, torch.float32, channels_last=False, compile_=False)
        ref_fps, ref_peak = timed(lambda x: reference_style(reference, x), faces[:1].to(device), args.iterations,
                                  args.warmup, device)
        say(f"reference-style  fp32  batch  1: {ref_fps:9.3f} faces/s ({1 / ref_fps:7.2f} s/face)  "
            f"peak {ref_peak:6.0f} MiB/face")
        reference = None  # frees the fp32 model (not `del`: the lambda above reads the name)
        if device.type == "cuda":
            torch.cuda.empty_cache()

        dtype = torch_dtype(args.dtype)
        layout = uses_channels_last(ModelOptions(compile=args.compile), device, dtype)
        model = build_model(device, dtype, channels_last=layout, compile_=args.compile)
        for batch in batches:
            fps, peak = timed(model.restore, faces[:batch].to(device), args.iterations, args.warmup, device)
            say(f"vidface          {args.dtype}  batch {batch:2d}: {fps:9.3f} faces/s ({1 / fps:7.2f} s/face)  "
                f"peak {peak:6.0f} MiB/face  {fps / ref_fps:5.2f}x reference-style")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
