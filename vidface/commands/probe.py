"""`vidface probe IN`: what vidface sees in a video (streams, size, rotation, timing)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from vidface.commands.options import add_logging_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="describe a video's streams, rotation, frame rate and frame count",
        description="Describe IN: streams and codecs, resolution, rotation, frame rate (constant "
                    "or variable), duration, exact frame count, audio and subtitle tracks.",
    )
    parser.add_argument("input", metavar="IN", help="input video, or an image sequence's pattern (scan.%%06d.dpx)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    from vidface.io.probe import probe

    info = probe(args.input)
    report = probe_report(info)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def probe_report(info) -> dict:
    """A JSON-ready description of a `MediaInfo`."""
    from vidface.io.sequence import image_sequence
    from vidface.io.timecode import start_timecode

    video = info.video
    rate = video.average_rate
    sequence = image_sequence(info.path) if info.format_name == "image2" else None
    return {
        "path": str(info.path),
        "files": None if sequence is None else {"first": sequence.files[0].name, "last": sequence.files[-1].name,
                                                "count": len(sequence.numbers)},
        "format": info.format_name,
        "duration": round(video.duration, 6),
        "metadata": info.metadata,
        "video": {
            "stream": video.index,
            "codec": video.codec,
            "width": video.width,
            "height": video.height,
            "display_width": video.display_size[0],
            "display_height": video.display_size[1],
            "rotation": video.rotation,
            "pixel_aspect": f"{video.sample_aspect.numerator}:{video.sample_aspect.denominator}",
            "interlaced": video.interlaced,
            "field_order": video.field_order,
            "field_motion": _field_motion(info),
            "pix_fmt": video.pix_fmt,
            "bit_depth": video.bit_depth,
            "fps": round(float(rate), 6) if rate else None,
            "frame_rate": "variable" if video.variable_frame_rate else "constant",
            "frames": video.frame_count,
            "first_decoded": video.first_decoded,
            "time_base": str(video.time_base),
            "colour": dataclasses.asdict(video.colour),
            "hdr": _hdr_report(video.hdr),
            "timecode": start_timecode(info),
        },
        "streams": [
            {"index": s.index, "type": s.type, "codec": s.codec, "language": s.language,
             "title": s.title, "detail": s.detail}
            for s in info.streams
        ],
        "chapters": [{"start": round(float(chapter.start), 6), "end": round(float(chapter.end), 6),
                      "title": chapter.metadata.get("title")} for chapter in info.chapters],
        "provenance": provenance_report(info),
    }


def _field_motion(info) -> dict | None:
    """How IN's fields move in its first frames (`vidface.io.field_motion`); None where idet
    cannot measure them or they cannot be decoded (probe describes a damaged file too)."""
    from vidface.errors import InputError
    from vidface.io.field_motion import field_motion

    try:
        motion = field_motion(info.path, info.video)
    except InputError:
        return None
    return None if motion is None else {**dataclasses.asdict(motion), "verdict": motion.describe()}


def _hdr_report(hdr) -> dict | None:
    if hdr is None:
        return None
    report: dict = {}
    if hdr.primaries and hdr.white_point:
        for name, xy in zip(("red", "green", "blue", "white_point"), (*hdr.primaries, hdr.white_point)):
            report[name] = [round(float(value), 5) for value in xy]
    if hdr.luminance:
        report["luminance"] = [round(float(value), 5) for value in hdr.luminance]
    if hdr.light_levels:
        report["max_cll"], report["max_fall"] = hdr.light_levels
    return report


def provenance_report(info) -> dict:
    """The vidface tag of a restored file and its sidecar (`vidface.provenance`), if any."""
    import json

    from vidface.provenance import read_tag, sidecar_path

    sidecar = sidecar_path(info.path)
    report = {"tag": read_tag(info.metadata), "sidecar": str(sidecar) if sidecar.is_file() else None,
              "frames_replaced": None}
    if report["sidecar"] is not None:
        try:
            report["frames_replaced"] = json.loads(sidecar.read_text(encoding="utf-8"))["frames_replaced"]
        except (OSError, ValueError, KeyError, TypeError):
            report["sidecar"] += " (unreadable)"
    return report


FIELD_ORDER_WORDS = {"tt": "top field first", "bb": "bottom field first", "tb": "top coded first, bottom shown first",
                     "bt": "bottom coded first, top shown first", "unknown": "field order unknown"}


def _scan_type(video: dict) -> str:
    return f"interlaced ({FIELD_ORDER_WORDS[video['field_order']]})" if video["interlaced"] else "progressive"


def _pixel_aspect(video: dict) -> str:
    """An anamorphic picture's pixel aspect and the size it is shown at ("" for square pixels)."""
    if video["pixel_aspect"] == "1:1":
        return ""
    width, height = (int(part) for part in video["pixel_aspect"].split(":"))
    return f"pixel aspect {video['pixel_aspect']} (shown {round(video['width'] * width / height)}x{video['height']}), "


