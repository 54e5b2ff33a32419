"""dlib's face descriptor network (``dlib_face_recognition_resnet_model_v1.dat``, a 29-layer
ResNet) on onnxruntime, read from dlib's own model file: the same 128 numbers as dlib's
``face_recognition_model_v1``, with the GIL released. dlib's Python binding holds the GIL for the
whole network, which stalls every other stage's Python meanwhile: the restorer's stage among
them, whose GPU then waits for work. onnxruntime gives it up once for the whole network (torch
in eager mode would give it up and take it back at every operation, waiting each time behind
the other stages' Python).

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
and checks each kind, size, stride and padding against the architecture. The graph is built
once per model file and kept in vidface's cache (vidface.faces.onnx_graphs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vidface.faces.identity import CHIP_SIZE
from vidface.faces.onnx_graphs import cpu_session

__all__ = ["DescriptorNetwork", "descriptor_graph"]

_LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))  # (channels, blocks); every level but the first halves
_RECORDS = ("input_rgb_image_sized", "con_4", "affine_", "max_pool_2", "avg_pool_2", "fc_2")
_OPSET = 17
_GRAPH_FORMAT = "1"  # what `descriptor_graph` builds; a change makes the cached graphs anew


class DescriptorNetwork:
    """The network on onnxruntime: N×150×150×3 uint8 RGB chips (dlib.get_face_chip's) -> N×128
    float32 descriptors."""

    def __init__(self, path: Path) -> None:
        """The network of dlib's model file `path`, its graph built once and kept in vidface's cache
        (vidface.faces.onnx_graphs). Raises ValueError for a file that is not the network."""
        self._session = cpu_session("face-descriptor", path, _GRAPH_FORMAT, descriptor_graph)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        (descriptors,) = self._session.run(None, {"chips": np.ascontiguousarray(chips, dtype=np.uint8)})
        return descriptors


class _Graph:
    """The ONNX graph being built, layer after layer: its nodes, weights and the current
    tensor's name and shape (channels, rows, columns)."""

    def __init__(self) -> None:
        from onnx import TensorProto, helper

        self.nodes = [helper.make_node("Cast", ["chips"], ["pixels"], to=TensorProto.FLOAT),
                      helper.make_node("Transpose", ["pixels"], ["x0"], perm=[0, 3, 1, 2])]
        self.weights: list = []
        self.current, self.shape = "x0", (3, CHIP_SIZE, CHIP_SIZE)

    def weight(self, name: str, values: np.ndarray) -> str:
        from onnx import numpy_helper

        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(values), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, int, int] | None = None, **attributes) -> str:
        """Append `op` on `inputs`; its output becomes the current tensor (of `shape`, if it changes)."""
        from onnx import helper

        output = f"x{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        self.current, self.shape = output, shape or self.shape
        return output

    def serialised(self) -> bytes:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, "dlib_face_descriptor",
            [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["n", CHIP_SIZE, CHIP_SIZE, 3])],
            [helper.make_tensor_value_info(self.current, TensorProto.FLOAT, ["n", 128])], self.weights)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                                 ir_version=8).SerializeToString()


def _pooled(size: int, window: int, stride: int, padding: int = 0) -> int:
    return (size + 2 * padding - window) // stride + 1


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
        if self.at >= len(self.data):
            raise ValueError("the file ends inside a layer record")
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


