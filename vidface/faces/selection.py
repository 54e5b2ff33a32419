"""Which faces a restore changes (`--faces`): every face, the largest face of each shot, people
by their identity labels (as `vidface track` prints them), or people who match reference photos.

Anything but `all` is decided by a pass of the faces stage over the run's whole range before
the restore (detection, tracking and identity labels, exactly as `vidface track` runs them), so
labels and shots are those of the whole range, whichever segments or workers restore it. The
restore then changes, in each frame, the tracked faces that overlap a face the pass selected
there; every other face, and every pixel outside the selected faces, stays as decoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vidface.errors import InputError

if TYPE_CHECKING:
    from vidface.faces.detect import FaceDetector
    from vidface.faces.options import FaceOptions
    from vidface.faces.track import TrackedFace
    from vidface.io.frames import Frame
    from vidface.plan import Plan

__all__ = ["ALL", "LARGEST", "FaceSelection", "SelectedFaces", "reference_descriptors", "select_faces"]

ALL, LARGEST = "all", "largest"
SAME_FACE_IOU = 0.5
"""Box overlap at which a face the restore tracks is the face the selection pass tracked (the
two tracks may differ a little where a segment starts)."""


@dataclass(frozen=True)
class FaceSelection:
    """A parsed `--faces` value: ALL, LARGEST, identity labels, or reference photos."""

    kind: str
    ids: tuple[int, ...] = ()
    photos: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FaceSelection:
        """'all', 'largest', 'ID[,ID...]' or 'PHOTO[,PHOTO...]' (ValueError if empty)."""
        text = text.strip()
        if text in (ALL, LARGEST):
            return cls(text)
        parts = [part.strip() for part in text.split(",")]
        if not text or not all(parts):
            raise ValueError(f"expected all, largest, identity labels or photos separated by commas, got {text!r}")
        if all(part.isdigit() for part in parts):
            return cls("ids", ids=tuple(int(part) for part in parts))
        return cls("photos", photos=tuple(parts))

    def __str__(self) -> str:
        if self.kind == "ids":
            return "people " + ", ".join(map(str, self.ids))
        if self.kind == "photos":
            return "people matching " + ", ".join(os.path.basename(photo) for photo in self.photos)
        return self.kind


@dataclass(frozen=True)
class Person:
    """One identity label of the selection pass: where it was seen and whether it is restored."""

    identity: int
    first_time: float
    frames: int
    selected: bool


@dataclass
class SelectedFaces:
    """The selection pass's outcome: per frame index, the boxes (K×4) of the faces to restore;
    and the people it saw."""

    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    people: list[Person] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.boxes

    def within(self, first: int, stop: int) -> SelectedFaces:
        """The selection of frames [first, stop) alone (what one segment needs)."""
        return SelectedFaces({frame: boxes for frame, boxes in self.boxes.items() if first <= frame < stop},
                             self.people)

    def selects(self, frame: int, face: TrackedFace) -> bool:
        """Whether `face`, tracked in frame `frame`, is one the pass selected there."""
        from vidface.faces.geometry import box_iou

        boxes = self.boxes.get(frame)
        if boxes is None:
            return False
        return bool((box_iou(np.asarray(face.box, float)[None], boxes) >= SAME_FACE_IOU).any())


@dataclass
class _Track:
    identity: int | None
    shot: int
    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    first_time: float = 0.0
    size: float = 0.0  # mean face size, the square root of the box area
    descriptors: list[np.ndarray] = field(default_factory=list)


def select_faces(plan: Plan, detector: FaceDetector, options: FaceOptions, selection: FaceSelection,
                 *, seconds: float | None = None) -> SelectedFaces:
    """Run the selection pass over `plan`'s frames (the first `seconds` of them, for a dry run)
    and decide which faces `selection` takes. Photos are read first: a photo that cannot be
    read, or shows no face or several, is a one-line InputError naming it."""
    from vidface.faces.shots import ShotCutDetector
    from vidface.faces.track import track_faces
    from vidface.faces.hdr import sdr_rgb
    from vidface.io.frames import RGBFrame
    from vidface.io.placement import input_frames

    references = reference_descriptors(selection.photos, detector) if selection.kind == "photos" else []
    cuts = ShotCutDetector(options.cut_threshold)
    tracks: dict[int, _Track] = {}
    shot = 0
    frames = input_frames(plan, 0)
    try:
        pictures = (RGBFrame(frame, sdr_rgb(frame)) for frame in _until(frames, seconds))
        for picture, faces in track_faces(pictures, detector, options):
            shot += cuts.is_cut(picture.rgb)
            for face in faces:
                track = tracks.setdefault(face.track_id, _Track(face.identity, shot, first_time=picture.time))
                track.boxes[picture.frame.index] = np.asarray(face.box, float)
                if face.descriptor is not None and not any(d is face.descriptor for d in track.descriptors):
                    track.descriptors.append(face.descriptor)
    finally:
        frames.close()
    for track in tracks.values():
        track.size = float(np.mean([np.sqrt(max(b[2] - b[0], 1) * max(b[3] - b[1], 1)) for b in track.boxes.values()]))
    chosen = _chosen(tracks, selection, references, options.face_match)
    return _selected(tracks, chosen)


def _until(frames: Iterator[Frame], seconds: float | None) -> Iterator[Frame]:
    first = None
    for frame in frames:
        first = frame.time if first is None else first
        if seconds is not None and frame.time - first >= seconds:
            return
        yield frame


def _chosen(tracks: dict[int, _Track], selection: FaceSelection, references: list[np.ndarray],
            match: float) -> set[int]:
    """The track ids `selection` takes."""
    from vidface.faces.identity import descriptor_distance

    if selection.kind == ALL:
        return set(tracks)
    if selection.kind == "ids":
        return {track_id for track_id, track in tracks.items() if track.identity in selection.ids}
    if selection.kind == "photos":
        return {track_id for track_id, track in tracks.items()
                if any(descriptor_distance(reference, track.descriptors) <= match for reference in references)}
    largest: dict[int, int] = {}
    for track_id, track in tracks.items():
        if track.shot not in largest or track.size > tracks[largest[track.shot]].size:
            largest[track.shot] = track_id
    return set(largest.values())


def _selected(tracks: dict[int, _Track], chosen: set[int]) -> SelectedFaces:
    boxes: dict[int, list[np.ndarray]] = {}
    people: dict[int, Person] = {}
    for track_id, track in tracks.items():
        if track_id in chosen:
            for frame, box in track.boxes.items():
                boxes.setdefault(frame, []).append(box)
        if track.identity is None:
            continue
        known = people.get(track.identity)
        people[track.identity] = Person(
            track.identity, min(track.first_time, known.first_time) if known else track.first_time,
            len(track.boxes) + (known.frames if known else 0), track_id in chosen or bool(known and known.selected))
    return SelectedFaces({frame: np.stack(found) for frame, found in boxes.items()},
                         sorted(people.values(), key=lambda person: person.identity))


def reference_descriptors(photos: tuple[str, ...], detector: FaceDetector) -> list[np.ndarray]:
    """One descriptor per photo, each of which must show exactly one face (else a one-line
    InputError naming it)."""
    import cv2

    from vidface.faces.identity import FaceDescriber

    describer = FaceDescriber()
    descriptors = []
    for photo in photos:
        picture = cv2.imread(photo, cv2.IMREAD_COLOR)
        if picture is None:
            raise InputError(f"--faces: cannot read the photo {photo!r} (no such file, or not an image)")
        rgb = np.ascontiguousarray(picture[..., ::-1])
        faces = detector.detect(rgb)
        if len(faces) != 1:
            found = "no face" if not faces else f"{len(faces)} faces"
            raise InputError(f"--faces: the photo {photo!r} shows {found}; give a photo of exactly one person")
        descriptors.append(describer.describe(rgb, faces[0].box))
    return descriptors
