"""The face-restoring frame processor: track, align, restore in batches, blend over time, paste.

:func:`face_restorer` turns a loaded :class:`~vidface.models.osdface.OSDFace` and the run's
:class:`~vidface.config.Settings` into a :data:`~vidface.plan.FrameProcessor`::

    frames ─► track_faces (detect, Kalman, fixed-lag look-ahead) ─► align + warp crops
           ─► batches of crops across frames and faces ─► encode ─► code_distances
           ─► stabilize_distances ─► prompt_from_distances ─► denoise ─► blend_latents
           ─► decode ─► [face_masks ─► smooth_masks] ─► paste_faces ─► Frame.with_rgb

Detection/tracking, the model, and paste-back run on three threads joined by bounded queues,
so the model (a GPU) does not wait for detection, and memory is bounded whatever the length
of the video: the tracker holds ``faces.lag`` frames, the batcher at most
``batch_size + MAX_WAITING_FRAMES`` frames, each queue :data:`~vidface.workers.QUEUE_FRAMES`.
The model may still be loading when the processor starts (a ``Future``): decoding and
detection go ahead meanwhile, the model stage holding up to :data:`LOADING_BUFFER_BYTES` of
tracked frames until the model is there.

On a GPU the faces stay on the device (``faces_on_device``): each frame with faces is uploaded
once, its crops are cut and the restored faces pasted back there (vidface.faces.torch_warp);
on a CPU OpenCV does both.

Frames in which no face is tracked come out as the very same :class:`Frame` object, so their
pixels reach the encoder bit-exact. Each call of the processor starts afresh (new tracker,
new temporal state), so one processor serves several videos or segments in turn; the model
and the detector are shared between calls.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from vidface.config import Settings
from vidface.devices import stage_stream, to_device
from vidface.errors import InputError
from vidface.faces.align import FaceCrop, face_crop, warp_face, warp_source_box
from vidface.faces.detect import FaceDetector
from vidface.faces.export import face_record
from vidface.faces.hdr import FaceColour, face_colour, sdr_rgb
from vidface.faces.parsing import FaceParser, parser_for
from vidface.faces.paste import Pasted, paste_faces, patch_box
from vidface.faces.options import detector_for
from vidface.faces.track import TrackedFace, track_faces
from vidface.io.blend import BLEND_CONTEXT, editable
from vidface.io.frames import Frame, RGBFrame
from vidface.models.options import device_memory_error, device_name
from vidface.models.temporal import CropRow, TemporalStabilizer, landmark_motion, landmark_shape_change
from vidface.plan import FrameProcessor
from vidface.workers import QUEUE_FRAMES, in_background

if TYPE_CHECKING:
    # torch is imported where a stage first needs it: on a CPU, decoding and detection start
    # while the model's thread imports it; diffusers, where the model loads.
    import torch

    from vidface.faces.selection import SelectedFaces
    from vidface.faces.torch_warp import FrameUploader
    from vidface.models.osdface import OSDFace

__all__ = ["LOADING_BUFFER_BYTES", "MAX_WAITING_FRAMES", "FaceChoice", "RestoreStats", "face_restorer"]

MAX_WAITING_FRAMES = 32
"""Frames the batcher may hold while it waits for more faces to fill a batch: past this (for
example a long stretch without faces after one face), the partial batch is run."""

LOADING_BUFFER_BYTES = 256 << 20
"""RGB picture bytes of tracked frames the model stage takes in while the model still loads,
so decoding, detection and tracking go on meanwhile instead of stopping once the queues are
full (importing diffusers alone takes several seconds): 97 frames of 720p, 43 of 1080p (of a deep
or HDR picture, only the part around its faces is held, in 16-bit RGB for a deep one)."""


@dataclass
class RestoreStats:
    """Counters a progress display reads while a run goes on (written by the processor).

    kept: the frames (Frame.index in [first, stop)) that the current call of the processor
    hands on to the output, or None for all; a resumable run sets it per segment (`keep`), so
    the warm-up and look-ahead frames each segment processes and drops are not counted.
    model_wait: seconds from the model stage's start until the model had loaded (decoding and
    detection run meanwhile, as far as their queues allow; 0 where it loaded first).
    model_seconds, model_faces: time spent in model batches and the faces they restored
    (warm-up and look-ahead faces too).
    """

    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    tracks: set[int] = field(default_factory=set)
    kept: tuple[int, int] | None = None
    model_wait: float = 0.0
    model_seconds: float = 0.0
    model_faces: int = 0

    def keep(self, first: int, stop: int) -> None:
        """Count only frames with index in [first, stop) from now on (fits
        `vidface.pipeline.transcode`'s on_segment)."""
        self.kept = (first, stop)

    def counts(self, index: int) -> bool:
        return self.kept is None or self.kept[0] <= index < self.kept[1]


@dataclass(eq=False)
class _FrameWork:
    """One frame on its way through the model: its tracked faces, their crops and results.

    rgb: the upright RGB faces are cut from and pasted into (None without faces): uint8, or
    uint16 for a deep frame (`Frame.deep`); the whole picture, or the part of it the faces reach
    (`_picture_rgb`), whose top-left pixel is frame pixel `origin` (x, y). faces and rows: one
    per tracked face; ended: track ids that ended just before this frame (their temporal state is
    dropped once this frame's batch is done). Filled in by the model stage, which knows the
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


@dataclass
class FaceChoice:
    """The faces a processor restores in the file it runs on: those the selection pass selected
    there (vidface.faces.selection), or every face (None). Set per file, as Restorer.restore
    and the farm's workers do."""

    selected: SelectedFaces | None = None

    def keeps(self, frame: int, face: TrackedFace) -> bool:
        return self.selected is None or self.selected.selects(frame, face)


def face_restorer(model: OSDFace | Future[OSDFace], settings: Settings, *,
                  detector: FaceDetector | None = None, parser: FaceParser | None = None,
                  stats: RestoreStats | None = None, choice: FaceChoice | None = None,
                  faces_on_device: bool | None = None) -> FrameProcessor:
    """A FrameProcessor that restores every tracked face with `model`.

    model: loaded with settings.model's device and dtype, or a Future of it (still loading on
        another thread: the first call of the processor starts decoding and detection at once,
        and the model stage waits for the model; a loading error is raised from the processor).
    settings: faces (detection, tracking), temporal (stabilisation) and paste (the mask) are
        read; faces go to the model in batches of its batch_size (set where it loaded).
    detector: the face detector (default: the one settings.faces names, on settings.model's
        device for torch-based detectors); built once and shared by every call of the processor.
    parser: the face parser that makes each face's paste mask (default: with settings.paste.mask
        "parsing", one built from settings.paste on settings.model's device; with "box", none:
        the fixed feathered square). Its masks are smoothed over time per track
        (temporal.mask_momentum); built once and shared by every call of the processor.
    stats: counters updated as frames come out (frames, frames with faces, faces restored).
    choice: the faces to restore (default: every face).
    faces_on_device: cut the crops and paste the faces with torch on the model's device (default:
        on a GPU; on a CPU, OpenCV is faster).
    """
    device = device_name(settings.model.device)
    detector = detector or detector_for(settings.faces, device=device)
    parser = parser or parser_for(settings.paste, device)
    counters = stats if stats is not None else RestoreStats()
    choice = choice or FaceChoice()
    crops_device = device if (device != "cpu" if faces_on_device is None else faces_on_device) else None

    def process(frames: Iterator[Frame]) -> Iterator[Frame]:
        first = next(frames, None)
        if first is None:
            return
        if not editable(first.video):
            raise InputError(f"IN's pixel format {first.video.format.name} cannot take restored faces without "
                             "changing the rest of the picture (16-bit RGB, 1-bit and palette pictures); convert "
                             "IN to rgb24 first")
        frames = itertools.chain([first], frames)
        cancel = threading.Event()
        work = in_background(_face_work(frames, detector, settings, choice), cancel, "faces")
        restored = in_background(_run_model(work, model, settings, parser, counters, crops_device), cancel,
                                 "model", maxsize=QUEUE_FRAMES)
        paste_stream = None if crops_device is None else stage_stream(crops_device)
        try:
            for item in restored:
                counted = counters.counts(item.frame.index)
                counters.frames += counted
                if not item.faces:
                    yield item.frame
                    continue
                pasted = item.paste(paste_stream)
                if counted:
                    counters.frames_with_faces += 1
                    counters.faces += len(item.faces)
                    counters.tracks.update(row.track_id for row in item.rows)
                frame = item.frame.with_rgb(pasted.rgb, pasted.mask, pasted.origin)
                yield replace(frame, edits=_replaced_faces(frame, item.faces, pasted.regions))
        finally:
            cancel.set()
            restored.close()
            work.close()

    return process


def _replaced_faces(frame: Frame, faces: list[TrackedFace],
                    regions: list[tuple[int, int, int, int] | None]) -> tuple[dict, ...]:
    """Frame.edits for the pasted faces: each face's track record and its region, the pixels
    that may differ from the decoded frame (vidface.provenance)."""
    return tuple({**face_record(face), "region": list(frame.blend_reach(region))}
                 for face, region in zip(faces, regions) if region is not None)


def _face_work(frames: Iterator[Frame], detector: FaceDetector, settings: Settings,
               choice: FaceChoice) -> Iterator[_FrameWork]:
    """Track faces (with look-ahead), frame by frame, in order; keep those `choice` restores.
    A track whose face is gone ends (its temporal state is forgotten) once the tracker can no
    longer bring it back: after the re-identification window."""
    seen: dict[int, _Seen] = {}  # track id -> where and when its face was last
    decoded = (RGBFrame(frame, sdr_rgb(frame)) for frame in frames)
    for item, tracked in track_faces(decoded, detector, settings.faces):
        faces = [face for face in tracked if choice.keeps(item.frame.index, face)]
        present = {face.track_id for face in faces}
        ended = [track_id for track_id, last in seen.items()
                 if track_id not in present and item.frame.time - last.time > settings.faces.reid_window]
        for track_id in ended:
            del seen[track_id]
        rows = []
        for face in faces:
            last = seen.get(face.track_id)
            returned = last is not None and last.index < item.frame.index - 1
            rows.append(CropRow(face.track_id, item.frame.index, _motion(last, face, returned), returned=returned))
            seen[face.track_id] = _Seen(item.frame.index, item.frame.time, face.landmarks)
        rgb, origin = _picture_rgb(item, faces) if faces else (None, (0, 0))
        yield _FrameWork(item.frame, rgb, faces, rows, ended, origin)


def _picture_rgb(item: RGBFrame, faces: list[TrackedFace]) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB a frame's faces are cut from and pasted into, and its top-left pixel (x, y) in the
    frame: the picture's own, in 16-bit RGB for a deep frame (a face restored into a 10-bit master
    keeps the master's precision), never the detector's view of an HDR picture (`sdr_rgb`). Such
    a picture is converted again, so only the part the faces' crops and pastes reach is: the
    cost follows the faces, not the frame (a 4K frame's whole conversion would bound this thread
    near the model's rate). An SDR 8-bit frame's RGB is the detector's, whole."""
    frame = item.frame
    if not (frame.deep or face_colour(frame.video).is_hdr):
        return item.rgb, (0, 0)
    height, width = item.rgb.shape[:2]
    boxes = [warp_source_box(face_crop(face.landmarks, pixel_shape=frame.pixel_shape), width, height)
             for face in faces]
    # The paste's patch holds BLEND_CONTEXT pixels around the faces' boxes, which lie in these.
    box = patch_box(boxes, BLEND_CONTEXT, width, height)
    return frame.to_rgb(deep=frame.deep, box=box), box[:2]


@dataclass(frozen=True)
class _Seen:
    index: int
    time: float
    landmarks: np.ndarray


def _motion(last: _Seen | None, face: TrackedFace, returned: bool) -> float:
    """CropRow.motion: from the track's previous frame, or (returned) its shape change since the
    face was last seen."""
    if last is None:
        return 0.0
    measure = landmark_shape_change if returned else landmark_motion
    return measure(last.landmarks, face.landmarks, face.box)


def _run_model(work: Iterator[_FrameWork], model: OSDFace | Future[OSDFace], settings: Settings,
               parser: FaceParser | None, counters: RestoreStats,
               crops_device: str | None) -> Iterator[_FrameWork]:
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
    waiting: deque[_FrameWork] = deque()  # frames in order, oldest first
    queued: list[tuple[_FrameWork, int]] = []  # (frame, face index) not yet restored
    ending: deque[tuple[int, list[int]]] = deque()  # (frame index, track ids that ended before it)

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
            restored = _restore(model, stabilizer, parser, images, rows, on_host=crops_device is None, deep=deep,
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
        oldest = queued[0][0].frame.index if queued else None
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
            ending.append((item.frame.index, item.ended))
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


def _while_loading(work: Iterator[_FrameWork], model: Future[OSDFace]) -> list[_FrameWork]:
    """The frames taken from `work` until `model` is loaded (checked after each frame), `work`
    ends or their RGB pictures (8-bit for a frame without faces) reach LOADING_BUFFER_BYTES."""
    taken: list[_FrameWork] = []
    size = 0
    while not model.done() and size < LOADING_BUFFER_BYTES:
        item = next(work, None)
        if item is None:
            break
        taken.append(item)
        size += item.rgb.nbytes if item.rgb is not None else 3 * item.frame.video.width * item.frame.video.height
    return taken


def _restore(model: OSDFace, stabilizer: TemporalStabilizer, parser: FaceParser | None, images: torch.Tensor,
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
