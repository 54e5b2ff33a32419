"""How long a restore will take where the model is slow (a CPU), said before the first frame.

The faces are counted by the detector on frames sampled evenly over the range; the time per
face is measured on one batch through the loaded model (a warm-up batch, as the run's own
first one is). On a CPU the model is nearly all of a run's time, so faces times seconds per
face is the estimate; the progress bar counts the time left the same way, from the faces still
to come.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vidface.faces.detect import FaceDetector
    from vidface.models.osdface import OSDFace
    from vidface.plan import Plan

SAMPLE_FRAMES = 12
PREVIEW_SECONDS = 120.0  # a run longer than this gets a suggested preview of about this much work


@dataclass(frozen=True)
class Estimate:
    """faces: expected faces to restore in the run's frames; seconds_per_face: measured;
    busiest: the sampled frame's index (in the input) with the most faces, for a preview."""

    frames: int
    faces: int
    seconds_per_face: float
    busiest: int

    @property
    def seconds(self) -> float:
        return self.faces * self.seconds_per_face

    def seconds_left(self, faces_done: int) -> float:
        return max(0, self.faces - faces_done) * self.seconds_per_face


def sampled_faces(plan: Plan, detector: FaceDetector, samples: int = SAMPLE_FRAMES) -> tuple[int, int]:
    """(faces expected in the plan's frames, the sampled frame with the most faces), from the
    detector on up to `samples` frames spread evenly over the range."""
    from vidface.io.decode import decode_frames

    if plan.frame_count <= 0:
        return 0, plan.first_frame
    pts = plan.info.video.pts
    picks = sorted({int(i) for i in np.linspace(plan.first_frame, plan.stop_frame - 1, min(samples, plan.frame_count))})
    counts = {}
    for index in picks:
        frame = next(iter(decode_frames(plan.info.path, start_pts=pts[index], stop_pts=pts[index] + 1)), None)
        if frame is not None:
            counts[index] = len(detector.detect(frame.to_rgb()))
    if not counts:
        return 0, plan.first_frame
    busiest = max(counts, key=lambda index: counts[index])
    return round(sum(counts.values()) / len(counts) * plan.frame_count), busiest


def seconds_per_face(model: OSDFace, batch_size: int) -> float:
    """Seconds per face of one batch of `batch_size` faces through `model`."""
    import torch

    crops = torch.full((batch_size, 3, model.face_size, model.face_size), 0.5)
    start = time.perf_counter()
    with torch.inference_mode():
        model.restore(crops)
    return (time.perf_counter() - start) / batch_size


def estimate(plan: Plan, detector: FaceDetector, model: OSDFace, batch_size: int) -> Estimate:
    faces, busiest = sampled_faces(plan, detector)
    return Estimate(plan.frame_count, faces, seconds_per_face(model, batch_size), busiest)


def duration(seconds: float) -> str:
    """'2 h 05 min', '7 min 30 s', '45 s'."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def describe(found: Estimate, plan: Plan, device: str) -> str:
    """One line: how long, from what, and a preview to try first when the run is long."""
    line = (f"restoring on the {device} takes about {duration(found.seconds)}: ~{found.faces} faces in "
            f"{found.frames} frames at {found.seconds_per_face:.1f} s per face (measured)")
    if found.seconds <= PREVIEW_SECONDS or found.faces == 0:
        return line
    video = plan.info.video
    rate = float(video.average_rate or 25)
    faces_per_frame = found.faces / max(found.frames, 1)
    frames = max(1, int(PREVIEW_SECONDS / (faces_per_frame * found.seconds_per_face)))
    start = float((video.pts[found.busiest] - video.pts[0]) * video.time_base)
    return line + (f"; to see a preview first (about {duration(PREVIEW_SECONDS)}), add "
                   f"--start {start:.1f} --duration {max(frames / rate, 1 / rate):.2f}")
