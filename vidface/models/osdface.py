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
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from vidface.errors import InputError
from vidface.models.embedder import VisualRepresentationEmbedder

__all__ = ["OSDFace", "TIMESTEP"]

TIMESTEP = 399


class OSDFace(nn.Module):
    """The restorer: UNet (LoRA merged in) + VAE + Visual Representation Embedder.

    alphas_cumprod: the base model's scheduler's cumulative alphas (as DDIMScheduler computes
    them, float32); only entry ``timestep`` is used, in float64.
    Build it with :func:`vidface.models.loading.load_osdface`; then ``.to(device, dtype)``.
    """

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, embedder: VisualRepresentationEmbedder,
                 alphas_cumprod: torch.Tensor, timestep: int = TIMESTEP) -> None:
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.embedder = embedder
        self.timestep = timestep
        self.alpha_prod = float(alphas_cumprod.double()[timestep])
        self.scaling_factor = float(vae.config.scaling_factor)
        # Aligned faces are restored at this size: the embedder's input size, 512 for the release
        # (the reference resizes square inputs to 512).
        self.face_size = int(embedder.config.resolution)
        # The VAE and the UNet each halve the size once per block after the first.
        self.size_multiple = 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (
            len(unet.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return self.unet.conv_in.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    def check_images(self, images: torch.Tensor) -> None:
        """Raise InputError unless images is B x 3 x H x W with H, W multiples of size_multiple."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"face images must be a B x 3 x H x W tensor, got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple or height == 0 or width == 0:
            raise InputError(f"face images must be multiples of {self.size_multiple} pixels on each side "
                             f"(512 x 512 aligned faces), got {width} x {height}")

    def _signed(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> [-1, 1] in the model's dtype on its device."""
        self.check_images(images)
        return images.to(self.device, self.dtype) * 2 - 1

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB [0, 1] -> scaled VAE latents (the posterior mean, not a sample)."""
        posterior = self.vae.encode(self._signed(images)).latent_dist
        return posterior.mean * self.scaling_factor

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
        noise = self.unet(latents, self.timestep, encoder_hidden_states=prompt.to(self.device, self.dtype)).sample
        alpha = torch.tensor(self.alpha_prod, dtype=torch.float64, device=self.device)
        clean = (latents.double() - (1 - alpha).sqrt() * noise.double()) / alpha.sqrt()
        return clean.float().to(self.dtype)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean scaled latents -> B x 3 x H x W float32 RGB in [0, 1]."""
        latents = latents.to(self.device, self.dtype) / self.scaling_factor
        images = self.vae.decode(latents).sample.clamp(-1, 1)
        return (images * 0.5 + 0.5).clamp(0, 1).float()

    @torch.inference_mode()
    def restore(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB [0, 1] low-quality faces -> restored faces, float32 RGB [0, 1]."""
        prompt = self.prompt_from_distances(self.code_distances(images))
        return self.decode(self.denoise(self.encode(images), prompt))
