"""OSDFace (Wang et al., CVPR 2025): one-step diffusion face restoration.

One restoration is: the low-quality face's VAE latent (posterior mean, scaled), the Visual
Representation Embedder's 77 x 1024 prompt from the same face, one UNet call (LoRA merged) at
timestep 399 predicting the noise, the clean latent x0 = (z - sqrt(1 - a) eps) / sqrt(a) with
a = alphas_cumprod[399] in float64, and the VAE decode of x0. The steps are separate methods so
the video pipeline can blend per face track between them (distances before the code choice,
clean latents before the decode):

    latents  = model.encode(images)                 # B x 4 x H/8 x W/8, model dtype
    d        = model.code_distances(images)         # B x 256 x 1024, float32
    prompt   = model.prompt_from_distances(d)       # B x 77 x 1024, model dtype
    clean    = model.denoise(latents, prompt)       # B x 4 x H/8 x W/8, model dtype
    restored = model.decode(clean)                  # B x 3 x H x W, float32 RGB in [0, 1]

``model.restore(images)`` composes them. Images are float tensors B x 3 x H x W, RGB in [0, 1]
(any dtype, any device; moved to the model's), H and W multiples of ``model.size_multiple``
(512 x 512 aligned faces for the released weights). Every call is deterministic and each image's
result does not depend on the others in its batch.

The model runs three networks with plain tensor interfaces (:class:`LatentMean`,
:class:`NoisePrediction`, :class:`LatentDecoder`), so the same model is built from diffusers'
UNet and VAE (:meth:`OSDFace.from_diffusers`) or from their exported programs
(:mod:`vidface.models.ready`), which take a fixed batch: ``static_batch`` faces per call, a
partial batch padded with copies of its last face.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from vidface.errors import InputError
from vidface.models.embedder import VisualRepresentationEmbedder

if TYPE_CHECKING:  # diffusers is imported where a model is built from it, never by a ready model
    from diffusers import AutoencoderKL, UNet2DConditionModel

__all__ = ["LatentDecoder", "LatentMean", "NoisePrediction", "OSDFace", "TIMESTEP"]

TIMESTEP = 399


class LatentMean(nn.Module):
    """The VAE's posterior mean of [-1, 1] images (unscaled): its encoder's weights alone."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.encoder = vae.encoder
        self.quant_conv = vae.quant_conv

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(images)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, _log_variance = moments.chunk(2, dim=1)
        return mean


