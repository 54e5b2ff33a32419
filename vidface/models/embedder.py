"""OSDFace's Visual Representation Embedder (VRE): a face image -> 77 x 1024 prompt embeddings.

The VRE replaces Stable Diffusion's text encoder. A VQ-GAN-style encoder (the "visual
tokenizer", trained on low-quality faces) maps the face to a 16 x 16 grid of 512-d features;
each grid position is matched to its nearest entry of a 1024 x 512 vector-quantized dictionary;
the 77 distinct dictionary codes whose matches are closest (grid positions taken in order of
increasing distance, repeats skipped) become a 77 x 512 token sequence; a two-layer 1x1
projection with SiLU lifts it to the 77 x 1024 cross-attention context of the UNet.

Module and parameter names follow the official release, so its weights load without renaming:
``encoder.*``, ``quant_conv.*`` and ``quantize.embedding.weight`` come from ``associate_2.ckpt``
(under its ``vqvae_LQ.`` prefix); ``projection.conv1/conv2`` come from
``embedding_change_weights.pth``. docs/osdface-weights.md lists every key and shape.

Deviations from the reference code, all deliberate: distances and code selection run in
float32 whatever the model dtype; the selection works for any batch size (the reference's loop
fails above 1) and gives each image what it gets alone; ties in distance are broken by grid
position (the reference's unstable sort leaves them to the backend).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisualRepresentationEmbedder", "select_codes"]


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class _ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class _AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 convolutions.

    ``norm2`` only normalises an optional second (cross) input in the training code; it has
    weights in the release, so it exists here, unused.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(channels)
        self.norm2 = _group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm1(x)
        q, k, v = (conv(y).reshape(b, 1, c, h * w).transpose(-1, -2) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # b, 1, hw, c; scale c ** -0.5
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class _Level(nn.Module):
    def __init__(self, blocks: list[_ResnetBlock], attns: list[_AttnBlock], downsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        if downsample:
            channels = blocks[-1].conv2.out_channels
            self.downsample = nn.Module()
            # Asymmetric (0, 1, 0, 1) zero padding, then a stride-2 3x3 convolution.
            self.downsample.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)
        else:
            self.downsample = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        if self.downsample is not None:
            h = self.downsample.conv(F.pad(h, (0, 1, 0, 1)))
        return h


class _Encoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, resolution: int,
                 attn_resolutions: tuple[int, ...], z_channels: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        levels = []
        current = resolution
        block_in = ch
        for level, mult in enumerate(ch_mult):
            block_out = ch * mult
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(_ResnetBlock(block_in, block_out))
                block_in = block_out
                if current in attn_resolutions:
                    attns.append(_AttnBlock(block_in))
            last = level == len(ch_mult) - 1
            levels.append(_Level(blocks, attns, downsample=not last))
            if not last:
                current //= 2
        self.down = nn.ModuleList(levels)
        self.mid = nn.Module()
        self.mid.block_1 = _ResnetBlock(block_in, block_in)
        self.mid.attn_1 = _AttnBlock(block_in)
        self.mid.block_2 = _ResnetBlock(block_in, block_in)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class _Projection(nn.Module):
    """Two 1x1 convolutions over the token axis with SiLU after each (``TwoLayerConv1x1``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, in_channels // 2, 1)
        self.conv2 = nn.Conv1d(in_channels // 2, out_channels, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens.transpose(1, 2)
        x = F.silu(self.conv2(F.silu(self.conv1(x))))
        return x.transpose(1, 2)


def select_codes(distances: torch.Tensor, num_codes: int) -> torch.Tensor:
    """The dictionary codes OSDFace feeds to the UNet, per image.

    distances: B x N x K squared distances from each of N grid features to each of K codes.
    Each grid position is matched to its nearest code; positions are taken in order of
    increasing match distance (ties: lower position first) and each code is kept the first
    time it appears, until ``num_codes`` distinct codes are found.

    Returns B x num_codes int64 code indices in selection order; -1 fills the slots when an
    image has fewer distinct codes than ``num_codes`` (the reference leaves those tokens zero).
    """
    batch, positions, codes = distances.shape
    nearest_distance, nearest_code = distances.min(dim=2)
    order = torch.sort(nearest_distance, dim=1, stable=True).indices
    ranked_codes = nearest_code.gather(1, order)  # B x N, codes in selection order (with repeats)
    ranks = torch.arange(positions, device=distances.device).expand(batch, positions)
    first_rank = torch.full((batch, codes), positions, dtype=torch.long, device=distances.device)
    first_rank = first_rank.scatter_reduce(1, ranked_codes, ranks, reduce="amin")
    is_first = first_rank.gather(1, ranked_codes) == ranks
    slot = torch.cumsum(is_first.long(), dim=1) - 1
    keep = is_first & (slot < num_codes)
    selected = torch.full((batch, num_codes + 1), -1, dtype=torch.long, device=distances.device)
    # Rows that are not kept write into the spare last column, which is dropped.
    target = torch.where(keep, slot, torch.full_like(slot, num_codes))
    selected = selected.scatter(1, target, torch.where(keep, ranked_codes, torch.full_like(ranked_codes, -1)))
    return selected[:, :num_codes]


class VisualRepresentationEmbedder(nn.Module):
    """Face image -> prompt embeddings (B x num_codes x prompt_dim), OSDFace's VRE.

    The defaults are the released model's configuration: a 6-level encoder (64 channels,
    multipliers 1,2,2,2,4,8, two residual blocks per level, attention at 16 x 16) on 512 x 512
    input, a 1024 x 512 dictionary, 77 codes, 1024-d prompts. The dictionary stays float32 under
    any ``.to(dtype)`` so that distances and the code choice do not depend on the model dtype.
    A plain torch module (its arguments kept as ``config``), so a ready model loads without diffusers.
    """

    def __init__(self, ch: int = 64, ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4, 8), num_res_blocks: int = 2,
                 resolution: int = 512, attn_resolutions: tuple[int, ...] = (16,), z_channels: int = 512,
                 n_embed: int = 1024, embed_dim: int = 512, num_codes: int = 77, prompt_dim: int = 1024) -> None:
        super().__init__()
        self.config = SimpleNamespace(
            ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, resolution=resolution,
            attn_resolutions=tuple(attn_resolutions), z_channels=z_channels, n_embed=n_embed, embed_dim=embed_dim,
            num_codes=num_codes, prompt_dim=prompt_dim)
        self.encoder = _Encoder(ch, tuple(ch_mult), num_res_blocks, resolution, tuple(attn_resolutions), z_channels)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantize = nn.Module()
        codebook = torch.empty(n_embed, embed_dim)
        if not codebook.is_meta:  # nn.Embedding's own draw; on the meta device (built to load weights
            nn.init.normal_(codebook)  # into) there is nothing to draw, and normal_ would import torch._dynamo
        self.quantize.embedding = nn.Embedding.from_pretrained(codebook, freeze=False)
        self.projection = _Projection(embed_dim, prompt_dim)

    def _apply(self, fn, recurse=True):  # torch.nn.Module's hook behind .to(), .half(), .cuda()
        """Keep the dictionary float32 whatever dtype the rest of the model is cast to."""
        super()._apply(fn, recurse)
        weight = self.quantize.embedding.weight
        if weight.dtype != torch.float32:
            weight.data = weight.data.float()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Grid features of the visual tokenizer.

        images: B x 3 x H x W RGB in [-1, 1] (the VAE's input range). As in the reference, they
        are resized to ``resolution`` (bilinear, align_corners=False) and normalised a second
        time with (x - 0.5) / 0.5, so the encoder sees values in [-3, 1].
        Returns B x N x embed_dim float32, N = (resolution / 2 ** (levels - 1)) ** 2.
        """
        size = self.config.resolution
        dtype = self.quant_conv.weight.dtype
        x = images.to(dtype)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - 0.5) / 0.5
        h = self.quant_conv(self.encoder(x))
        return h.flatten(2).transpose(1, 2).float()

    def distances(self, images: torch.Tensor) -> torch.Tensor:
        """B x N x n_embed float32 squared distances from each grid feature to each code.

        images: B x 3 x H x W RGB in [-1, 1]. Computed as |z|^2 + |e|^2 - 2 z.e, as the reference.
        """
        z = self.features(images)
        codebook = self.quantize.embedding.weight
        return (z.pow(2).sum(dim=2, keepdim=True) + codebook.pow(2).sum(dim=1)
                - 2 * torch.matmul(z, codebook.t()))

    def prompt_from_distances(self, distances: torch.Tensor) -> torch.Tensor:
        """Select the codes (see :func:`select_codes`) and project them: B x num_codes x prompt_dim.

        The output has the dtype of the projection's weights.
        """
        codes = select_codes(distances, self.config.num_codes)
        codebook = self.quantize.embedding.weight
        tokens = codebook[codes.clamp(min=0)] * (codes >= 0).unsqueeze(-1).to(codebook.dtype)
        return self.projection(tokens.to(self.projection.conv1.weight.dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: B x 3 x H x W RGB in [-1, 1] -> B x num_codes x prompt_dim prompt embeddings."""
        return self.prompt_from_distances(self.distances(images))
