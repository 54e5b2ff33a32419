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
detection go ahead meanwhile, the model stage (:mod:`vidface.model_stage`) holding up to
``LOADING_BUFFER_BYTES`` of tracked frames until the model is there.

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
import logging
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from vidface.config import Settings
from vidface.devices import stage_stream
from vidface.errors import InputError
from vidface.faces.align import face_crop, warp_source_box
from vidface.faces.detect import FaceDetector
from vidface.faces.export import face_record
from vidface.faces.hdr import face_colour, sdr_rgb
from vidface.faces.parsing import FaceParser, parser_for
from vidface.faces.paste import patch_box
from vidface.faces.options import detector_for
from vidface.faces.track import TrackedFace, track_faces
from vidface.io.blend import BLEND_CONTEXT, editable
from vidface.io.frames import Frame, RGBFrame
from vidface.io.interlace import (field_frames, field_parities, in_field, in_frame_rows, splits_into_fields,
                                  weave)
from vidface.model_stage import FrameWork, run_model
from vidface.models.options import device_name
from vidface.models.temporal import CropRow, landmark_motion, landmark_shape_change
from vidface.plan import FrameProcessor
from vidface.workers import QUEUE_FRAMES, in_background

if TYPE_CHECKING:
    import torch

    from vidface.faces.selection import SelectedFaces
    from vidface.models.osdface import OSDFace

__all__ = ["FaceChoice", "RestoreStats", "face_restorer"]

log = logging.getLogger(__name__)


@dataclass
class RestoreStats:
    """Counters a progress display reads while a run goes on (written by the processor).

    kept: the frames (Frame.index in [first, stop)) that the current call of the processor
    hands on to the output, or None for all; a resumable run sets it per segment (`keep`), so
    the warm-up and look-ahead frames each segment processes and drops are not counted.
    model_wait: seconds from the model stage's start until the model had loaded (decoding and
    detection run meanwhile, as far as their queues allow; 0 where it loaded first).
    model_seconds, model_faces: time spent in model batches and the face crops they restored
    (warm-up and look-ahead faces too). crops_per_face: the crops a face of a frame takes: 2
    where the processor restores field by field (--fields).
    """

    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    tracks: set[int] = field(default_factory=set)
    kept: tuple[int, int] | None = None
    model_wait: float = 0.0
    model_seconds: float = 0.0
    model_faces: int = 0
    crops_per_face: int = 1

    def keep(self, first: int, stop: int) -> None:
        """Count only frames with index in [first, stop) from now on (fits
        `vidface.pipeline.transcode`'s on_segment)."""
        self.kept = (first, stop)

    def counts(self, index: int) -> bool:
        return self.kept is None or self.kept[0] <= index < self.kept[1]


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

    warned = False

    def process(frames: Iterator[Frame]) -> Iterator[Frame]:
        nonlocal warned
        first = next(frames, None)
        if first is None:
            return
        if not editable(first.video):
            raise InputError(f"IN's pixel format {first.video.format.name} cannot take restored faces without "
                             "changing the rest of the picture (16-bit RGB, 1-bit and palette pictures); convert "
                             "IN to rgb24 first")
        by_fields = settings.faces.fields and splits_into_fields(first)
        if settings.faces.fields and not by_fields and not warned:
            warned = True
            log.warning("--fields: IN's pictures are not interlaced (or are turned, or 4:2:0 of a height that is "
                        "no multiple of 4): faces are restored in whole frames")
        counters.crops_per_face = 2 if by_fields else 1
        frames = itertools.chain([first], frames)
        cancel = threading.Event()
        split: deque[FrameWork] = deque()  # frames split into fields, oldest first, to weave back
        faces_work = _face_work(frames, detector, settings, choice)
        work = in_background(_field_work(faces_work, split) if by_fields else faces_work, cancel, "faces")
        restored = in_background(run_model(work, model, settings, parser, counters, crops_device), cancel,
                                 "model", maxsize=QUEUE_FRAMES)
        paste_stream = None if crops_device is None else stage_stream(crops_device)
        try:
            pasted = (_pasted(item, paste_stream) for item in restored)
            for frame, faces, track_ids in (_woven(pasted, split) if by_fields else pasted):
                counted = counters.counts(frame.index)
                counters.frames += counted
                if counted and faces:
                    counters.frames_with_faces += 1
                    counters.faces += faces
                    counters.tracks.update(track_ids)
                yield frame
        finally:
            cancel.set()
            restored.close()
            work.close()

    return process


