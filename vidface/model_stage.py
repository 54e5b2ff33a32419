"""The restorer's model stage: each tracked frame's faces aligned and cut, restored in batches
gathered across frames and faces, and pasted back (`vidface.restore.face_restorer` runs it on a
thread of its own, between the faces stage and the encoder).

Frames come in as `FrameWork` records, in order, and leave in order once all their faces are
restored: at most `MAX_WAITING_FRAMES` wait for a batch to fill. While the model still loads,
up to `LOADING_BUFFER_BYTES` of tracked frames are taken in, so decoding and detection go on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vidface.config import Settings
from vidface.devices import to_device
from vidface.faces.align import FaceCrop, face_crop, warp_face
from vidface.faces.hdr import FaceColour, face_colour
from vidface.faces.parsing import FaceParser
from vidface.faces.paste import Pasted, paste_faces
from vidface.faces.track import TrackedFace
from vidface.io.blend import BLEND_CONTEXT
from vidface.io.frames import Frame
from vidface.models.options import device_memory_error
from vidface.models.temporal import CropRow, TemporalStabilizer

if TYPE_CHECKING:
    # torch is imported where a stage first needs it: on a CPU, decoding and detection start
    # while the model's thread imports it; diffusers, where the model loads.
    import torch

    from vidface.faces.torch_warp import FrameUploader
    from vidface.models.osdface import OSDFace
    from vidface.restore import RestoreStats

__all__ = ["LOADING_BUFFER_BYTES", "MAX_WAITING_FRAMES", "FrameWork", "restore_batch", "run_model"]


MAX_WAITING_FRAMES = 32
"""Frames the batcher may hold while it waits for more faces to fill a batch: past this (for
example a long stretch without faces after one face), the partial batch is run."""


LOADING_BUFFER_BYTES = 256 << 20
"""RGB picture bytes of tracked frames the model stage takes in while the model still loads,
so decoding, detection and tracking go on meanwhile instead of stopping once the queues are
full (importing diffusers alone takes several seconds): 97 frames of 720p, 43 of 1080p (of a deep
or HDR picture, only the part around its faces is held, in 16-bit RGB for a deep one)."""


@dataclass(eq=False)
class FrameWork:
    """One frame on its way through the model: its tracked faces, their crops and results.

    rgb: the upright RGB faces are cut from and pasted into (None without faces): uint8, or
    uint16 for a deep frame (`Frame.deep`); the whole picture, or the part of it the faces reach
    (as `vidface.restore`'s faces stage converts it), whose top-left pixel is frame pixel
    `origin` (x, y). faces and rows: one per tracked face; ended: track ids that ended just
    before this frame (their temporal state is dropped once this frame's batch is done). Filled in by the model stage, which knows the
    model's face size: placements (in rgb's pixels) and crops (aligned crops, one per face), and
    restored (the model's outputs) and masks (their paste masks in crop space, or None for the
    fixed square of vidface.faces.paste.crop_mask) as batches finish. With OpenCV: crops and
    restored uint8 (uint16 for a deep frame) RGB size×size×3 arrays, masks size×size float32
    arrays in [0, 1]; with the faces on the device: `on_device` the frame's RGB there, crops and
    restored float 3×size×size tensors in [0, 1], masks size×size tensors; on a GPU,
    `restored_event` marks the end of the batch that restored its last face (on the model's
    stream), which the paste waits for.
    """

    frame: Frame
    rgb: np.ndarray | None
    faces: list[TrackedFace]
    rows: list[CropRow]
    ended: list[int]
    origin: tuple[int, int] = (0, 0)
    placements: list[FaceCrop] = field(default_factory=list)
    crops: list[np.ndarray | torch.Tensor] = field(default_factory=list)
    restored: list[np.ndarray | torch.Tensor] = field(default_factory=list)
    masks: list[np.ndarray | torch.Tensor | None] = field(default_factory=list)
    on_device: torch.Tensor | None = None
    restored_event: torch.cuda.Event | None = None
    order: int | None = None
    """Where the work stands among the frames the stabiliser knows (`CropRow.frame`), where that is
    not its frame's index: a frame passed whole between fields (`vidface.restore`'s --fields)."""

    @property
    def place(self) -> int:
        """`order`, or the frame's index."""
        return self.frame.index if self.order is None else self.order

    def cut_crops(self, size: int, uploader: FrameUploader | None) -> None:
        """Align every face to the size×size template and cut its crop from the frame: with
        OpenCV, or (given an uploader) on its device, from one upload of the frame."""
        self.placements = [face_crop(face.landmarks, size, self.frame.pixel_shape).within(*self.origin)
                           for face in self.faces]
        if uploader is None or not self.faces:
            self.crops = [warp_face(self.rgb, placement) for placement in self.placements]
        else:
            from vidface.faces.torch_warp import warp_faces

            self.on_device = uploader.upload(self.rgb)
            self.crops = list(warp_faces(self.on_device, self.placements))

    def paste(self, stream: torch.cuda.Stream | None = None) -> Pasted:
        """The restored faces pasted into the frame, where the crops were cut: the patch they reach
        (in frame pixels). stream: on a GPU, the paste's own stream (`stage_stream`), which waits
        for the faces' batch alone; the paste's copy to the host ends its work there."""
        if self.on_device is None:
            pasted = paste_faces(self.rgb, list(zip(self.restored, self.placements)), self.masks,
                                 context=BLEND_CONTEXT)
        else:
            import torch

            from vidface.faces.torch_warp import paste_faces as paste_faces_on_device

            with torch.cuda.stream(stream):
                if stream is not None and self.restored_event is not None:
                    stream.wait_event(self.restored_event)
                masks = None if self.masks[0] is None else torch.stack(self.masks)
                pasted = paste_faces_on_device(self.on_device, torch.stack(self.restored), self.placements, masks,
                                               context=BLEND_CONTEXT)
        x, y = self.origin
        regions = [None if region is None else (region[0] + x, region[1] + y, region[2] + x, region[3] + y)
                   for region in pasted.regions]
        return pasted._replace(origin=(pasted.origin[0] + x, pasted.origin[1] + y), regions=regions)

    @property
    def done(self) -> bool:
        return len(self.restored) == len(self.faces)