def descriptor_graph(path: Path) -> bytes:
    """The network in dlib's model file `path` as an ONNX graph (serialised). Raises ValueError
    for a file that is not it."""
    reader = _Reader(path.read_bytes())
    graph = _Graph()

    def record(kind: str) -> None:
        found = reader.next_record()
        if found != kind:
            raise ValueError(f"{path.name}: a {found} record where the network has {kind} (byte {reader.at})")

    def convolution(outputs: int, size: int, stride: int) -> None:
        record("con_4")
        params = reader.tensor().reshape(-1)
        filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
        inputs, height, width = graph.shape
        if (filters, rows, cols, stride_y, stride_x) != (outputs, size, size, stride, stride) or pad_y != pad_x \
                or params.size != outputs * inputs * size * size + outputs:
            raise ValueError(f"{path.name}: convolution {filters}×{rows}×{cols} /{stride_y} with {params.size} "
                             f"values where the network has {outputs}×{size}×{size} /{stride} from {inputs} channels")
        kernel, biases = np.split(params, [outputs * inputs * size * size])
        layer = len(graph.nodes)
        names = (graph.weight(f"conv{layer}.weight", kernel.reshape(outputs, inputs, size, size)),
                 graph.weight(f"conv{layer}.bias", biases))
        graph.node("Conv", [graph.current, *names],
                   (outputs, _pooled(height, size, stride, pad_y), _pooled(width, size, stride, pad_x)),
                   kernel_shape=[size, size], strides=[stride, stride], pads=[pad_y] * 4)

    def affine() -> None:
        record("affine_")
        params = reader.tensor().reshape(-1)
        channels = graph.shape[0]
        if params.size != 2 * channels:
            raise ValueError(f"{path.name}: an affine layer of {params.size} values where the network has "
                             f"{channels} channels")
        gamma, beta = params.reshape(2, 1, channels, 1, 1)
        layer = len(graph.nodes)
        graph.node("Mul", [graph.current, graph.weight(f"affine{layer}.gamma", gamma)])
        graph.node("Add", [graph.current, graph.weight(f"affine{layer}.beta", beta)])

    def pooling(kind: str, expected: tuple[int, ...]) -> None:
        record(kind)
        found = tuple(reader.integer() for _ in range(6))  # rows, cols, stride y, stride x, padding y, padding x
        if found != expected:
            raise ValueError(f"{path.name}: pooling {found} where the network has {expected}")

    def padded(name: str, shape: tuple[int, int, int], to: tuple[int, int, int]) -> str:
        """`name` zero-padded at the end of each dimension to `to` (dlib's sums over overlaps)."""
        if shape == to:
            return name
        ends = [0] + [big - small for small, big in zip(shape, to)]
        pads = graph.weight(f"pads{len(graph.nodes)}", np.array([0, 0, 0, 0, *ends], dtype=np.int64))
        return graph.node("Pad", [name, pads], to)

    record("input_rgb_image_sized")
    mean_rgb = np.array([reader.real(), reader.real(), reader.real()], dtype=np.float32).reshape(1, 3, 1, 1)
    if (reader.integer(), reader.integer()) != (CHIP_SIZE, CHIP_SIZE):
        raise ValueError(f"{path.name}: the network does not take {CHIP_SIZE}×{CHIP_SIZE} chips")
    graph.node("Sub", [graph.current, graph.weight("mean_rgb", mean_rgb)])
    graph.node("Div", [graph.current, graph.weight("scale", np.array(256.0, dtype=np.float32))])
    convolution(32, 7, 2)
    affine()
    graph.node("Relu", [graph.current])
    pooling("max_pool_2", (3, 3, 2, 2, 0, 0))
    graph.node("MaxPool", [graph.current], (32, *(_pooled(side, 3, 2) for side in graph.shape[1:])),
               kernel_shape=[3, 3], strides=[2, 2])
    for level, (channels, count) in enumerate(_LEVELS):
        for index in range(count):
            halves = level > 0 and index == 0
            block_input, input_shape = graph.current, graph.shape
            convolution(channels, 3, 2 if halves else 1)
            affine()
            graph.node("Relu", [graph.current])
            convolution(channels, 3, 1)
            affine()
            main, main_shape = graph.current, graph.shape
            skip, skip_shape = block_input, input_shape
            if halves:
                pooling("avg_pool_2", (2, 2, 2, 2, 0, 0))
                skip_shape = (input_shape[0], *(_pooled(side, 2, 2) for side in input_shape[1:]))
                skip = graph.node("AveragePool", [block_input], skip_shape, kernel_shape=[2, 2], strides=[2, 2])
            total = tuple(max(a, b) for a, b in zip(main_shape, skip_shape))
            graph.node("Add", [padded(main, main_shape, total), padded(skip, skip_shape, total)], total)
            graph.node("Relu", [graph.current])
    pooling("avg_pool_2", (0, 0, 1, 1, 0, 0))  # the whole picture
    graph.node("GlobalAveragePool", [graph.current], (graph.shape[0], 1, 1))
    graph.node("Flatten", [graph.current], axis=1)
    record("fc_2")
    outputs, inputs = reader.integer(), reader.integer()
    weights = reader.tensor()
    if (outputs, inputs) != (128, graph.shape[0]) or weights.shape != (inputs, 128, 1, 1):
        raise ValueError(f"{path.name}: fc {inputs}→{outputs} where the network has {graph.shape[0]}→128")
    graph.node("MatMul", [graph.current, graph.weight("fc.weight", weights.reshape(inputs, 128))])
    return graph.serialised()
