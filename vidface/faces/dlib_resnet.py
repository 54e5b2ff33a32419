"""dlib's face descriptor network (``dlib_face_recognition_resnet_model_v1.dat``, a 29-layer
ResNet) in torch, read from dlib's own model file: the same 128 numbers as dlib's
``face_recognition_model_v1``, computed with the GIL released. dlib's Python binding holds the
GIL for the whole network, which stalls every other stage's Python meanwhile: the restorer's
stage among them, whose GPU then waits for work.

The architecture is dlib's (dlib/examples/dnn_face_recognition_ex.cpp)::

    150×150 RGB, less dlib's mean colour, / 256
    con 32 7×7 /2, affine, relu, max_pool 3×3 /2
    residual blocks: 3 of 32 channels, 4 of 64, 3 of 128, 3 of 256, 1 of 256; the first block
        of each level after the first halves the size (stride 2, its input average-pooled 2×2 /2)
    average over the picture, fc 128 (no bias)

A block is con 3×3, affine, relu, con 3×3, affine, added to its input, then relu. dlib adds two
tensors of different shapes over their overlap (zero elsewhere): a halving block's two paths
differ by a row and a column, and by channels. The file is dlib's serialisation: layer records
in forward order, each named (``con_4``, ``affine_``, ...) and followed by its fields; integers
packed (a size byte, then little-endian bytes), floats as mantissa and exponent, tensors as
their four dimensions and little-endian float32 values. The reader takes the records in order
and checks each kind, size, stride and padding against the architecture.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DescriptorNetwork", "read_descriptor_network"]

CHIP_SIZE = 150
_LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))  # (channels, blocks); every level but the first halves
_RECORDS = ("input_rgb_image_sized", "con_4", "affine_", "max_pool_2", "avg_pool_2", "fc_2")


class _Affine(nn.Module):
    """dlib's affine layer (a batch norm folded at training's end): per channel x * gamma + beta."""

    def __init__(self, params: np.ndarray) -> None:
        super().__init__()
        gamma, beta = torch.from_numpy(params.copy()).view(2, -1)
        self.register_buffer("gamma", gamma.view(1, -1, 1, 1))
        self.register_buffer("beta", beta.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


class _Block(nn.Module):
    def __init__(self, first: nn.Conv2d, first_affine: _Affine, second: nn.Conv2d, second_affine: _Affine,
                 halves: bool) -> None:
        super().__init__()
        self.first, self.first_affine, self.second, self.second_affine = first, first_affine, second, second_affine
        self.halves = halves

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second_affine(self.second(F.relu(self.first_affine(self.first(x)))))
        return F.relu(_add_overlapping(y, F.avg_pool2d(x, 2, 2) if self.halves else x))


def _add_overlapping(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the shapes' overlap, each tensor zero-padded to the larger shape."""
    shape = [max(m, n) for m, n in zip(a.shape, b.shape)]

    def padded(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))
    return padded(a) + padded(b)


class DescriptorNetwork(nn.Module):
    """The network; `describe` takes dlib's 150×150 face chips."""

    def __init__(self, mean_rgb: tuple[float, float, float], stem: nn.Conv2d, stem_affine: _Affine,
                 blocks: list[_Block], fc: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem, self.stem_affine = stem, stem_affine
        self.blocks = nn.Sequential(*blocks)
        self.fc = fc

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """N×3×150×150 float RGB levels (0..255) -> N×128 descriptors."""
        x = (chips - self.mean_rgb) / 256.0
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, 2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))

    @torch.inference_mode()
    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        """150×150×3 uint8 RGB chips (dlib.get_face_chip's) -> N×128 float32 descriptors."""
        pixels = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
        return self(pixels).numpy()