class NoisePrediction(nn.Module):
    """The UNet's noise prediction at one fixed timestep."""

    def __init__(self, unet: UNet2DConditionModel, timestep: int) -> None:
        super().__init__()
        self.unet = unet
        self.timestep = timestep

    def forward(self, latents: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        # As a tensor made on the device: diffusers copies a number there, which waits for the GPU.
        timestep = torch.full((1,), self.timestep, dtype=torch.long, device=latents.device)
        return self.unet(latents, timestep, encoder_hidden_states=prompt).sample


class LatentDecoder(nn.Module):
    """The VAE's decoder: unscaled latents -> [-1, 1] images (not clamped)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv
        self.decoder = vae.decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        return self.decoder(latents)


class OSDFace(nn.Module):
    """The restorer: the VAE's encoder and decoder, the UNet (LoRA merged in) and the Visual
    Representation Embedder, with the constants that tie them together.

    alpha_prod: the base scheduler's cumulative alpha at ``timestep``, in float64;
    scaling_factor: the VAE's latent scale; size_multiple: what image sides must be a multiple of;
    batch_size: the faces per call the model was loaded for (what callers batch by);
    static_batch: whether every network call must get exactly batch_size faces (exported or
    compiled networks: fewer are padded, more are split; images must be face_size x face_size).
    Build it with :func:`vidface.models.loading.load_osdface`; then ``.to(device, dtype)``.
    """

    def __init__(self, encoder: nn.Module, noise: nn.Module, decoder: nn.Module,
                 embedder: VisualRepresentationEmbedder, *, alpha_prod: float, scaling_factor: float,
                 size_multiple: int, timestep: int = TIMESTEP, batch_size: int = 1,
                 static_batch: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.noise = noise
        self.decoder = decoder
        self.embedder = embedder
        self.timestep = timestep
        self.alpha_prod = alpha_prod
        self.scaling_factor = scaling_factor
        self.size_multiple = size_multiple
        self.batch_size = batch_size
        self.static_batch = static_batch
        # Aligned faces are restored at this size: the embedder's input size, 512 for the release
        # (the reference resizes square inputs to 512).
        self.face_size = int(embedder.config.resolution)

    @classmethod
    def from_diffusers(cls, unet: UNet2DConditionModel, vae: AutoencoderKL, embedder: VisualRepresentationEmbedder,
                       alphas_cumprod: torch.Tensor, timestep: int = TIMESTEP) -> OSDFace:
        """The restorer from diffusers' UNet and VAE. alphas_cumprod: the base model's
        scheduler's cumulative alphas (as DDIMScheduler computes them, float32)."""
        # The VAE and the UNet each halve the size once per block after the first.
        size_multiple = 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (len(unet.config.block_out_channels) - 1)
        return cls(LatentMean(vae), NoisePrediction(unet, timestep), LatentDecoder(vae), embedder,
                   alpha_prod=float(alphas_cumprod.double()[timestep]), scaling_factor=float(vae.config.scaling_factor),
                   size_multiple=size_multiple, timestep=timestep)

    @property
    def networks(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """The three networks that run on images and latents (what a layout change or compilation applies to)."""
        return self.encoder, self.noise, self.decoder

    @property
    def device(self) -> torch.device:
        return next(self.noise.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.noise.parameters()).dtype

    def check_images(self, images: torch.Tensor) -> None:
        """Raise InputError unless images is B x 3 x H x W with H, W multiples of size_multiple
        (exactly face_size with a static batch)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"face images must be a B x 3 x H x W tensor, got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if self.static_batch and (height, width) != (self.face_size, self.face_size):
            raise InputError(f"face images must be {self.face_size} x {self.face_size} pixels (aligned faces), "
                             f"got {width} x {height}")
        if height % self.size_multiple or width % self.size_multiple or height == 0 or width == 0:
            raise InputError(f"face images must be multiples of {self.size_multiple} pixels on each side "
                             f"(512 x 512 aligned faces), got {width} x {height}")

    def _run(self, network: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """network(*inputs), batch by batch of batch_size (the last padded) with a static batch."""
        if not self.static_batch:
            return network(*inputs)
        size = self.batch_size
        count = inputs[0].shape[0]
        outputs = []
        for start in range(0, count, size):
            part = [tensor[start:start + size] for tensor in inputs]
            missing = size - part[0].shape[0]
            if missing:
                part = [torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])]) for tensor in part]
            outputs.append(network(*part)[:size - missing])
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def _signed(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> [-1, 1] in the model's dtype on its device."""
        self.check_images(images)
        return images.to(self.device, self.dtype) * 2 - 1

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB [0, 1] -> scaled VAE latents (the posterior mean, not a sample)."""
        return self._run(self.encoder, self._signed(images)) * self.scaling_factor

    @torch.inference_mode()
    def code_distances(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB [0, 1] -> B x N x K float32 distances of the embedder's grid
        features to its K dictionary codes (N = 256, K = 1024 for the released weights)."""
        return self.embedder.distances(self._signed(images))

    @torch.inference_mode()
    def prompt_from_distances(self, distances: torch.Tensor) -> torch.Tensor:
        """B x N x K distances -> B x 77 x 1024 prompt embeddings in the model dtype."""
        return self.embedder.prompt_from_distances(distances.to(self.device, torch.float32))

    @torch.inference_mode()
    def denoise(self, latents: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """One UNet step at the fixed timestep: scaled latents -> clean scaled latents x0.

        x0 is computed in float64 from the predicted noise, then cast back to the model dtype.
        """
        latents = latents.to(self.device, self.dtype)
        noise = self._run(self.noise, latents, prompt.to(self.device, self.dtype))
        alpha = torch.full((), self.alpha_prod, dtype=torch.float64, device=self.device)  # filled there: no copy
        clean = (latents.double() - (1 - alpha).sqrt() * noise.double()) / alpha.sqrt()
        return clean.float().to(self.dtype)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean scaled latents -> B x 3 x H x W float32 RGB in [0, 1]."""
        latents = latents.to(self.device, self.dtype) / self.scaling_factor
        images = self._run(self.decoder, latents).clamp(-1, 1)
        return (images * 0.5 + 0.5).clamp(0, 1).float()

    @torch.inference_mode()
    def restore(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB [0, 1] low-quality faces -> restored faces, float32 RGB [0, 1]."""
        prompt = self.prompt_from_distances(self.code_distances(images))
        return self.decode(self.denoise(self.encode(images), prompt))
