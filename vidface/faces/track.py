"""Face tracking: a Kalman filter per face, Hungarian association, fixed-lag RTS smoothing.

`FaceTracker` takes one frame's detections at a time (or None on frames where the detector did
not run) and returns frames `lag` frames old (older while a face that a detector run missed
may have left), whose faces are smoothed with the past and with `lag` future frames.
`track_faces` is the streaming stage over decoded frames.

Each track's state is its box and five landmarks, positions and velocities (vidface.faces.motion).

A face that vanishes (hidden by a hand, or out of the frame) ends its track; one that appears
within `reid_window` seconds, looking like it (vidface.faces.identity) and where it could have
moved, is taken for its return and continues its track id. Apart from track ids, every face
carries an identity label: tracks that look like one person, across shot cuts and long
absences, share it. Labels count from 0 in the order people first appear.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

import numpy as np

from vidface.faces.assignment import min_cost_assignment
from vidface.faces.detect import Face, FaceDetector
from vidface.faces.geometry import box_iou
from vidface.faces.identity import SAME_PERSON_DISTANCE, FaceDescriber, People, descriptor_distance
from vidface.faces.motion import (DIM_Z, MotionFilter, Step, correct, face_size, measurement, predict, predicted, smoothed,
                                  start_filter)
from vidface.faces.options import FaceOptions
from vidface.faces.shots import ShotCutDetector

log = logging.getLogger(__name__)

_NO_MATCH = 1e6
REFRESH_HITS = 25  # a confirmed track's appearance is described again after this many detections
KEPT_DESCRIPTORS = 4  # a track's latest descriptors, compared with a face that may be its return
REID_REACH = 3.0  # face sizes per second a vanished face may have moved, beyond one face size

DETECT, REFINE = "detect", "refine"  # what FaceTracker.needs_detection asks of a frame


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """A face in one frame, in that frame's displayed pixels. box: float64 [x1, y1, x2, y2];
    landmarks: float64 5×2 (x, y), template order, smoothed; score: the detector's score (the
    track's last one where it was not detected); detected: whether the detector saw it in this
    frame (False: the tracker's prediction); identity: the person's label, shared by every
    track that looks like them, and descriptor: the track's latest appearance descriptor (None
    where faces are not described)."""

    track_id: int
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    detected: bool
    identity: int | None = None
    descriptor: np.ndarray | None = None


@dataclass(eq=False)
class _Track:
    track_id: int
    kf: MotionFilter
    steps: deque[Step]
    hits: int = 1
    misses: int = 0
    score: float = 0.0
    confirmed: bool = False
    first_miss: int | None = None  # frame of the first detector run that missed it since its last hit
    last_hit: Step | None = None  # its latest detected step (kept when the step list has moved on)
    ended: bool = False
    seen_at: float = 0.0  # time of its latest detection, in seconds
    descriptors: list[np.ndarray] = field(default_factory=list)  # its appearance, latest last
    described_hits: int = 0  # hits when it was last described
    born: int = 0  # its first frame
    returned: bool = False  # it continues a vanished track's id
    identity: int | None = None

    def z(self) -> np.ndarray:
        return self.kf.x[:DIM_Z, 0]


@dataclass(frozen=True, eq=False)
class _Vanished:
    """A confirmed track whose face vanished: what a face must look like, and be near, to be it."""

    track_id: int
    identity: int | None
    descriptors: list[np.ndarray]
    z: np.ndarray  # measurement vector at its last detection
    seen_at: float


@dataclass
class FaceTracker:
    """Multi-face tracker with fixed-lag smoothing. Call `update` once per frame, in order,
    even with no detections; it returns the frames that are now final."""

    config: FaceOptions = field(default_factory=FaceOptions)

    def __post_init__(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = -1  # index of the latest frame given to update
        self._emitted = -1  # index of the latest frame returned
        self._detected = -1  # index of the latest frame the detector ran on
        self._time = 0.0  # time of the latest frame given to update, in seconds
        self._vanished: list[_Vanished] = []
        self._people = People()

    # -- filter (vidface.faces.motion) -----------------------------------------------------
    def _new_track(self, face: Face, frame: int) -> _Track:
        kf, step = start_filter(face, frame, self.config)
        self._next_id += 1
        return _Track(self._next_id - 1, kf, deque([step]), score=face.score, confirmed=self.config.min_hits <= 1,
                      last_hit=step, born=frame)

    def _predict(self, track: _Track, frame: int) -> None:
        predict(track.kf, track.steps, frame, track.score, self.config)

    def _correct(self, track: _Track, face: Face) -> None:
        """Update `track`'s newest step with its detection `face`."""
        track.last_hit = correct(track.kf, track.steps, face, self.config)
        track.score, track.hits, track.misses, track.first_miss = face.score, track.hits + 1, 0, None
        track.confirmed = track.confirmed or track.hits >= self.config.min_hits
        track.seen_at = self._time

    def _born(self, face: Face, earlier: Callable[[int], list[Face]] | None) -> _Track:
        """A track for `face`, first seen in this frame. Where the detector skipped the frames
        just before (detect_every > 1), `earlier(frame)` runs it on them, newest first, back to
        its previous run: a face that appeared between two runs is tracked from the frame it
        appeared in, not from the next run."""
        history = [face]  # the face in consecutive frames, newest first
        frame = self._frame - 1
        while earlier is not None and frame > max(self._detected, self._emitted):
            match = self._same_face(measurement(history[-1]), self._untracked(earlier(frame), frame))
            if match is None:
                break
            history.append(match)
            frame -= 1
        first = self._frame - len(history) + 1
        track = self._new_track(history[-1], first)
        for offset, seen in enumerate(reversed(history[:-1]), start=1):
            self._predict(track, first + offset)
            self._correct(track, seen)
        return track

    def _untracked(self, faces: list[Face], frame: int, besides: _Track | None = None) -> list[Face]:
        """`faces` (detections in `frame`) less those that the states there of tracks other
        than `besides` take."""
        states = [step.x_post[:DIM_Z, 0] for track in self._tracks if track is not besides
                  for step in track.steps if step.frame == frame]
        _, unmatched = self._match(np.array(states), faces)
        return [faces[i] for i in unmatched]

    def _same_face(self, z: np.ndarray, candidates: list[Face]) -> Face | None:
        """The face among `candidates` (an adjacent frame's detections) that the face with
        measurement vector `z` is, within the association gates, or None."""
        pairs, _ = self._match(z[None], candidates)
        return candidates[pairs[0][1]] if pairs else None

    def fastest_motion(self) -> float:
        """The largest landmark speed of a live track, in face sizes per frame (0 if none)."""
        speeds = [np.linalg.norm(t.kf.x[DIM_Z + 4:, 0].reshape(5, 2), axis=1).max() / face_size(t.z())
                  for t in self._tracks if not t.ended]
        return float(max(speeds, default=0.0))

    def needs_detection(self, frames_since_detection: int) -> str | None:
        """What the next frame needs, `frames_since_detection` frames after the detector's last
        full run: DETECT (a full run) every `detect_every` frames and while a track is unsettled
        (not yet confirmed, so its motion is unknown; or missing its face since a run, so
        whether the face is gone is decided within the look-ahead); REFINE (the tracked faces
        read again where they are predicted, `predicted_faces`) while a face moves faster than
        `detect_motion`; None: prediction alone."""
        config = self.config
        unsettled = any(not t.ended and (not t.confirmed or t.first_miss is not None) for t in self._tracks)
        if frames_since_detection >= config.detect_every or unsettled:
            return DETECT
        if config.detect_motion is not None and self.fastest_motion() > config.detect_motion:
            return REFINE
        return None

    def predicted_faces(self) -> list[Face]:
        """Where the live tracks' faces will be in the next frame, on their motion model."""
        faces = []
        for track in self._tracks:
            if not track.ended:
                z = predicted(track.kf)
                faces.append(Face(z[:4].copy(), z[4:].reshape(5, 2).copy(), track.score))
        return faces

    # -- association ------------------------------------------------------------------------
    def _match(self, predicted: np.ndarray, faces: list[Face]) -> tuple[list[tuple[int, int]], list[int]]:
        """Hungarian matching of the tracks' predicted measurement vectors (N×14) and the
        detections on (1 - IoU) + normalised landmark distance, within the gates. Returns
        matched (track index, face index) pairs and unmatched face indices."""
        if not len(predicted) or not faces:
            return [], list(range(len(faces)))
        measured = np.stack([measurement(f) for f in faces])
        iou = box_iou(predicted[:, :4], measured[:, :4])
        sizes = np.array([face_size(z) for z in predicted])
        offsets = predicted[:, None, 4:].reshape(len(predicted), 1, 5, 2) - measured[None, :, 4:].reshape(1, len(faces), 5, 2)
        distance = np.linalg.norm(offsets, axis=3).mean(axis=2) / sizes[:, None]
        cost = (1.0 - iou) + distance
        allowed = (iou >= self.config.min_iou) & (distance <= self.config.max_landmark_distance)
        rows, cols = min_cost_assignment(np.where(allowed, cost, _NO_MATCH))
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]
        matched = {c for _, c in pairs}
        return pairs, [i for i in range(len(faces)) if i not in matched]

    # -- per frame --------------------------------------------------------------------------
    def update(self, faces: list[Face] | None, cut: bool = False,
               earlier: Callable[[int], list[Face]] | None = None,
               complete: bool = True, time: float | None = None,
               describe: Callable[[Face], np.ndarray] | None = None) -> list[tuple[int, list[TrackedFace]]]:
        """Advance one frame. faces: this frame's detections (frame pixels), or None where the
        detector did not run (tracks are predicted, no miss is counted). cut: this frame starts
        a new shot, so every track ends first. earlier: the detections of an earlier frame of
        this shot not yet returned, by index (the detector run on it now), so that a new face
        is looked for in the frames the detector skipped. complete: False where `faces` are
        only the tracked faces read again (REFINE): a track they miss counts a miss, but no
        track starts from them. time: the frame's time in seconds; describe: the appearance
        descriptor of one of this frame's faces (vidface.faces.identity). With both, a face that
        vanished can be re-identified. Returns (frame index, faces) for every frame that is now
        final: the frame `lag` frames back, when there is one, and the frames before it that
        waited for a missed face to be settled (`_settled`)."""
        self._frame += 1
        if time is not None:
            self._time = time
        if cut:
            for track in self._tracks:
                self._end(track)
            self._vanished.clear()  # where a face was says nothing about the next shot
        live = [t for t in self._tracks if not t.ended]
        for track in live:
            self._predict(track, self._frame)
        if faces is not None:
            pairs, unmatched = self._match(np.array([t.z() for t in live]), faces)
            for ti, fi in pairs:
                self._correct(live[ti], faces[fi])
                if describe is not None:
                    if self._young(live[ti]):
                        self._reidentify(live[ti], faces[fi], describe)
                    self._describe(live[ti], faces[fi], describe)
            matched_tracks = {ti for ti, _ in pairs}
            for ti, track in enumerate(live):
                if ti not in matched_tracks:
                    track.misses += 1
                    if track.first_miss is None:
                        track.first_miss = self._frame
                    if not track.confirmed or track.misses > self.config.max_misses:
                        self._end(track, earlier, reidentifiable=describe is not None)
            if complete:
                for fi in unmatched:
                    track = self._born(faces[fi], None if cut else earlier)
                    if describe is not None:
                        self._reidentify(track, faces[fi], describe)
                        self._describe(track, faces[fi], describe)  # confirmed on its first sight
                    self._tracks.append(track)
                self._detected = self._frame
        return self._release(min(self._frame - self.config.lag, self._settled()))

    def finish(self) -> list[tuple[int, list[TrackedFace]]]:
        """End every track and return the frames still held back."""
        for track in self._tracks:
            self._end(track)
        return self._release(self._frame)

    def _end(self, track: _Track, earlier: Callable[[int], list[Face]] | None = None,
             reidentifiable: bool = False) -> None:
        """End a track. Where the detector looked for the face after its last detection and did
        not find it, the face was gone: forget what the track predicted from there on. In the
        frames the detector skipped between its last hit and that miss, `earlier` (as for
        `update`) looks for the face: the track keeps those up to the last one it is found in.
        reidentifiable: its face vanished within a shot, so a face that returns may continue it."""
        if track.ended:
            return
        track.ended = True
        if reidentifiable and track.confirmed and track.descriptors:
            self._vanished.append(_Vanished(track.track_id, track.identity, track.descriptors,
                                            track.last_hit.x_post[:DIM_Z, 0].copy(), track.seen_at))
        first_miss, last = track.first_miss, track.last_hit
        if first_miss is not None:
            while track.steps and track.steps[-1].frame > last.frame:
                track.steps.pop()
            if earlier is not None:
                if not track.steps:  # the last hit's frame went out already; the search starts from it
                    track.steps.append(last)
                track.kf.x, track.kf.P = last.x_post.copy(), last.p_post.copy()
                frame = last.frame + 1
                while frame < first_miss and frame > self._emitted:
                    match = self._same_face(track.z(), self._untracked(earlier(frame), frame, besides=track))
                    if match is None:
                        break
                    self._predict(track, frame)
                    self._correct(track, match)
                    frame += 1
        if track.steps:
            track.steps[-1].gain = None

    # -- re-identification ------------------------------------------------------------------
    def _young(self, track: _Track) -> bool:
        """Whether `track` may still take a vanished track's id: none of its frames is out, nor
        goes out with this one, and it has not taken one yet. A face coming back into the
        frame is tried again on each detection while young, as it shows more of itself."""
        return not track.returned and track.born > self._frame - self.config.lag

    def _describe(self, track: _Track, face: Face, describe: Callable[[Face], np.ndarray]) -> None:
        """Describe a confirmed track's appearance from its detection `face` when it has no
        descriptor yet or REFRESH_HITS detections have passed since its last (then the
        person's gallery learns it too, once the track has its label)."""
        if not track.confirmed or (track.descriptors and track.hits - track.described_hits < REFRESH_HITS):
            return
        descriptor = describe(face)
        track.descriptors = [*track.descriptors, descriptor][-KEPT_DESCRIPTORS:]
        track.described_hits = track.hits
        if track.identity is not None:
            self._people.learn(track.identity, [descriptor])

    def _identify(self, track: _Track) -> None:
        """Label a described track as its first frame goes out (so a face coming back has had
        its young frames to take a vanished track's id and label)."""
        if track.identity is None and track.descriptors:
            track.identity = self._people.label(track.descriptors)

    def _reidentify(self, track: _Track, face: Face, describe: Callable[[Face], np.ndarray]) -> None:
        """Give the new `track` (first seen as `face`) the id of the vanished track it is the
        return of: vanished within reid_window, its descriptor within SAME_PERSON_DISTANCE, and
        no farther from where it was last seen than it could have moved."""
        window = self.config.reid_window
        self._vanished = [v for v in self._vanished if self._time - v.seen_at <= window]
        if not self._vanished:
            return
        descriptor = describe(face)
        z = measurement(face)
        best, best_distance = None, SAME_PERSON_DISTANCE
        for vanished in self._vanished:
            size = face_size(vanished.z)
            reach = size * (1.0 + REID_REACH * (self._time - vanished.seen_at))
            moved = float(np.hypot(*((z[:2] + z[2:4]) - (vanished.z[:2] + vanished.z[2:4])) / 2))
            distance = descriptor_distance(descriptor, vanished.descriptors)
            if moved <= reach and distance <= best_distance:
                best, best_distance = vanished, distance
        if best is None:
            return
        self._vanished.remove(best)
        log.info("face %d is back after %.2f s", best.track_id, self._time - best.seen_at)
        track.track_id, track.returned, track.identity = best.track_id, True, best.identity
        track.descriptors = [*best.descriptors, descriptor][-KEPT_DESCRIPTORS:]
        track.described_hits = track.hits

    def _settled(self) -> int:
        """The latest frame in which every face's presence is known. A track that a detector run
        missed may have lost its face in any frame after its last hit: its frames from there
        wait until a hit or its end settles them (the detector runs on every frame meanwhile,
        so within max_misses + 1 frames), rather than going out with a predicted face."""
        latest = self._frame
        for track in self._tracks:
            if not track.ended and track.first_miss is not None:
                latest = min(latest, track.last_hit.frame)
        return latest

    # -- output -----------------------------------------------------------------------------
    def _release(self, until: int) -> list[tuple[int, list[TrackedFace]]]:
        released = []
        while self._emitted < until:
            self._emitted += 1
            released.append((self._emitted, self._smoothed(self._emitted)))
            self._forget(self._emitted)
        return released

    def _smoothed(self, frame: int) -> list[TrackedFace]:
        """Fixed-lag RTS: each confirmed track's state at `frame`, smoothed backwards from its
        newest step (at most `lag` frames later)."""
        out = []
        for track in sorted(self._tracks, key=lambda t: t.track_id):
            if not track.confirmed or not track.steps or not track.steps[0].frame <= frame <= track.steps[-1].frame:
                continue
            self._identify(track)
            z = smoothed(track.steps, frame)
            step = track.steps[frame - track.steps[0].frame]
            out.append(TrackedFace(track.track_id, z[:4].copy(), z[4:].reshape(5, 2).copy(),
                                   float(step.score), step.detected, track.identity,
                                   track.descriptors[-1] if track.descriptors else None))
        return out

    def _forget(self, frame: int) -> None:
        """Drop steps no later frame needs (memory stays flat) and tracks with none left."""
        for track in self._tracks:
            # A live track keeps its newest step: the next prediction starts from it.
            while track.steps and track.steps[0].frame <= frame and (track.ended or len(track.steps) > 1):
                track.steps.popleft()
        self._tracks = [t for t in self._tracks if t.steps or not t.ended]


