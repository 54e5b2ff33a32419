"""The QA report: one self-contained HTML page on what a restoration did to a video.

`gather_report` reads IN and OUT once, frame beside frame (`vidface.compare.matched_frames`), and
measures every face that OUT's sidecar (`vidface.provenance`) or a `vidface track` file names:
per track, how much its face region changes from frame to frame in IN and in OUT (flicker), how
much its landmarks jitter, its size, and how much the restoration changed it (strength); it also
finds the shot cuts and the frames worth a look (the most changed, the most flickering, one per
shot), which are then read again by seeking to them. `vidface.report_page` turns the result into
the page.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidface.errors import InputError

__all__ = ["ReportData", "SheetFrame", "TrackReport", "gather_report"]

CROP_SIDE = 48  # face regions are compared at this size: flicker is about change, not detail
SHEET_SIDE = 192  # contact sheet crops, per side
SHEET_PICKS = 4  # contact sheet frames per kind (most changed, most flickering)
SHEET_SHOTS = 8  # at most this many shots get a frame of their own


@dataclass
class TrackReport:
    """One face track's frames and measures. change_in/change_out: mean absolute change (levels
    of 255) of the face region between consecutive frames of the track, in IN and in OUT;
    strength: mean absolute difference between OUT and IN in the face region, per frame."""

    track: int
    identity: int | None
    frames: list[int] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)
    restored: list[bool] = field(default_factory=list)
    heights: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    change_in: list[float] = field(default_factory=list)
    change_out: list[float] = field(default_factory=list)
    strength: list[float] = field(default_factory=list)

    @property
    def flicker_in(self) -> float | None:
        return float(np.mean(self.change_in)) if self.change_in else None

    @property
    def flicker_out(self) -> float | None:
        return float(np.mean(self.change_out)) if self.change_out else None

    @property
    def mean_strength(self) -> float | None:
        """Mean strength over the frames where the face was restored."""
        values = [s for s, restored in zip(self.strength, self.restored) if restored]
        return float(np.mean(values)) if values else None

    @property
    def jitter(self) -> float | None:
        """Landmark jitter: the mean second difference of the landmarks over three consecutive
        frames, in per cent of the face's height (0 for a face moving at constant speed)."""
        values = []
        for i in range(1, len(self.frames) - 1):
            if self.frames[i + 1] - self.frames[i - 1] == 2:
                second = self.landmarks[i + 1] - 2 * self.landmarks[i] + self.landmarks[i - 1]
                values.append(float(np.linalg.norm(second, axis=1).mean()) / max(self.heights[i], 1.0) * 100)
        return float(np.mean(values)) if values else None

    def summary(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {"track": self.track, "identity": self.identity, "frames": len(self.frames),
                "first": self.frames[0], "last": self.frames[-1], "detected": int(sum(self.detected)),
                "restored": int(sum(self.restored)), "size": round(float(np.median(self.heights)), 1),
                "flicker_in": rounded(self.flicker_in), "flicker_out": rounded(self.flicker_out),
                "jitter": rounded(self.jitter), "strength": rounded(self.mean_strength)}


@dataclass(frozen=True)
class SheetFrame:
    """A contact sheet entry: a face at a frame, why it was picked, and its IN/OUT crops (JPEG)."""

    frame: int
    time: float
    track: int
    reason: str
    box: tuple[float, float, float, float]
    jpeg: bytes = b""


@dataclass
class ReportData:
    """Everything the page shows. run: the sidecar's run details (None without one); timings:
    of the run that made OUT, where the caller knows them (`vidface restore --report`)."""

    source: str
    output: str
    frames: int
    duration: float
    first_frame: int
    cuts: list[int]
    times: list[float]
    tracks: list[TrackReport]
    sheet: list[SheetFrame]
    faces_from: str
    tag: str | None = None
    run: Mapping[str, Any] | None = None
    timings: Mapping[str, Any] | None = None
    seconds: float = 0.0


def gather_report(source: str | os.PathLike[str], output: str | os.PathLike[str], *,
                  tracks: str | os.PathLike[str] | None = None, sidecar: str | os.PathLike[str] | None = None,
                  first_frame: int | None = None, frame_count: int | None = None,
                  timings: Mapping[str, Any] | None = None,
                  progress: Callable[[int], None] | None = None) -> ReportData:
    """Measure OUT against IN. The faces come from `tracks` (a `vidface track` JSON Lines file
    over the same range: every tracked face, restored or not) or else from OUT's sidecar (the
    restored faces; default OUT.vidface.json). IN's range is the sidecar's, else [first_frame,
    first_frame + frame_count), else all of IN. progress: called with the frames read so far."""
    from vidface.compare import matched_frames
    from vidface.faces.hdr import sdr_rgb
    from vidface.faces.shots import ShotCutDetector
    from vidface.io.probe import probe
    from vidface.plan import reading_plan
    from vidface.provenance import sidecar_path

    started = time.perf_counter()
    source, output = Path(source), Path(output)
    sidecar_file = Path(sidecar) if sidecar is not None else sidecar_path(output)
    details = _read_json(sidecar_file) if sidecar is not None or sidecar_file.is_file() else None
    if details is None and tracks is None:
        raise InputError(f"{str(output)!r} has no sidecar ({sidecar_file.name}) to say which faces were restored; "
                         "pass the faces with --tracks FILE (from `vidface track`)")
    after_info = probe(output)
    before_info = probe(source, after_info.video.average_rate)  # an image sequence at OUT's rate
    if details is not None:
        first_frame, frame_count = details["input"]["first_frame"], details["input"]["frames"]
    first = first_frame or 0
    stop = before_info.video.frame_count if frame_count is None else first + frame_count
    before, after = reading_plan(before_info, first, stop), reading_plan(after_info)
    restored = _faces_by_frame(details["frames"] if details is not None else [])
    faces = _faces_by_frame(_read_tracks(Path(tracks))) if tracks is not None else restored
    measure = _Measures()
    cuts = ShotCutDetector()
    times: list[float] = []
    # The faces name frames by their position in IN's range, which counts frames that never
    # decode (an open GOP's leading ones, before `before`'s first frame), as OUT's does not.
    position = before.first_frame - first - 1
    for index, (previous, frame, seconds) in enumerate(matched_frames(before, after)):
        position = previous.index + before.first_frame - first
        rgb_in = sdr_rgb(previous)
        if cuts.is_cut(rgb_in):
            measure.cut(index)
        times.append(seconds)
        if position in faces:
            measure.frame(index, rgb_in, sdr_rgb(frame), faces[position], restored.get(position, []))
        if progress is not None:
            progress(index + 1)
    if faces and max(faces) > position:
        raise InputError(f"the faces name frame {max(faces)} but OUT has {len(times)} frames; "
                         "track the same range as OUT (the same --start and --duration)")
    sheet = _crops(measure.picks(), before, after, times)
    return ReportData(source=source.name, output=output.name, frames=len(times),
                      duration=times[-1] if times else 0.0, first_frame=first, cuts=measure.cuts, times=times,
                      tracks=sorted(measure.tracks.values(), key=lambda t: t.frames[0]), sheet=sheet,
                      faces_from="tracks file" if tracks is not None else "sidecar",
                      tag=details.get("tag") if details else None, run=details.get("run") if details else None,
                      timings=timings, seconds=time.perf_counter() - started)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read sidecar {str(path)!r} ({error.strerror})") from None
    except ValueError:
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("input"), dict) and isinstance(data.get("frames"), list)
            and {"first_frame", "frames"} <= data["input"].keys()):
        raise InputError(f"{str(path)!r} is not a vidface sidecar")
    return data