def format_report(report: dict) -> str:
    video = report["video"]
    lines = [
        f"{report['path']}: {report['format']}, {report['duration']:.3f} s",
        f"video: {video['codec']} {video['width']}x{video['height']} {video['pix_fmt']} "
        f"({video['bit_depth']}-bit), rotation {video['rotation']}, {_pixel_aspect(video)}"
        f"{_scan_type(video)}, "
        f"{video['fps'] or '?'} fps {video['frame_rate']} ({video['frame_rate'] == 'variable' and 'VFR' or 'CFR'}), "
        f"{video['frames']} frames",
    ]
    if video["field_motion"]:
        lines.append(f"fields: {video['field_motion']['verdict']}")
    if report["files"]:
        files = report["files"]
        lines.append(f"files: {_shown(files['first'])} to {_shown(files['last'])} ({files['count']} images)")
    if video["timecode"]:
        lines.append(f"timecode: {_shown(video['timecode'])} at the first frame")
    if video["first_decoded"]:
        count = video["first_decoded"]
        lines.append(f"undecodable: the first {f'{count} frames' if count > 1 else 'frame'}, made from pictures "
                     f"before IN's start; OUT starts at frame {count}")
    if any(video["colour"].values()):
        lines.append("colour: " + ", ".join(f"{part} {name or 'unsaid'}{_transfer_words(name)}"
                                            for part, name in video["colour"].items()))
    if video["hdr"]:
        lines.append("hdr: " + _hdr_text(video["hdr"]))
    for key, value in report["metadata"].items():
        lines.append(f"tag: {_shown(key)}={_shown(value)}")
    for stream in report["streams"]:
        extra = " ".join(x for x in (stream["detail"], stream["language"] and f"[{stream['language']}]",
                                     stream["title"] and f"\"{stream['title']}\"") if x)
        lines.append(f"stream #{stream['index']}: {stream['type']} {stream['codec']} {extra}".rstrip())
    for number, chapter in enumerate(report["chapters"], 1):
        title = f" \"{_shown(chapter['title'])}\"" if chapter["title"] else ""
        lines.append(f"chapter {number}: {chapter['start']:.3f}-{chapter['end']:.3f} s{title}")
    provenance = report["provenance"]
    lines.append(f"restored by: {provenance['tag'] or 'no vidface tag'}")
    if provenance["sidecar"] is not None:
        replaced = provenance["frames_replaced"]
        lines.append(f"sidecar: {provenance['sidecar']}" +
                     ("" if replaced is None else f" (faces replaced in {replaced} frames)"))
    return "\n".join(lines)


def _transfer_words(name: str | None) -> str:
    """What an HDR transfer tag stands for (`vidface.faces.hdr.HDR_TRANSFERS`); "" for the others."""
    from vidface.faces.hdr import HDR_TRANSFERS

    return {"pq": " (HDR10's PQ)", "hlg": " (HLG)"}.get(HDR_TRANSFERS.get(name), "")


def _hdr_text(hdr: dict) -> str:
    parts = []
    if "red" in hdr:
        parts.append("mastering display " + " ".join(
            f"{label}({hdr[name][0]:.4f},{hdr[name][1]:.4f})"
            for label, name in (("R", "red"), ("G", "green"), ("B", "blue"), ("WP", "white_point"))))
    if "luminance" in hdr:
        parts.append(f"{hdr['luminance'][0]:g}-{hdr['luminance'][1]:g} cd/m²")
    if "max_cll" in hdr:
        parts.append(f"MaxCLL {hdr['max_cll']} cd/m², MaxFALL {hdr['max_fall']} cd/m²")
    return ", ".join(parts)


def _shown(text: str) -> str:
    """A tag for the terminal: bytes that are not UTF-8 (kept as they are in OUT) shown as �."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
