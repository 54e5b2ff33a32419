"""Face crops and paste-back in torch, so that a GPU run keeps its frames on the device.

Each frame is uploaded once; the aligned crops are cut and the restored faces pasted back on the
device, matching :func:`vidface.faces.align.warp_face` and :func:`vidface.faces.paste.paste_faces`
(OpenCV) within one level of 255 (of 65535 for a deep frame).

A frame is H×W×3 RGB on the device: uint8, or for a deep frame (uint16 16-bit levels on the
host, `Frame.to_rgb(deep=True)`) an int16 tensor holding the same bits, since torch has few GPU
kernels for uint16; `upload` and the `Pasted` patches convert at the host's side.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidface.devices import stage_stream, to_device
from vidface.faces.align import PAD_GREY_RGB, Border, FaceCrop
from vidface.faces.paste import Pasted, crop_mask, frame_box, patch_box


class FrameUploader:
    """Frames to a device, one upload each. On a GPU the copies run on a stream of their own from
    a ring of pinned host buffers: queued behind earlier uploads alone, not behind the restorer's
    batch in flight, and the caller's stream waits for each copy before it uses the frame; a
    buffer is refilled only once its last copy is done. The buffers only grow (to a power of two
    of bytes), so pictures of changing sizes (the part of a frame around its faces) reuse them.
    On the CPU the frame itself (no copy: do not change it after)."""

    BUFFERS = 4

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._stream = stage_stream(device)
        self._buffers: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []
        self._next = 0

    def upload(self, rgb: np.ndarray) -> torch.Tensor:
        """H×W×3 RGB (uint8, or uint16 for a deep frame) -> the frame on the device (see the module)."""
        host = torch.from_numpy(_on_device(rgb))
        if self.device.type != "cuda":
            return host.to(self.device)
        size = host.numel() * host.element_size()
        if not self._buffers or len(self._buffers[0][0]) < size:
            capacity = 1 << (size - 1).bit_length()
            self._buffers = [(torch.empty(capacity, dtype=torch.uint8, pin_memory=True), None)
                             for _ in range(self.BUFFERS)]
        buffer, copied = self._buffers[self._next]
        if copied is not None:
            copied.synchronize()
        staged = buffer[:size].view(host.dtype).view(host.shape)
        staged.copy_(host)
        with torch.cuda.stream(self._stream):
            frame = staged.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        user = torch.cuda.current_stream(self.device)
        user.wait_event(done)
        frame.record_stream(user)  # made on the copy stream, used on the caller's
        self._buffers[self._next] = (buffer, done)
        self._next = (self._next + 1) % self.BUFFERS
        return frame


def warp_faces(frame: torch.Tensor, crops: Sequence[FaceCrop], border: Border = "reflect") -> torch.Tensor:
    """Cut every aligned face out of `frame` (an uploaded frame, any device) in one sampling pass:
    N×3×S×S float32 RGB in [0, 1] on the frame's device, S the crops' common size, in whole
    levels of the frame's depth like OpenCV's crops.

    Pixel for pixel :func:`vidface.faces.align.warp_face`: bilinear, and where a crop reaches
    outside the frame "reflect" mirrors it (OpenCV's BORDER_REFLECT_101), "constant" fills grey.
    """
    if border not in ("reflect", "constant"):
        raise ValueError(f"border must be 'reflect' or 'constant', got {border!r}")
    _check_frame(frame)
    sizes = {crop.size for crop in crops}
    if len(sizes) > 1:
        raise ValueError(f"all crops must have one size, got sizes {sorted(sizes)}")
    if not crops:
        return torch.zeros((0, 3, 0, 0), dtype=torch.float32, device=frame.device)
    size = sizes.pop()
    height, width = frame.shape[:2]
    source, top = _levels(frame.permute(2, 0, 1)[None])
    grey = _grey(frame.device) * (top / 255.0)
    if border == "constant":
        # Zero padding of (frame - grey), grey added back: outside pixels weigh in as grey.
        source = source - grey
    grid = _grid([crop.inverse for crop in crops], [(0, 0)] * len(crops), size, size, width, height,
                 frame.device)
    # One call: the faces' grids stacked into one tall grid over the one frame. With
    # align_corners=True "reflection" mirrors about the edge pixels' centres: BORDER_REFLECT_101.
    sampled = F.grid_sample(source, grid.reshape(1, len(crops) * size, size, 2), mode="bilinear",
                            padding_mode="zeros" if border == "constant" else "reflection", align_corners=True)
    faces = sampled.view(3, len(crops), size, size).transpose(0, 1).contiguous()
    if border == "constant":
        faces.add_(grey)
    return faces.clamp_(0.0, top).round_().div_(top)


def paste_faces(frame: torch.Tensor, restored: torch.Tensor, crops: Sequence[FaceCrop],
                masks: torch.Tensor | None = None, *, context: int | None = None) -> Pasted:
    """Blend restored crops into a frame on its device, as :func:`vidface.faces.paste.paste_faces`.

    frame: an uploaded frame; restored: N×3×S×S float RGB in [0, 1], one per crop, on the frame's
    device, pasted in order, later over earlier; masks: N×S×S float in [0, 1] in crop space, used
    times :func:`vidface.faces.paste.crop_mask`, or None for that square alone; context: as
    there (a patch is all that is copied to the host). Returns the same `Pasted` (numpy arrays on
    the host, copied once at the end; the patch uint8, or uint16 for a deep frame).
    """
    _check_frame(frame)
    height, width = frame.shape[:2]
    count = len(crops)
    size = crops[0].size if crops else restored.shape[-1]
    if restored.shape != (count, 3, size, size) or any(crop.size != size for crop in crops):
        raise ValueError(f"restored must be {count}x3xSxS for {count} crops of one size S, "
                         f"got {tuple(restored.shape)}")
    if masks is not None and masks.shape != (count, size, size):
        raise ValueError(f"masks must be {count}x{size}x{size} like the crops, got {tuple(masks.shape)}")
    boxes = [frame_box(crop, width, height) for crop in crops]
    regions: list[tuple[int, int, int, int] | None] = [None] * count
    placed = [index for index, box in enumerate(boxes) if box is not None]
    px0, py0, px1, py1 = patch_box([boxes[i] for i in placed], context, width, height)
    if not placed:
        patch = _on_host(frame[py0:py1, px0:px1].to("cpu", copy=True))
        return Pasted(patch, np.zeros(patch.shape[:2], np.float32), (px0, py0), regions)
    top = _levels(frame[:0])[1]
    square = _device_crop_mask(size, frame.device)
    face_masks = square[None] if masks is None else masks.float().clamp(0.0, 1.0) * square
    face_masks = face_masks.expand(count, size, size)
    if len(placed) < count:
        restored, face_masks = restored[placed], face_masks[placed]
    # Work inside the box all faces reach: the cost follows the faces' size, not the frame's.
    ux0, uy0 = min(boxes[i][0] for i in placed), min(boxes[i][1] for i in placed)
    ux1, uy1 = max(boxes[i][2] for i in placed), max(boxes[i][3] for i in placed)
    # Every face sampled at once over a box of the largest face box's size, anchored at its own.
    box_width = max(boxes[i][2] - boxes[i][0] for i in placed)
    box_height = max(boxes[i][3] - boxes[i][1] for i in placed)
    grid = _grid([crops[i].affine for i in placed], [boxes[i][:2] for i in placed], box_height, box_width,
                 size, size, frame.device)
    warped = F.grid_sample(restored.float(), grid, mode="bilinear", padding_mode="border",
                           align_corners=True).mul_(top)
    alphas = F.grid_sample(face_masks[:, None], grid, mode="bilinear", padding_mode="zeros",
                           align_corners=True)[:, 0]
    weighted = torch.zeros((3, uy1 - uy0, ux1 - ux0), dtype=torch.float32, device=frame.device)
    # 1 - Π (1 - mask) summed as in vidface.faces.paste: exact where the masks are tiny.
    area_mask = torch.zeros((uy1 - uy0, ux1 - ux0), dtype=torch.float32, device=frame.device)
    reaches = []
    for k, index in enumerate(placed):
        x0, y0, x1, y1 = boxes[index]
        alpha = alphas[k, :y1 - y0, :x1 - x0]
        reaches.append(_reach(alpha > 0, x0, y0))
        rows, cols = slice(y0 - uy0, y1 - uy0), slice(x0 - ux0, x1 - ux0)
        face = warped[k, :, :y1 - y0, :x1 - x0]
        weighted[:, rows, cols] = weighted[:, rows, cols] * (1.0 - alpha) + face * alpha
        area_mask[rows, cols] += alpha * (1.0 - area_mask[rows, cols])
    covered = area_mask > 0
    blended = _stored(torch.round(weighted / torch.where(covered, area_mask, 1.0)).clamp_(0, top), frame.dtype)
    rgb = frame[py0:py1, px0:px1].clone()
    union = (slice(uy0 - py0, uy1 - py0), slice(ux0 - px0, ux1 - px0))
    rgb[union] = torch.where(covered[..., None], blended.permute(1, 2, 0), rgb[union])
    mask = torch.zeros((py1 - py0, px1 - px0), dtype=torch.float32, device=frame.device)
    mask[union] = area_mask
    for index, (x0, y0, x1, y1, reached) in zip(placed, torch.stack(reaches).cpu().tolist()):
        regions[index] = (x0, y0, x1, y1) if reached else None
    return Pasted(_on_host(rgb.cpu()), mask.cpu().numpy(), (px0, py0), regions)


def _check_frame(frame: torch.Tensor) -> None:
    if frame.dtype not in (torch.uint8, torch.int16) or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be an HxWx3 uint8 (or deep, int16) tensor, got {frame.dtype} "
                         f"{tuple(frame.shape)}")


def _on_device(rgb: np.ndarray) -> np.ndarray:
    """A host frame as the samples its device tensor holds: uint8 as it is, uint16 as int16 bits."""
    if rgb.dtype == np.uint16:
        return rgb.view(np.int16)
    if rgb.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8 or uint16 RGB, got {rgb.dtype}")
    return rgb


def _on_host(samples: torch.Tensor) -> np.ndarray:
    """Device samples (on the host now) as the host frame's type: int16 bits back to uint16."""
    array = samples.numpy()
    return array.view(np.uint16) if array.dtype == np.int16 else array


def _levels(samples: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Frame samples as float32 levels, and the level of full intensity: 255, or 65535 for a
    deep frame's int16 bits (read as unsigned)."""
    if samples.dtype == torch.int16:
        return samples.float().remainder_(65536.0), 65535.0
    return samples.float(), 255.0


def _stored(levels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Whole float levels as a frame's samples: uint8, or the int16 bits of 16-bit levels."""
    if dtype == torch.int16:
        return levels.to(torch.int32).to(torch.int16)  # wraps above 32767: the uint16's bits
    return levels.to(dtype)


def _grid(affines: Sequence[np.ndarray], origins: Sequence[tuple[int, int]], height: int, width: int,
          source_width: int, source_height: int, device: torch.device) -> torch.Tensor:
    """N×height×width×2 grid for grid_sample(align_corners=True): output pixel (x, y) of item i
    samples the source at pixel affines[i] · (x + origins[i][0], y + origins[i][1])."""
    theta = np.stack(affines).astype(np.float64)
    theta[:, :, 2] += np.einsum("nij,nj->ni", theta[:, :, :2], np.asarray(origins, np.float64))
    # Pixel centres 0 and side-1 are -1 and 1 (align_corners=True): OpenCV's pixel coordinates.
    theta *= (2.0 / np.maximum([source_width - 1, source_height - 1], 1))[None, :, None]
    theta[:, :, 2] -= 1.0
    # Elementwise rather than a matmul, which may run in reduced precision (TF32) on a GPU.
    theta = to_device(theta, device, torch.float32)[:, None, None]
    xs = torch.arange(width, dtype=torch.float32, device=device).view(1, 1, -1, 1)
    ys = torch.arange(height, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return theta[..., 0] * xs + theta[..., 1] * ys + theta[..., 2]


def _reach(reached: torch.Tensor, x0: int, y0: int) -> torch.Tensor:
    """(x0, y0, x1, y1, any) of the box of the True pixels of `reached` (placed at x0, y0), as a
    tensor on its device, so that no face waits for a copy to the host."""
    rows, cols = reached.any(dim=1).to(torch.uint8), reached.any(dim=0).to(torch.uint8)
    first_row, first_col = rows.argmax(), cols.argmax()
    last_row, last_col = len(rows) - 1 - rows.flip(0).argmax(), len(cols) - 1 - cols.flip(0).argmax()
    return torch.stack([x0 + first_col, y0 + first_row, x0 + last_col + 1, y0 + last_row + 1, rows.any().long()])


@lru_cache(maxsize=8)
def _grey(device: torch.device) -> torch.Tensor:
    """The constant border's grey, 1×3×1×1 float32 levels on a device."""
    return torch.tensor(PAD_GREY_RGB, dtype=torch.float32, device=device).view(1, 3, 1, 1)


@lru_cache(maxsize=8)
def _device_crop_mask(size: int, device: torch.device) -> torch.Tensor:
    """:func:`vidface.faces.paste.crop_mask` on a device, uploaded once per size."""
    return torch.from_numpy(crop_mask(size).copy()).to(device)