def _read_tracks(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except OSError as error:
        raise InputError(f"cannot read tracks file {str(path)!r} ({error.strerror})") from None
    except ValueError:
        raise InputError(f"{str(path)!r} is not a tracks file (JSON Lines from `vidface track --tracks`)") from None


def _faces_by_frame(records: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    try:
        return {int(record["frame"]): list(record["faces"]) for record in records if record["faces"]}
    except (KeyError, TypeError, ValueError):
        raise InputError("a faces record lacks its frame or faces") from None


class _Measures:
    """Per-track measures, shot cuts and contact sheet candidates, gathered frame by frame."""

    def __init__(self) -> None:
        self.tracks: dict[int, TrackReport] = {}
        self.cuts: list[int] = []
        self._last: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # track -> (frame, IN crop, OUT crop)
        self._changed: list[tuple[float, int, int, tuple]] = []  # (strength, frame, track, box)
        self._flickering: list[tuple[float, int, int, tuple]] = []  # (OUT change, frame, track, box)
        self._shots: dict[int, tuple[float, int, int, tuple]] = {}  # shot -> (face height, frame, track, box)

    def cut(self, frame: int) -> None:
        self.cuts.append(frame)

    def frame(self, index: int, rgb_in: np.ndarray, rgb_out: np.ndarray, faces: list[Mapping[str, Any]],
              restored: list[Mapping[str, Any]]) -> None:
        restored_tracks = {face["track"] for face in restored}
        for face in faces:
            box = tuple(float(v) for v in face["box"])
            crop_in, crop_out = _face_region(rgb_in, box), _face_region(rgb_out, box)
            if crop_in is None:
                continue
            track = self.tracks.setdefault(face["track"], TrackReport(face["track"], face.get("identity")))
            track.frames.append(index)
            track.detected.append(bool(face.get("detected", True)))
            track.restored.append(face["track"] in restored_tracks)
            height = box[3] - box[1]
            track.heights.append(height)
            track.landmarks.append(np.asarray(face["landmarks"], np.float64))
            strength = float(np.abs(crop_out - crop_in).mean())
            track.strength.append(strength)
            last = self._last.get(face["track"])
            if last is not None and last[0] == index - 1:
                track.change_in.append(float(np.abs(crop_in - last[1]).mean()))
                track.change_out.append(float(np.abs(crop_out - last[2]).mean()))
                _keep_top(self._flickering, (track.change_out[-1], index, face["track"], box))
            self._last[face["track"]] = (index, crop_in, crop_out)
            if track.restored[-1]:
                _keep_top(self._changed, (strength, index, face["track"], box))
            shot = len(self.cuts)
            if height > self._shots.get(shot, (-1.0,))[0]:
                self._shots[shot] = (height, index, face["track"], box)

    def picks(self) -> list[tuple[int, int, str, tuple]]:
        """(frame, track, reason, box) of the contact sheet, in frame order, one per frame."""
        shots = sorted(self._shots.items())
        if len(shots) > SHEET_SHOTS:
            shots = [shots[round(i * (len(shots) - 1) / (SHEET_SHOTS - 1))] for i in range(SHEET_SHOTS)]
        chosen: dict[int, tuple[int, int, str, tuple]] = {}
        for reason, candidates in (("most changed", self._changed), ("most flickering in OUT", self._flickering),
                                   ("shot", [(0.0, *entry[1:]) for _, entry in shots])):
            for _, frame, track, box in sorted(candidates, key=lambda c: -c[0]):
                label = f"shot {self._shot_of(frame) + 1}" if reason == "shot" else reason
                chosen.setdefault(frame, (frame, track, label, box))
        return sorted(chosen.values())

    def _shot_of(self, frame: int) -> int:
        return sum(cut <= frame for cut in self.cuts)


def _keep_top(entries: list[tuple], entry: tuple) -> None:
    """Keep the SHEET_PICKS largest entries (by their first item), at most one per frame."""
    same = [e for e in entries if e[1] == entry[1]]
    if same and same[0][0] >= entry[0]:
        return
    entries[:] = [e for e in entries if e[1] != entry[1]] + [entry]
    entries.sort(key=lambda e: -e[0])
    del entries[SHEET_PICKS:]


def _face_region(rgb: np.ndarray, box: tuple[float, ...]) -> np.ndarray | None:
    """The face box of an RGB frame as CROP_SIDE² grey levels (float32), or None if it is empty."""
    import cv2

    height, width = rgb.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def _crops(picks: list[tuple[int, int, str, tuple]], before, after, times: list[float]) -> list[SheetFrame]:
    """The contact sheet: each picked frame of IN and OUT read again (seeking to it, exactly as
    a resumed run does) and the face cut out of both, side by side."""
    from vidface.faces.hdr import sdr_rgb
    from vidface.io.placement import input_frames

    sheet = []
    for frame, track, reason, box in picks:
        pictures = []
        for plan in (before, after):
            frames = input_frames(plan, frame, resumed=True)
            try:
                pictures.append(next(frames))
            finally:
                frames.close()
        shown = pictures[0].pixel_shape  # IN's, whose pixels the box is in (OUT's may have lost it: .mkv)
        sheet.append(SheetFrame(frame, times[frame], track, reason, box,
                                _sheet_jpeg(*(sdr_rgb(picture) for picture in pictures), box, shown)))
    return sheet


def _sheet_jpeg(rgb_in: np.ndarray, rgb_out: np.ndarray, box: tuple[float, ...],
                pixel_shape: tuple[float, float] = (1.0, 1.0)) -> bytes:
    """IN's and OUT's face side by side, each a square as shown: an anamorphic picture's
    (`pixel_shape`) part is as many stored pixels narrower as its pixels are shown wider."""
    import cv2

    height, width = rgb_in.shape[:2]
    scale_x, scale_y = pixel_shape
    # the face and some of its surroundings, in shown pixels
    side = max((box[2] - box[0]) * scale_x, (box[3] - box[1]) * scale_y) * 1.5
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = int(max(0, cx - side / scale_x / 2)), int(max(0, cy - side / scale_y / 2))
    x1, y1 = int(min(width, cx + side / scale_x / 2)), int(min(height, cy + side / scale_y / 2))

    def cut(rgb: np.ndarray) -> np.ndarray:
        return cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), (SHEET_SIDE, SHEET_SIDE),
                          interpolation=cv2.INTER_AREA)

    gap = np.full((SHEET_SIDE, 4, 3), 255, np.uint8)
    pair = np.concatenate([cut(rgb_in), gap, cut(rgb_out)], axis=1)
    _, data = cv2.imencode(".jpg", np.ascontiguousarray(pair[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes()
