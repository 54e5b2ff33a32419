"""Tracks as JSON Lines: one line per frame, written to a temporary file and renamed when done."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType

from vidface.errors import OutputError
from vidface.files import AtomicFile
from vidface.faces.track import TrackedFace


def frame_record(frame: int, pts: int, time: float, faces: list[TrackedFace]) -> dict:
    """One JSON Lines record: {"frame", "pts", "time", "faces": [face_record, ...]}."""
    return {"frame": frame, "pts": pts, "time": round(time, 6), "faces": [face_record(face) for face in faces]}


def face_record(face: TrackedFace) -> dict:
    """{"track", "identity", "box", "landmarks", "score", "detected"}, coordinates in
    displayed-frame pixels (2 decimals)."""
    return {
        "track": face.track_id,
        "identity": face.identity,
        "box": [round(float(v), 2) for v in face.box],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        "score": round(float(face.score), 4),
        "detected": bool(face.detected),
    }


class TracksWriter:
    """Writes records to `path` atomically (`vidface.files.AtomicFile`): a temporary file next
    to it, renamed when the `with` block ends normally, removed on an error or Ctrl-C."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._file = AtomicFile(self.path, "w", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"cannot write tracks file {str(self.path)!r}: {error.strerror}") from None

    def __enter__(self) -> TracksWriter:
        return self

    def write(self, frame: int, pts: int, time: float, faces: list[TrackedFace]) -> None:
        self._file.file.write(json.dumps(frame_record(frame, pts, time, faces), separators=(",", ":")) + "\n")

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._file.__exit__(kind, value, traceback)