class HasRGB(Protocol):
    time: float  # presentation time, seconds
    pixel_shape: tuple[float, float]  # the shape (width, height) a pixel is shown at: `Frame.pixel_shape`

    def to_rgb(self) -> np.ndarray: ...


FrameT = TypeVar("FrameT", bound=HasRGB)


def track_faces(frames: Iterable[FrameT], detector: FaceDetector,
                config: FaceOptions = FaceOptions()) -> Iterator[tuple[FrameT, list[TrackedFace]]]:
    """The streaming tracking stage: every frame, in order, with its smoothed faces (sorted by
    track id), `config.lag` frames after it arrived (up to detect_every + max_misses while a
    face a detector run missed is unsettled).

    frames: decoded frames (anything with `to_rgb()` giving H×W×3 uint8 RGB, displayed
    orientation, `time` in seconds and `pixel_shape`, such as `vidface.io.frames.Frame`). Holds at most
    max(lag, detect_every + max_misses) + 1 frames.
    """
    tracker = FaceTracker(config)
    describer = FaceDescriber()
    cuts = ShotCutDetector(config.cut_threshold)
    pending: deque[FrameT] = deque()  # frames given to the tracker and not yet returned, oldest first
    since_detection = config.detect_every  # so the first frame is detected
    for index, frame in enumerate(frames):
        rgb = frame.to_rgb()
        cut = cuts.is_cut(rgb)
        if cut:
            log.info("shot cut at frame %d: all face tracks end", index)
        faces, complete = None, True
        need = DETECT if cut else tracker.needs_detection(since_detection)
        if need == REFINE and hasattr(detector, "refine"):
            faces, complete = [f for f in detector.refine(rgb, tracker.predicted_faces()) if f is not None], False
        elif need is not None:
            faces, since_detection = detector.detect(rgb), 0
        since_detection += 1
        pending.append(frame)

        @functools.cache
        def earlier(frame_index: int) -> list[Face]:
            return detector.detect(pending[frame_index - index - 1].to_rgb())

        def describe(face: Face, rgb: np.ndarray = rgb, shape: tuple[float, float] = frame.pixel_shape) -> np.ndarray:
            return describer.describe(rgb, face.box, shape)

        for _, tracked in tracker.update(faces, cut=cut, earlier=earlier, complete=complete, time=frame.time,
                                         describe=describe):
            yield pending.popleft(), tracked
    for _, tracked in tracker.finish():
        yield pending.popleft(), tracked