class _Reader:
    """dlib's serialisation, read forward from one record to the next."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        # Where each kind's next record starts (-1: none left); each search goes on from the last.
        self._ahead = {name: data.find(_string(name)) for name in _RECORDS}

    def next_record(self) -> str:
        """Move past the name of the next record of a kind in _RECORDS; return it."""
        for name, at in self._ahead.items():
            if 0 <= at < self.at:
                self._ahead[name] = self.data.find(_string(name), self.at)
        found = [(at, name) for name, at in self._ahead.items() if at >= self.at]
        if not found:
            raise ValueError(f"the file ends (byte {self.at}) before the network does")
        at, name = min(found)
        self.at = at + len(_string(name))
        return name

    def integer(self) -> int:
        head = self.data[self.at]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.at + 1:self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if head & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        return math.ldexp(mantissa, self.integer())

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor version {version} at byte {self.at}, not 2")
        shape = tuple(self.integer() for _ in range(4))
        count = math.prod(shape)
        if self.at + 4 * count > len(self.data):
            raise ValueError(f"a tensor of {count} values at byte {self.at} runs past the file's end")
        values = np.frombuffer(self.data, "<f4", count, self.at).reshape(shape)
        self.at += 4 * count
        return values


def _string(text: str) -> bytes:
    """A string as dlib writes it: its packed length, then its bytes."""
    length = len(text).to_bytes(max(1, (len(text).bit_length() + 7) // 8), "little")
    return bytes([len(length)]) + length + text.encode()


def read_descriptor_network(path: Path) -> DescriptorNetwork:
    """The network in dlib's model file `path`. Raises ValueError for a file that is not it."""
    reader = _Reader(path.read_bytes())

    def record(kind: str) -> None:
        found = reader.next_record()
        if found != kind:
            raise ValueError(f"{path.name}: a {found} record where the network has {kind} (byte {reader.at})")

    def convolution(inputs: int, outputs: int, size: int, stride: int) -> nn.Conv2d:
        record("con_4")
        params = reader.tensor().reshape(-1)
        filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
        if (filters, rows, cols, stride_y, stride_x) != (outputs, size, size, stride, stride) or pad_y != pad_x \
                or params.size != outputs * inputs * size * size + outputs:
            raise ValueError(f"{path.name}: convolution {filters}×{rows}×{cols} /{stride_y} with {params.size} "
                             f"values where the network has {outputs}×{size}×{size} /{stride} from {inputs} channels")
        conv = nn.Conv2d(inputs, outputs, size, stride, padding=pad_y)
        weight, bias = np.split(params, [outputs * inputs * size * size])
        conv.weight.data = torch.from_numpy(weight.reshape(outputs, inputs, size, size).copy())
        conv.bias.data = torch.from_numpy(bias.copy())
        return conv

    def affine(channels: int) -> _Affine:
        record("affine_")
        params = reader.tensor().reshape(-1)
        if params.size != 2 * channels:
            raise ValueError(f"{path.name}: an affine layer of {params.size // 2} channels where the network has "
                             f"{channels}")
        return _Affine(params)

    def pooling(kind: str, expected: tuple[int, ...]) -> None:
        record(kind)
        found = tuple(reader.integer() for _ in range(6))  # rows, cols, stride y, stride x, padding y, padding x
        if found != expected:
            raise ValueError(f"{path.name}: pooling {found} where the network has {expected}")

    record("input_rgb_image_sized")
    mean_rgb = (reader.real(), reader.real(), reader.real())
    if (reader.integer(), reader.integer()) != (CHIP_SIZE, CHIP_SIZE):
        raise ValueError(f"{path.name}: the network does not take {CHIP_SIZE}×{CHIP_SIZE} chips")
    stem, stem_affine = convolution(3, 32, 7, 2), affine(32)
    pooling("max_pool_2", (3, 3, 2, 2, 0, 0))
    blocks, inputs = [], 32
    for level, (channels, count) in enumerate(_LEVELS):
        for index in range(count):
            halves = level > 0 and index == 0
            layers = (convolution(inputs, channels, 3, 2 if halves else 1), affine(channels),
                      convolution(channels, channels, 3, 1), affine(channels))
            if halves:
                pooling("avg_pool_2", (2, 2, 2, 2, 0, 0))
            blocks.append(_Block(*layers, halves=halves))
            inputs = channels
    pooling("avg_pool_2", (0, 0, 1, 1, 0, 0))  # the whole picture
    record("fc_2")
    outputs, fc_inputs = reader.integer(), reader.integer()
    weights = reader.tensor()
    if (outputs, fc_inputs) != (128, inputs) or weights.shape != (inputs, 128, 1, 1):
        raise ValueError(f"{path.name}: fc {fc_inputs}→{outputs} where the network has {inputs}→128")
    fc = nn.Linear(inputs, 128, bias=False)
    fc.weight.data = torch.from_numpy(weights.reshape(inputs, 128).T.copy())
    return DescriptorNetwork(mean_rgb, stem, stem_affine, blocks, fc).eval().requires_grad_(False)
