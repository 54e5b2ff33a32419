"""What a restoring run records about itself, for archives' rules on AI-modified media.

Every OUT of a restoring model carries a container tag (`Provenance.tag`: vidface version,
model, weights hash, settings hash) and a sidecar, ``OUT.vidface.json``: the same run details
in full and, per frame, the faces whose pixels were replaced (track, person, box, landmarks and
the region of pixels that may differ from the decoded input). The sidecar holds nothing that
depends on when or how often a run was interrupted, so a resumed run writes the same bytes.

Frames carry their records (`Frame.edits`, set by the restorer) through the pipeline; the
writer side turns them into sidecar entries (`frame_entry`), kept per segment in a resumable
run's work folder and gathered into the sidecar when OUT is complete (`SidecarWriter`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidface.errors import InputError, OutputError
from vidface.files import AtomicFile, owned_temporary, sha256_of_files
from vidface.io.sequence import input_files

if TYPE_CHECKING:
    from vidface.config import Settings
    from vidface.io.frames import Frame
    from vidface.plan import Plan
    from vidface.weights import WeightsLocation

__all__ = ["SIDECAR_SUFFIX", "TAG_KEY", "Provenance", "SidecarWriter", "TrackNumbering", "container_tags",
           "entry_line", "frame_entry", "package_version", "provenance_for", "read_tag", "sidecar_for", "sidecar_path",
           "weights_digest"]

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".vidface.json"
SIDECAR_FORMAT = 1
TAG_KEY = "vidface"
"""The container tag's key where the container keeps any key (Matroska, WebM, NUT); elsewhere
(MP4, MOV, AVI) the tag is a line of the `comment` tag, after the input's own comment."""
_ANY_KEY_FORMATS = {"matroska", "webm", "nut"}
_TAG_PREFIX = "vidface "
_TAG_LINE = re.compile(r"vidface \S+; model \S+; weights sha256:[0-9a-f]{64}; settings sha256:[0-9a-f]{64}")
_WEIGHT_LOCATIONS = {("model", "weights"), ("model", "base"), ("model", "weights_repo"), ("paste", "parsing_weights")}


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Provenance:
    """A restoring run's identity: `details` (JSON-ready: versions, model, weights and settings
    with their SHA-256) go into the sidecar; `tag` sums them up in one line for the container."""

    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        details = self.details
        return (f"{_TAG_PREFIX}{details['vidface']}; model {details['model']}; "
                f"weights sha256:{details['weights']['sha256']}; settings sha256:{details['settings_sha256']}")


def provenance_for(settings: Settings, model: str, weights: WeightsLocation) -> Provenance:
    """The provenance of a run of `model` with `settings` and `weights` (files hashed once per
    machine: their SHA-256 is kept by path, size and time in vidface's cache folder)."""
    import av

    import vidface
    from vidface.config import settings_to_dict

    values = settings_to_dict(settings)
    # Where the weights lie is not what they are (the weights' own hash says that), so the same
    # settings hash alike on every machine.
    what = {section: {key: value for key, value in options.items() if (section, key) not in _WEIGHT_LOCATIONS}
            for section, options in values.items()}
    return Provenance({
        "vidface": vidface.__version__,
        "model": model,
        "weights": weights_digest(weights),
        "settings": values,
        "settings_sha256": hashlib.sha256(_canonical(what)).hexdigest(),
        "versions": {
            "python": platform.python_version(),
            **{name: package_version(name) for name in ("torch", "diffusers", "peft")},
            "av": av.__version__,
            "ffmpeg": {name: ".".join(map(str, numbers)) for name, numbers in sorted(av.library_versions.items())},
        },
    })