def _pasted(item: FrameWork, stream: torch.cuda.Stream | None) -> tuple[Frame, int, set[int]]:
    """The frame of `item` with its restored faces pasted, its count of faces and their tracks."""
    if not item.faces:
        return item.frame, 0, set()
    pasted = item.paste(stream)
    frame = item.frame.with_rgb(pasted.rgb, pasted.mask, pasted.origin)
    return (replace(frame, edits=_replaced_faces(frame, item.faces, pasted.regions)), len(item.faces),
            {row.track_id for row in item.rows})


def _field_work(work: Iterator[FrameWork], split: deque[FrameWork]) -> Iterator[FrameWork]:
    """Each frame with faces as its two fields (`field_frames`), the faces in each field's
    pixels, cut from the field alone; the frames split are appended to `split`. A frame without
    faces, or that is not interlaced, passes whole. The stabiliser sees a track's crops field
    after field, half the frame's motion apart."""
    for item in work:
        if not item.faces or not splits_into_fields(item.frame):
            item.order = 2 * item.frame.index
            item.rows = [replace(row, frame=item.order) for row in item.rows]
            yield item
            continue
        split.append(item)
        for order, (picture, parity) in enumerate(zip(field_frames(item.frame), field_parities(item.frame))):
            faces = [replace(face, box=in_field(face.box.reshape(2, 2), parity).ravel(),
                             landmarks=in_field(face.landmarks, parity)) for face in item.faces]
            rows = [CropRow(row.track_id, picture.index, row.motion / 2, reset=row.reset and order == 0,
                            returned=row.returned and order == 0) for row in item.rows]
            rgb, origin = _faces_part(picture, faces)
            yield FrameWork(picture, rgb, faces, rows, item.ended if order == 0 else [], origin)


def _woven(pasted: Iterator[tuple[Frame, int, set[int]]], split: deque[FrameWork]
           ) -> Iterator[tuple[Frame, int, set[int]]]:
    """The frames `_field_work` split, their fields woven back (`weave`), with the faces' edit
    records of the frame (each face's region the union of its fields'); other frames as they come."""
    for frame, faces, track_ids in pasted:
        # in order: a frame passed whole comes before the next one split, whose first field's
        # index is twice that one's
        if not split or frame.index < split[0].frame.index:
            yield frame, faces, track_ids
            continue
        item = split.popleft()
        second, second_faces, second_tracks = next(pasted)
        fields = (frame, second)
        regions: list[tuple[float, float, float, float] | None] = [None] * len(item.faces)
        for picture, parity in zip(fields, field_parities(item.frame)):
            for edit in picture.edits:
                index = next(i for i, face in enumerate(item.faces) if face.track_id == edit["track"])
                x0, y0, x1, y1 = edit["region"]
                top, bottom = in_frame_rows(y0, y1, parity)
                box = (x0, top, x1, bottom)
                old = regions[index]
                regions[index] = box if old is None else (min(old[0], box[0]), min(old[1], box[1]),
                                                         max(old[2], box[2]), max(old[3], box[3]))
        woven = weave(item.frame, fields, (bool(frame.edits), bool(second.edits)))
        edits = tuple({**face_record(face), "region": [int(v) for v in region]}
                      for face, region in zip(item.faces, regions) if region is not None)
        yield replace(woven, edits=edits), max(faces, second_faces), track_ids | second_tracks


def _replaced_faces(frame: Frame, faces: list[TrackedFace],
                    regions: list[tuple[int, int, int, int] | None]) -> tuple[dict, ...]:
    """Frame.edits for the pasted faces: each face's track record and its region, the pixels
    that may differ from the decoded frame (vidface.provenance)."""
    return tuple({**face_record(face), "region": list(frame.blend_reach(region))}
                 for face, region in zip(faces, regions) if region is not None)


def _face_work(frames: Iterator[Frame], detector: FaceDetector, settings: Settings,
               choice: FaceChoice) -> Iterator[FrameWork]:
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
        yield FrameWork(item.frame, rgb, faces, rows, ended, origin)


def _picture_rgb(item: RGBFrame, faces: list[TrackedFace]) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB a frame's faces are cut from and pasted into, and its top-left pixel (x, y) in the
    frame: the picture's own, in 16-bit RGB for a deep frame (a face restored into a 10-bit master
    keeps the master's precision), never the detector's view of an HDR picture (`sdr_rgb`). Such
    a picture is converted again (`_faces_part`). An SDR 8-bit frame's RGB is the detector's, whole."""
    frame = item.frame
    if not (frame.deep or face_colour(frame.video).is_hdr):
        return item.rgb, (0, 0)
    return _faces_part(frame, faces)


def _faces_part(frame: Frame, faces: list[TrackedFace]) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB of the part of `frame` its faces' crops and pastes reach (8-bit, or 16-bit for a
    deep frame), and its top-left pixel (x, y): the cost follows the faces, not the frame (a 4K
    frame's whole conversion would bound the faces thread near the model's rate)."""
    height, width = frame.upright_shape
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