def run_model(work: Iterator[FrameWork], model: OSDFace | Future[OSDFace], settings: Settings,
               parser: FaceParser | None, counters: RestoreStats,
               crops_device: str | None) -> Iterator[FrameWork]:
    """Cut the crops of `work` (on `crops_device`, else with OpenCV) and restore them in batches
    gathered across frames and faces; yield each frame, in order, once all its faces are
    restored. Waits here for a model that is still loading (the wait is added to
    counters.model_wait)."""
    if isinstance(model, Future):
        start = time.perf_counter()
        loaded = _load_end(model)
        work = itertools.chain(_while_loading(work, model), work)
        model = model.result()
        counters.model_wait += max(0.0, loaded() - start)
    import torch  # imported by now, with the model (this daemon thread must not be the one to import it)

    stabilizer = TemporalStabilizer(settings.temporal, forget_stale=False)
    batch_size = model.batch_size
    waiting: deque[FrameWork] = deque()  # frames in order, oldest first
    queued: list[tuple[FrameWork, int]] = []  # (frame, face index) not yet restored
    ending: deque[tuple[int, list[int]]] = deque()  # (place, track ids that ended before it)

    def run(count: int) -> None:
        batch, queued[:] = queued[:count], queued[count:]
        crops = [item.crops[i] for item, i in batch]
        images = torch.stack(crops) if crops_device is not None else _host_crops(np.stack(crops), model.device)
        colour = face_colour(batch[0][0].frame.video)  # a video's frames share their colour coding
        # Whole 8-bit levels of SDR faces, as the model learnt from: its code choice is discrete,
        # and would turn a fraction of a level into a different face.
        images = colour.to_model(images).mul_(255).round_().div_(255)
        rows = [item.rows[i] for item, i in batch]
        deep = any(item.rgb.dtype == np.uint16 for item, _ in batch)
        started = time.perf_counter()
        try:
            restored = restore_batch(model, stabilizer, parser, images, rows, on_host=crops_device is None, deep=deep,
                                colour=colour)
        except torch.OutOfMemoryError:
            raise device_memory_error(model.device, model.batch_size) from None
        if crops_device is not None and torch.device(crops_device).type == "cuda":
            finished = torch.cuda.Event()
            finished.record()
            for item, _ in batch:
                item.restored_event = finished
        counters.model_seconds += time.perf_counter() - started
        counters.model_faces += len(batch)
        for (item, _), (face, mask) in zip(batch, restored):
            item.restored.append(face)
            item.masks.append(mask)

    def forget_ended() -> None:
        # An ended track has no rows from its end frame on: forget it once every earlier row ran.
        oldest = queued[0][0].place if queued else None
        while ending and (oldest is None or ending[0][0] <= oldest):
            stabilizer.forget(ending.popleft()[1])

    uploader = None
    if crops_device is not None:
        from vidface.faces.torch_warp import FrameUploader

        uploader = FrameUploader(torch.device(crops_device))
    for item in work:
        item.cut_crops(model.face_size, uploader)
        waiting.append(item)
        if item.ended:
            ending.append((item.place, item.ended))
        queued.extend((item, i) for i in range(len(item.crops)))
        while len(queued) >= batch_size:
            run(batch_size)
        if queued and len(waiting) > MAX_WAITING_FRAMES:
            run(len(queued))
        forget_ended()
        while waiting and waiting[0].done:
            yield waiting.popleft()
    while queued:
        run(min(batch_size, len(queued)))
    forget_ended()
    yield from waiting