def weights_digest(weights: WeightsLocation) -> dict[str, Any]:
    """{"sha256": one hash of them all, "files": {name: SHA-256}} of the files the model reads:
    the release (its three files, or a bundle) and the base's UNet, VAE and scheduler."""
    from vidface.weights import BASE_FILES, RELEASE_FILES, base_file

    release, base = Path(weights.release), Path(weights.base)
    paths = {f"release/{release.name}": release} if release.is_file() else {
        f"release/{name}": release / name for name in RELEASE_FILES}
    for name in BASE_FILES:
        path = base_file(base, name)
        paths[f"base/{path.relative_to(base)}"] = path
    from vidface.downloads import cache_root

    try:
        files = sha256_of_files(paths, cache_root())
    except OSError as error:
        raise OutputError(f"cannot read weights file {error.filename!r} ({error.strerror})") from None
    combined = hashlib.sha256("".join(f"{name} {digest}\n" for name, digest in sorted(files.items())).encode())
    return {"sha256": combined.hexdigest(), "files": files}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def container_tags(container_format: str, provenance: Provenance, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags to set on OUT's container so it carries `provenance`, given the `tags` it
    already takes from IN: a key of its own where the container keeps any key; otherwise a line
    of `comment`, after IN's comment (which is kept), since MP4, MOV and AVI keep only the keys
    they know."""
    if set(container_format.split(",")) & _ANY_KEY_FORMATS:
        return {TAG_KEY: provenance.tag}
    key, comment = next(((key, value) for key, value in tags.items() if key.lower() == "comment"), ("comment", ""))
    return {key: f"{comment}\n{provenance.tag}" if comment else provenance.tag}


def read_tag(tags: Mapping[str, str]) -> str | None:
    """The vidface tag in a container's `tags` (as `container_tags` writes it), or None."""
    for key, value in tags.items():
        if key.lower() == TAG_KEY:
            return value
    for key, value in tags.items():
        if key.lower() == "comment":
            return next((line for line in value.splitlines() if _TAG_LINE.fullmatch(line)), None)
    return None


def sidecar_path(output: str | os.PathLike[str]) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def frame_entry(frame: Frame) -> dict[str, Any]:
    """A sidecar entry for a frame with edits: its position in IN's range, which is OUT's where
    every frame of IN decodes, its presentation time in IN in seconds (as `vidface track` gives
    both) and its edits."""
    return {"frame": frame.index, "time": round(frame.time, 6), "faces": list(frame.edits)}


def entry_line(entry: Mapping[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"


@contextmanager
def sidecar_for(plan: Plan) -> Iterator[SidecarWriter | None]:
    """The sidecar of `plan`'s OUT while the block writes it (None for a plan without provenance):
    put in place when the block ends normally, so inside OUT's `atomic_output` it appears just
    before OUT does; removed on an error or Ctrl-C."""
    if plan.provenance is None:
        yield None
        return
    writer = SidecarWriter(plan.output, plan.provenance, source=plan.info.path, first_frame=plan.first_frame,
                           frames=plan.frame_count, sound=None if plan.sound is None else plan.sound.path)
    try:
        yield writer
    except BaseException:
        writer.discard()
        raise
    writer.commit()


class TrackNumbering:
    """Numbers the tracks and people of segments that separate tracker runs made (each segment of
    a resumable run or of the render farm starts its tracker afresh, numbering from 0), so that
    the sidecar names each face once: a track whose face, at a segment's first frame, overlaps a
    face the previous segment had at the frame before (IoU >= SAME_FACE_IOU) keeps that face's
    numbers; any other track or person gets the next free number. Feed the segments' entry lines
    in order to `segment`."""

    SAME_FACE_IOU = 0.5

    def __init__(self) -> None:
        self._tracks = 0
        self._people = 0
        self._ending: tuple[int, list[dict[str, Any]]] = (-2, [])  # the last frame's number and faces

    def segment(self, lines: Iterable[str]) -> Iterator[str]:
        """The entry lines of one segment, renumbered."""
        tracks: dict[int, int] = {}
        people: dict[Any, Any] = {}
        for line in lines:
            entry = json.loads(line)
            for face in entry["faces"]:
                if face["track"] not in tracks:
                    before = self._continued(entry["frame"], face)
                    if before is None:
                        tracks[face["track"]], self._tracks = self._tracks, self._tracks + 1
                    else:
                        tracks[face["track"]] = before["track"]
                        people.setdefault(face.get("identity"), before.get("identity"))
                face["track"] = tracks[face["track"]]
                if face.get("identity") is not None:
                    if face["identity"] not in people:
                        people[face["identity"]], self._people = self._people, self._people + 1
                    face["identity"] = people[face["identity"]]
            self._ending = (entry["frame"], entry["faces"])
            yield entry_line(entry)

    def _continued(self, frame: int, face: Mapping[str, Any]) -> Mapping[str, Any] | None:
        from vidface.faces.geometry import box_iou

        last_frame, faces = self._ending
        if last_frame != frame - 1 or not faces:
            return None
        overlaps = box_iou(face["box"], [other["box"] for other in faces])[0]
        best = int(overlaps.argmax())
        return faces[best] if overlaps[best] >= self.SAME_FACE_IOU else None


class SidecarWriter:
    """Writes OUT's sidecar atomically (`AtomicFile`): run details first, then one frame entry
    per line as they come (memory stays flat however long the video), renamed into place on
    `commit`, removed on `discard`."""

    def __init__(self, output: Path, provenance: Provenance, *, source: Path, first_frame: int, frames: int,
                 sound: Path | None = None) -> None:
        self.path = sidecar_path(output)
        try:
            self._file = AtomicFile(self.path, "w", encoding="utf-8", temporary=owned_temporary(self.path))
        except OSError as error:
            raise OutputError(f"cannot write {str(self.path)!r} ({error.strerror}); check the output folder") from None
        try:
            size = sum(file.stat().st_size for file in input_files(source))
            sound_file = None if sound is None else {"name": sound.name, "size": sound.stat().st_size}
        except InputError:  # an image sequence with files gone
            self._file.discard()
            raise
        except OSError as error:
            self._file.discard()
            raise InputError(f"input {str(error.filename or source)!r} is gone ({error.strerror})") from None
        head = {"format": SIDECAR_FORMAT, "output": output.name, "tag": provenance.tag,
                "input": {"name": source.name, "size": size, "first_frame": first_frame, "frames": frames},
                **({} if sound_file is None else {"sound": sound_file}), "run": dict(provenance.details)}
        text = json.dumps(head, indent=1, sort_keys=True)
        self._file.file.write(text[:text.rindex("}")].rstrip() + ',\n "frames": [\n')
        self._first = True
        self.frames = 0

    def add(self, frame: Frame) -> None:
        """Add `frame`'s entry if it has edits (frames in order)."""
        if frame.edits:
            self.add_lines([entry_line(frame_entry(frame))])

    def add_lines(self, lines: Iterable[str]) -> None:
        """Add frame entries as `entry_line` gives them, in frame order."""
        for line in lines:
            self._file.file.write(("" if self._first else ",\n") + line.rstrip("\n"))
            self._first = False
            self.frames += 1

    def commit(self) -> None:
        self._file.file.write(f'\n ],\n "frames_replaced": {self.frames}\n}}\n')
        self._file.commit()

    def discard(self) -> None:
        self._file.discard()
