"""The QA report's page (`vidface.report` measures what it shows): one HTML file whose figures
(matplotlib, PNG) and crops (JPEG) are inline data, with a small inline script. The page opens
offline, fetches nothing, and stays small whatever the video's length: figures are binned and
the track table capped."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vidface.errors import OutputError
from vidface.files import AtomicFile
from vidface.report import ReportData

__all__ = ["render_report", "write_report"]

TIMELINE_TRACKS = 40  # rows of the timeline: the longest tracks
TIMELINE_BINS = 1000  # columns of the timeline at most
TABLE_TRACKS = 200  # rows of the track table: the longest tracks


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