def _host_crops(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    """N×S×S×3 crops cut on the host (uint8, or uint16 from a deep frame) as N×3×S×S float RGB in
    [0, 1] on `device`; 16-bit crops travel as float32, torch having few GPU kernels for uint16."""
    import torch

    if crops.dtype == np.uint16:
        return to_device(crops.astype(np.float32) / 65535, device, torch.float32).permute(0, 3, 1, 2)
    return to_device(crops, device, torch.uint8).permute(0, 3, 1, 2).float().div_(255)


def _load_end(model: Future[OSDFace]) -> Callable[[], float]:
    """When (perf_counter) `model` finished loading, for the caller to read once it has its result.
    Timed as the Future completes, not when a stage next looks: a stage that is waiting for frames
    from upstream when the model arrives was not waiting for the model."""
    ended: list[float] = []
    noted = threading.Event()

    def note(_: Future) -> None:
        ended.append(time.perf_counter())
        noted.set()

    model.add_done_callback(note)  # runs at once where the model has loaded already

    def read() -> float:
        noted.wait()  # the callback runs just after result() is released
        return ended[0]
    return read


def _while_loading(work: Iterator[FrameWork], model: Future[OSDFace]) -> list[FrameWork]:
    """The frames taken from `work` until `model` is loaded (checked after each frame), `work`
    ends or their RGB pictures (8-bit for a frame without faces) reach LOADING_BUFFER_BYTES."""
    taken: list[FrameWork] = []
    size = 0
    while not model.done() and size < LOADING_BUFFER_BYTES:
        item = next(work, None)
        if item is None:
            break
        taken.append(item)
        size += item.rgb.nbytes if item.rgb is not None else 3 * item.frame.video.width * item.frame.video.height
    return taken


def restore_batch(model: OSDFace, stabilizer: TemporalStabilizer, parser: FaceParser | None, images: torch.Tensor,
             rows: list[CropRow], on_host: bool, deep: bool = False, colour: FaceColour = FaceColour()
             ) -> list[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None]]:
    """B×3×S×S float RGB crops in [0, 1] (as the model sees them: `FaceColour.to_model`) ->
    B (restored face, paste mask) pairs, stabilised over time; the mask (S×S in [0, 1]) is the
    parsed face of the restored crop, or None without a parser. The faces are coded back as
    `colour` codes them, in whole 8-bit levels, or 16-bit levels for `deep` frames. on_host: as
    S×S×3 uint8 (uint16 for deep) RGB and float32 arrays; else tensors on the model's device
    (3×S×S float RGB in [0, 1] and S×S)."""
    import torch

    distances = stabilizer.stabilize_distances(model.code_distances(images), rows)
    prompt = model.prompt_from_distances(distances)
    clean = stabilizer.blend_latents(model.denoise(model.encode(images), prompt), rows)
    restored = model.decode(clean)
    masks = None if parser is None else stabilizer.smooth_masks(parser.face_masks(restored), rows)
    restored = colour.from_model(restored)
    top = 65535 if deep else 255
    levels = restored.mul(top).round_()  # whole levels either way, so both pastes get the same faces
    if on_host:
        levels = levels.permute(0, 2, 3, 1).cpu()
        restored = levels.to(torch.uint16 if deep else torch.uint8).numpy()
        masks = None if masks is None else masks.cpu().numpy()
    else:
        restored = levels.div_(top)
    return list(zip(restored, [None] * len(restored) if masks is None else masks))
