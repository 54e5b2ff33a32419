"""The QA report: one self-contained HTML page on what a restoration did to a video.

`gather_report` reads IN and OUT once, frame beside frame (`vidface.compare.matched_frames`), and
measures every face that OUT's sidecar (`vidface.provenance`) or a `vidface track` file names:
per track, how much its face region changes from frame to frame in IN and in OUT (flicker), how
much its landmarks jitter, its size, and how much the restoration changed it (strength); it also
finds the shot cuts and the frames worth a look (the most changed, the most flickering, one per
shot), which are then read again by seeking to them. `render_report` turns that into HTML whose
figures (matplotlib, PNG) and crops (JPEG) are inline data: the page opens offline, fetches
nothing and stays small whatever the video's length (figures are binned, tables capped).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidface.errors import InputError, OutputError
from vidface.files import AtomicFile

__all__ = ["ReportData", "TrackReport", "gather_report", "render_report", "write_report"]

CROP_SIDE = 48  # face regions are compared at this size: flicker is about change, not detail
SHEET_SIDE = 192  # contact sheet crops, per side
SHEET_PICKS = 4  # contact sheet frames per kind (most changed, most flickering)
SHEET_SHOTS = 8  # at most this many shots get a frame of their own
TIMELINE_TRACKS = 40  # rows of the timeline: the longest tracks
TIMELINE_BINS = 1000  # columns of the timeline at most
TABLE_TRACKS = 200  # rows of the track table: the longest tracks


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
    before_info, after_info = probe(source), probe(output)
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
    for index, (previous, frame, seconds) in enumerate(matched_frames(before, after)):
        rgb_in = previous.to_rgb()
        if cuts.is_cut(rgb_in):
            measure.cut(index)
        times.append(seconds)
        if index in faces:
            measure.frame(index, rgb_in, frame.to_rgb(), faces[index], restored.get(index, []))
        if progress is not None:
            progress(index + 1)
    if faces and max(faces) >= len(times):
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
    from vidface.io.placement import input_frames

    sheet = []
    for frame, track, reason, box in picks:
        pictures = []
        for plan in (before, after):
            frames = input_frames(plan, frame, resumed=True)
            try:
                pictures.append(next(frames).to_rgb())
            finally:
                frames.close()
        sheet.append(SheetFrame(frame, times[frame], track, reason, box, _sheet_jpeg(*pictures, box)))
    return sheet


def _sheet_jpeg(rgb_in: np.ndarray, rgb_out: np.ndarray, box: tuple[float, ...]) -> bytes:
    import cv2

    height, width = rgb_in.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1]) * 1.5  # the face and some of its surroundings
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))

    def cut(rgb: np.ndarray) -> np.ndarray:
        return cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), (SHEET_SIDE, SHEET_SIDE),
                          interpolation=cv2.INTER_AREA)

    gap = np.full((SHEET_SIDE, 4, 3), 255, np.uint8)
    pair = np.concatenate([cut(rgb_in), gap, cut(rgb_out)], axis=1)
    _, data = cv2.imencode(".jpg", np.ascontiguousarray(pair[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes()


def write_report(path: str | os.PathLike[str], data: ReportData) -> Path:
    """Write the page atomically (it appears only when complete)."""
    path = Path(path)
    page = render_report(data)
    try:
        with AtomicFile(path, "w", encoding="utf-8") as written:
            written.file.write(page)
    except OSError as error:
        raise OutputError(f"cannot write report {str(path)!r} ({error.strerror}); check the folder") from None
    return path


def render_report(data: ReportData) -> str:
    """The report as one HTML page with everything inline."""
    tracks = data.tracks
    summaries = [track.summary() for track in tracks]
    restored = [s for s in summaries if s["restored"]]
    longest = sorted(summaries, key=lambda s: -s["frames"])[:TABLE_TRACKS]
    left_out = len(summaries) - len(longest)
    sections = [
        f"<h1>vidface report: {_e(data.output)}</h1>",
        "<section id='summary'><h2>Summary</h2>" + _table(["", ""], [
            ["input", data.source + (f" (from frame {data.first_frame})" if data.first_frame else "")],
            ["output", data.output], ["restored by", data.tag or "no vidface tag (no sidecar)"],
            ["frames", f"{data.frames} ({data.duration:.2f} s from the first)"],
            ["shots", str(len(data.cuts) + 1)],
            ["faces from", data.faces_from],
            ["tracks", f"{len(tracks)}, {len(restored)} restored"],
            ["faces restored", str(sum(s["restored"] for s in summaries))],
            ["mean flicker of restored tracks, IN / OUT",
             _pair(_mean(s["flicker_in"] for s in restored), _mean(s["flicker_out"] for s in restored))],
        ]) + "</section>",
        "<section id='timeline'><h2>Timeline</h2>"
        f"<p>Each row is a track (the {min(len(tracks), TIMELINE_TRACKS)} longest, by first appearance); green: "
        "restored, grey: not restored; dark: the detector saw the face, light: the tracker predicted it; red "
        "lines: shot cuts.</p>" + _img(_timeline_png(data), "timeline of the tracks") + "</section>",
        "<section id='tracks'><h2>Tracks</h2><p>Flicker: mean change of the face region from one frame to the "
        "next (levels of 255), in IN and in OUT. Jitter: mean second difference of the landmarks, in % of the "
        "face's height. Strength: mean difference between OUT and IN in the face region where restored. Size: "
        "median face height in pixels. Click a column to sort.</p>"
        + _img(_tracks_png(data), "flicker and strength per track")
        + _table(["track", "person", "frames", "first", "last", "detected", "restored", "size", "flicker IN",
                  "flicker OUT", "jitter %", "strength"],
                 [[s["track"], s["identity"], s["frames"], s["first"], s["last"], s["detected"], s["restored"],
                   s["size"], s["flicker_in"], s["flicker_out"], s["jitter"], s["strength"]] for s in longest],
                 sortable=True)
        + (f"<p>{left_out} shorter tracks are left out of the table.</p>" if left_out else "") + "</section>",
        "<section id='sheet'><h2>Contact sheet</h2><p>IN left, OUT right.</p><div class='sheet'>"
        + "".join(f"<figure>{_img(item.jpeg, f'frame {item.frame}', 'image/jpeg')}<figcaption>frame {item.frame} "
                  f"({item.time:.2f} s), track {item.track}: {_e(item.reason)}</figcaption></figure>"
                  for item in data.sheet)
        + ("" if data.sheet else "<p>No face to show.</p>") + "</div></section>",
        "<section id='run'><h2>Run details</h2>" + _run_details(data) + "</section>",
    ]
    payload = {"frames": data.frames, "cuts": data.cuts, "tracks": summaries,
               "sheet": [{"frame": i.frame, "track": i.track, "reason": i.reason} for i in data.sheet]}
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>vidface report: "
            f"{_e(data.output)}</title><style>{_STYLE}</style></head><body>\n" + "\n".join(sections)
            + f"\n<script type='application/json' id='report-data'>{_json_in_html(payload)}</script>"
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def _run_details(data: ReportData) -> str:
    parts = []
    if data.timings:
        parts.append("<h3>Timings</h3>" + _table(["", ""], [[k, v] for k, v in data.timings.items()]))
    else:
        parts.append("<p>Timings: not recorded (the sidecar holds none, so that a resumed run writes the same "
                     "one; `vidface restore --report` records them).</p>")
    parts.append(f"<p>Report made in {data.seconds:.1f} s.</p>")
    run = data.run
    if run is None:
        parts.append("<p>No sidecar: settings, versions and weights are unknown.</p>")
        return "".join(parts)
    versions = run.get("versions", {})
    parts.append("<h3>Versions</h3>" + _table(["", ""], [["vidface", run.get("vidface")], ["model", run.get("model")]]
                                             + [[k, v if not isinstance(v, dict) else ", ".join(
                                                 f"{a} {b}" for a, b in v.items())] for k, v in versions.items()]))
    weights = run.get("weights", {})
    parts.append("<h3>Weights</h3>" + _table(["file", "sha256"], [["all of them", weights.get("sha256")]]
                                             + [[k, v] for k, v in weights.get("files", {}).items()]))
    settings = run.get("settings", {})
    parts.append(f"<h3>Settings</h3><p>sha256 {_e(str(run.get('settings_sha256')))}</p>" + _table(
        ["setting", "value"], [[f"{section}.{key}", json.dumps(value)] for section, values in settings.items()
                               for key, value in values.items()]))
    return "".join(parts)


def _timeline_png(data: ReportData) -> bytes:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    tracks = sorted(sorted(data.tracks, key=lambda t: -len(t.frames))[:TIMELINE_TRACKS], key=lambda t: t.frames[0])
    bins = max(1, min(data.frames, TIMELINE_BINS))
    grid = np.zeros((max(len(tracks), 1), bins), np.int8)
    for row, track in enumerate(tracks):
        columns = np.asarray(track.frames) * bins // max(data.frames, 1)
        states = 1 + np.asarray(track.detected, np.int8) + 2 * np.asarray(track.restored, np.int8)
        np.maximum.at(grid[row], columns, states)
    figure, axes = _figure(9, 1.2 + 0.18 * len(grid))
    colours = ListedColormap(["#ffffff", "#d0d0d0", "#707070", "#a8dca8", "#1f8f3a"])
    end = max(data.duration, 1e-6)
    axes.imshow(grid, aspect="auto", interpolation="nearest", cmap=colours, vmin=0, vmax=4,
                extent=(0, end, len(grid) - 0.5, -0.5))
    for cut in data.cuts:
        axes.axvline(data.times[cut], color="#d62728", linewidth=0.8, linestyle="--")
    axes.set_yticks(range(len(tracks)), [str(t.track) for t in tracks], fontsize=7)
    axes.set_xlabel("seconds")
    axes.set_ylabel("track")
    axes.legend(handles=[Patch(color=c, label=label) for c, label in (
        ("#1f8f3a", "restored, detected"), ("#a8dca8", "restored, predicted"), ("#707070", "detected"),
        ("#d0d0d0", "predicted"))], loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=7,
        frameon=False)
    return _png(figure)


def _tracks_png(data: ReportData) -> bytes:
    tracks = sorted(data.tracks, key=lambda t: -len(t.frames))[:20]
    figure, (flicker, strength) = _figure(9, 3.2, columns=2)
    names = [str(t.track) for t in tracks]
    positions = np.arange(len(tracks))
    flicker.bar(positions - 0.2, [t.flicker_in or 0 for t in tracks], 0.4, label="IN", color="#8c8c8c")
    flicker.bar(positions + 0.2, [t.flicker_out or 0 for t in tracks], 0.4, label="OUT", color="#1f77b4")
    flicker.set_title("flicker (frame-to-frame change)", fontsize=9)
    strength.bar(positions, [t.mean_strength or 0 for t in tracks], 0.6, color="#1f8f3a")
    strength.set_title("restoration strength (OUT - IN)", fontsize=9)
    for axes in (flicker, strength):
        axes.set_xticks(positions, names, fontsize=7)
        axes.set_xlabel("track")
        axes.set_ylabel("levels of 255")
    flicker.legend(fontsize=7)
    return _png(figure)


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.figure import Figure  # drawn without pyplot: no GUI backend, no global state

    figure = Figure(figsize=(width, height), dpi=96, layout="constrained")
    axes = figure.subplots(1, columns)
    return figure, axes


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _img(data: bytes, alt: str, mime: str = "image/png") -> str:
    return f"<img alt='{_e(alt)}' src='data:{mime};base64,{base64.b64encode(data).decode()}'>"


def _table(header: list[str], rows: list[list[Any]], sortable: bool = False) -> str:
    head = "" if not any(header) else "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table{' class=sortable' if sortable else ''}>{head}<tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _pair(a: float | None, b: float | None) -> str:
    return f"{_cell(a)} / {_cell(b)}"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _json_in_html(value: Any) -> str:
    return json.dumps(value).replace("</", "<\\/")


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .2em .6em; border-bottom: 1px solid #eee;
text-align: left; font-variant-numeric: tabular-nums; } table.sortable th { cursor: pointer; }
img { max-width: 100%; } .sheet { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
"""

# Sorts a table by the clicked column, and says in the console how many images loaded (what
# the browser test reads).
_SCRIPT = """
(() => {
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
      const body = table.tBodies[0];
      const key = row => { const text = row.cells[column].textContent; const n = parseFloat(text);
                           return Number.isNaN(n) ? text : n; };
      const rows = [...body.rows];
      const down = th.dataset.order !== "down";
      rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (down ? -1 : 1));
      th.dataset.order = down ? "down" : "up";
      body.append(...rows);
    }));
  }
  window.addEventListener("load", () => {
    const images = [...document.images];
    const loaded = images.filter(image => image.complete && image.naturalWidth > 0).length;
    document.body.dataset.imagesLoaded = String(loaded);
    console.log(`vidface report: ${loaded} of ${images.length} images loaded`);
  });
})();
"""
