"""How long a restore will take where the model is slow (a CPU), said early in the run.

The faces are counted by the detector on frames sampled evenly over the range, on a thread of
their own while the run starts (where `--faces` chose some, the selection pass has counted them); the time per face is the run's own model time per face so far,
known once its first batch (a warm-up batch, with the first call's costs) is through. No frame
waits for the estimate and no batch is spent on it. On a CPU the model is nearly all of a run's
time, so faces times seconds per face is the estimate; the progress bar counts the time left the
same way, from the faces still to come.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vidface.faces.detect import FaceDetector
    from vidface.faces.selection import SelectedFaces
    from vidface.plan import Plan
    from vidface.restore import RestoreStats

SAMPLE_FRAMES = 12
SEQUENTIAL_FRAMES = 300
"""Up to this many frames in the range, the samples are read in one pass: seeking to each one
decodes from the keyframe before it, which in a short clip (one keyframe, or a few) costs many
times the whole range."""
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


def sampled_faces(plan: Plan, detector: FaceDetector, samples: int = SAMPLE_FRAMES,
                  sequential: int = SEQUENTIAL_FRAMES) -> tuple[int, int]:
    """(faces expected in the plan's frames, the sampled frame with the most faces), from the
    detector on up to `samples` frames spread evenly over the range, read in one pass where the
    range has at most `sequential` frames, else each by a seek."""
    from vidface.faces.hdr import sdr_rgb
    from vidface.io.decode import decode_frames

    if plan.frame_count <= 0:
        return 0, plan.first_frame
    pts = plan.info.video.pts
    picks = sorted({int(i) for i in np.linspace(plan.first_frame, plan.stop_frame - 1, min(samples, plan.frame_count))})
    wanted = {pts[index]: index for index in picks}
    if plan.frame_count <= sequential:
        every = decode_frames(plan.info.path, start_pts=pts[picks[0]], stop_pts=pts[picks[-1]] + 1,
                              video=plan.info.video)
        sampled = (frame for frame in every if frame.pts in wanted)
    else:
        sampled = (next(iter(decode_frames(plan.info.path, start_pts=pts[index], stop_pts=pts[index] + 1,
                                           video=plan.info.video)), None) for index in picks)
    counts = {wanted[frame.pts]: len(detector.detect(sdr_rgb(frame))) for frame in sampled if frame is not None}
    if not counts:
        return 0, plan.first_frame
    busiest = max(counts, key=lambda index: counts[index])
    return round(sum(counts.values()) / len(counts) * plan.frame_count), busiest


def selected_faces(plan: Plan, selected: SelectedFaces) -> tuple[int, int]:
    """(faces the selection pass chose in the plan's frames, the input index of the frame with the
    most of them): what `sampled_faces` estimates, counted."""
    if not selected.boxes:
        return 0, plan.first_frame
    busiest = max(selected.boxes, key=lambda index: len(selected.boxes[index]))
    return sum(len(boxes) for boxes in selected.boxes.values()), plan.first_frame + busiest


class RunEstimate:
    """The estimate of one run, made while it goes (start it just before the run): faces sampled
    on a background thread, or counted in `selected` (the faces `--faces` chose), seconds per face
    from `stats`, the counters the run's model updates."""

    def __init__(self, plan: Plan, detector: FaceDetector, stats: RestoreStats,
                 selected: SelectedFaces | None = None) -> None:
        self.plan = plan
        self.stats = stats
        self.faces_before = stats.faces  # the restorer's counters span every run it made
        self._sampling: Future[tuple[int, int]] = Future()
        if selected is not None:
            self._sampling.set_result(selected_faces(plan, selected))
            return
        # A daemon thread: a run that fails or is interrupted exits without waiting for the sample.
        threading.Thread(target=self._sample, args=(detector,), name="vidface-estimate", daemon=True).start()

    def _sample(self, detector: FaceDetector) -> None:
        try:
            self._sampling.set_result(sampled_faces(self.plan, detector))
        except BaseException as error:  # kept for result(); the run reports its own errors
            self._sampling.set_exception(error)

    def ready(self) -> Estimate | None:
        """The estimate once the faces are counted and a batch has been through the model
        (at once where the sample has no face); None before."""
        if not self._sampling.done() or self._sampling.exception() is not None:
            return None
        faces, busiest = self._sampling.result()
        if faces and not self.stats.model_faces:
            return None
        seconds = (self.stats.model_seconds / self.stats.model_faces * self.stats.crops_per_face
                   if self.stats.model_faces else 0.0)
        return Estimate(self.plan.frame_count, faces, seconds, busiest)

    def result(self) -> Estimate | None:
        """The estimate, waiting for the sample; None where sampling failed or no batch ran."""
        self._sampling.exception()
        return self.ready()

    def seconds_left(self) -> float | None:
        found = self.ready()
        return None if found is None else found.seconds_left(self.stats.faces - self.faces_before)


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
    if found.faces == 0:
        return f"no faces found on frames sampled over the range: little for the model to do on the {device}"
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
