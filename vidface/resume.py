"""Work files of a resumable run: a folder next to OUT, a manifest, checksummed video segments.

A resumable run encodes the video in segments of frames, each with a fresh encoder (so each
starts with a keyframe) and the same settings, and stores each segment's packets in a file of
its own in the work folder ``.OUT.vidface-work/`` next to OUT. The manifest (JSON, replaced
atomically) names what the segments were made from — the input's fingerprint and a key of
every setting that changes the video — and lists each finished segment with its frame range
and sha256. A later run with the same input and settings reuses the finished segments; any
mismatch (other input, other settings, a missing, truncated or altered segment) discards the
whole folder, so segments of different runs are never mixed.

Segment files hold raw packets (pts, dts, duration, keyframe flag, bytes), so timestamps come
back exactly as the encoder gave them, whatever OUT's container. A restoring run also keeps,
beside each segment, its frames' sidecar entries (`edits_path`, vidface.provenance), checksummed
with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidface import __version__
from vidface.errors import InputError, OutputBusy, OutputError, OutputExists
from vidface.files import AtomicFile, sha256_of
from vidface.io.sequence import input_files

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 3
FINGERPRINT_BYTES = 1 << 20
"""Bytes hashed at each end of the input for its fingerprint (with its size and mtime)."""

_MAGIC = b"vidface-segment 1\n"
_HEADER = struct.Struct("<qqqBI")  # pts, dts, duration, flags, size
_NO_TIME = -(1 << 63)
_KEYFRAME = 1
_SIDE_DATA = 2  # the packet's side data follows its bytes: a count, then each entry's name and bytes
_SIDE_COUNT = struct.Struct("<H")
_SIDE_ENTRY = struct.Struct("<BI")  # name length, size


@contextmanager
def output_lock(output: Path, *, overwrite: bool) -> Iterator[None]:
    """Hold OUT for one run: a second run writing the same OUT (two batch jobs over one folder)
    gets an OutputBusy error instead of sharing, and mixing, its work files; without
    `overwrite`, an OUT that another run finished since this one checked it is an OutputExists.
    The lock is an flock on a hidden file next to OUT, released by the system whatever way the
    run ends; where flock does not exist (Windows) runs are not locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = output.with_name(f".{output.name}.vidface-lock")
    while True:
        try:
            file = path.open("a")
        except OSError as error:
            raise OutputError(f"cannot create {str(path)!r} ({error.strerror}); check the output folder") from None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise OutputBusy(f"another vidface run is writing {str(output)!r}; wait for it to end or "
                             "choose another output") from None
        if _same_file(file, path):
            break
        file.close()  # the holder removed the lock file as it ended, after this run opened it: lock anew
    with file:
        try:
            if output.exists() and not overwrite:
                raise OutputExists(f"output {str(output)!r} was written by another run meanwhile; pass -y to "
                                   "overwrite it")
            yield
        finally:
            path.unlink(missing_ok=True)


def _same_file(file: Any, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def work_folder(output: Path, work_dir: Path | None = None) -> Path:
    """The work folder of OUT: hidden, next to it, so it is on the same file system; or, with
    `work_dir` (storage the render farm's workers share), in there, named after OUT's path."""
    if work_dir is None:
        return output.with_name(f".{output.name}.vidface-work")
    return Path(work_dir) / f"{output.name}-{hashlib.sha1(str(output.resolve()).encode()).hexdigest()[:12]}.vidface-work"


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies the input's content cheaply: size, mtime and sha256 of its head and tail;
    of an image sequence, its files' total size and latest mtime, its first file's head and its
    last file's tail, and its files' count."""
    files = input_files(path)
    try:
        stats = [file.stat() for file in files]
        with files[0].open("rb") as file:
            head = hashlib.sha256(file.read(FINGERPRINT_BYTES)).hexdigest()
        with files[-1].open("rb") as file:
            file.seek(max(0, stats[-1].st_size - FINGERPRINT_BYTES))
            tail = hashlib.sha256(file.read(FINGERPRINT_BYTES)).hexdigest()
    except OSError as error:
        raise InputError(f"input {str(path)!r} cannot be read ({error.strerror})") from None
    return {"size": sum(stat.st_size for stat in stats), "mtime_ns": max(stat.st_mtime_ns for stat in stats),
            "head_sha256": head, "tail_sha256": tail, **({"files": len(files)} if len(files) > 1 else {})}


def check_unchanged(path: Path, before: Mapping[str, Any]) -> None:
    """InputError unless the input's fingerprint is still `before`: a file truncated, rewritten or
    replaced while it was read may have given frames of two versions, or too few."""
    try:
        unchanged = fingerprint(path) == before
    except InputError:
        unchanged = False
    if not unchanged:
        raise InputError(f"input {str(path)!r} changed while it was read; nothing was written (run again once "
                         "it is complete)")


def run_key(input_path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's key: vidface's version, the input's fingerprint, and `settings` (every
    setting that changes the encoded video, JSON-serialisable)."""
    return json.loads(json.dumps({"vidface": __version__, "input": fingerprint(input_path),
                                  "settings": dict(settings)}, sort_keys=True, default=str))


def weights_identity(location: Any) -> dict[str, list[list[Any]]]:
    """Which weights a run uses, cheaply: each file of a `vidface.weights.WeightsLocation`
    (release and base: a folder or one file) as [relative path, size, mtime], so a changed
    or replaced file is noticed without reading it."""

    def files(root: Path) -> list[list[Any]]:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        return [[str(p.relative_to(root)) if p != root else p.name, p.stat().st_size, p.stat().st_mtime_ns]
                for p in paths]

    return {"release": files(Path(location.release)), "base": files(Path(location.base))}


@dataclass(frozen=True)
class SegmentRecord:
    """A finished segment: output frames [first, stop), of which it holds `frames` (fewer where
    the input could not give some), its file (in the work folder), the file's sha256, its
    packet count, and the encoder's reorder delay in packets (how many packets a packet may
    come before the frames it follows in presentation order). edits_sha256: the sha256 of its
    sidecar entries' file (`edits_path`), None for a run that keeps none."""

    index: int
    first: int
    stop: int
    frames: int
    file: str
    sha256: str
    packets: int
    reorder_delay: int
    edits_sha256: str | None = None


def edits_path(segment: Path) -> Path:
    """The file of a segment's sidecar entries, one JSON line per frame with edits."""
    return segment.with_suffix(".edits.jsonl")


@dataclass(frozen=True)
class EncodedPacket:
    """One encoded video packet as stored in a segment file (times in the video time base)."""

    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    data: bytes
    side_data: tuple[tuple[str, bytes], ...] = ()
    """The encoder's side data, by PyAV's name of its type: VP8/VP9's alpha channel travels as
    "matroska_block_additional", beside the picture's bytes."""

    def to_av(self, time_base: Fraction) -> av.Packet:
        packet = av.Packet(self.data)
        packet.pts, packet.dts = self.pts, self.dts
        packet.duration = self.duration
        packet.time_base = time_base
        packet.is_keyframe = self.keyframe
        for name, data in self.side_data:
            entry = av.packet.PacketSideData(av.packet.packet_sidedata_type_from_literal(name), len(data))
            entry.update(data)
            entry.to_packet(packet, move=True)
        return packet


class SegmentWriter:
    """Writes one segment's packets to ``<name>.part``, hashing as it goes; `finish` syncs it
    to disk and renames it to its final name (`vidface.files.AtomicFile`, durable), so a
    finished name always holds a whole file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = AtomicFile(path, "wb", durable=True, temporary=path.with_name(path.name + ".part"))
        self._hash = hashlib.sha256()
        self._pts: list[int] = []
        self.packets = 0
        self._write(_MAGIC)

    def _write(self, data: bytes) -> None:
        self._file.file.write(data)
        self._hash.update(data)

    def write(self, packets: Iterable[av.Packet]) -> None:
        for packet in packets:
            data = bytes(packet)
            side_data = [(entry.data_type, bytes(entry)) for entry in packet.iter_sidedata()]
            flags = (_KEYFRAME if packet.is_keyframe else 0) | (_SIDE_DATA if side_data else 0)
            self._write(_HEADER.pack(_time(packet.pts), _time(packet.dts), packet.duration or 0, flags, len(data)))
            self._write(data)
            if side_data:
                self._write(_SIDE_COUNT.pack(len(side_data)) + b"".join(
                    _SIDE_ENTRY.pack(len(name), len(entry)) + name.encode() + entry for name, entry in side_data))
            if packet.pts is not None:
                self._pts.append(packet.pts)
            self.packets += 1

    def finish(self, index: int, first: int, stop: int, frames: int, edits: list[str] | None = None) -> SegmentRecord:
        """Put the segment in place, and its sidecar entries (`edits`: lines) beside it."""
        edits_sha256 = None
        if edits is not None:
            data = "".join(edits).encode()
            with AtomicFile(edits_path(self.path), "wb", durable=True) as written:
                written.file.write(data)
            edits_sha256 = hashlib.sha256(data).hexdigest()
        self._file.commit()
        return SegmentRecord(index=index, first=first, stop=stop, frames=frames, file=self.path.name,
                             sha256=self._hash.hexdigest(), packets=self.packets,
                             reorder_delay=reorder_delay(self._pts), edits_sha256=edits_sha256)

    def discard(self) -> None:
        self._file.discard()


def read_segment(path: Path, *, data: bool = True) -> Iterator[EncodedPacket]:
    """The packets of a segment file, in decode order, one at a time (data=False: timestamps
    and flags only, with empty data, without reading the packets' bytes)."""
    def read(size: int) -> bytes:
        chunk = file.read(size)
        if len(chunk) < size:
            raise OutputError(f"work file {str(path)!r} is truncated; rerun with --no-resume")
        return chunk

    with path.open("rb") as file:
        if file.read(len(_MAGIC)) != _MAGIC:
            raise OutputError(f"work file {str(path)!r} is not a vidface segment; rerun with --no-resume")
        while header := file.read(_HEADER.size):
            pts, dts, duration, flags, size = _HEADER.unpack(header + read(_HEADER.size - len(header)))
            if data:
                payload = read(size)
            else:
                payload = b""
                file.seek(size, os.SEEK_CUR)
            side_data = []
            for _ in range(_SIDE_COUNT.unpack(read(_SIDE_COUNT.size))[0] if flags & _SIDE_DATA else 0):
                name_size, entry_size = _SIDE_ENTRY.unpack(read(_SIDE_ENTRY.size))
                side_data.append((read(name_size).decode(), read(entry_size)))
            yield EncodedPacket(pts=None if pts == _NO_TIME else pts, dts=None if dts == _NO_TIME else dts,
                                duration=duration, keyframe=bool(flags & _KEYFRAME), data=payload,
                                side_data=tuple(side_data))


def reorder_delay(pts: list[int]) -> int:
    """Packets (in decode order, these pts) by which decoding runs ahead of presentation: the
    largest i - rank(pts[i]); 0 without B-frames."""
    ranks = {value: rank for rank, value in enumerate(sorted(pts))}
    return max((i - ranks[value] for i, value in enumerate(pts)), default=0)


def decode_times(pts: list[int], delay: int) -> list[int]:
    """Decode timestamps for packets of these pts (decode order) with reorder delay `delay`:
    packet i gets the (i - delay)-th smallest pts, and the first `delay` packets the smallest
    ones moved back by the span of the first `delay` frames (as x264 does). Strictly
    increasing and never after a packet's pts, across segments made by separate encoders."""
    ordered = sorted(pts)
    if not ordered:
        return []
    lead = ordered[min(delay, len(ordered) - 1)] - ordered[0]
    return [ordered[i - delay] if i >= delay else ordered[i] - lead for i in range(len(pts))]


class WorkFolder:
    """The work folder of one run: its manifest and finished segments.

    `open` reuses a folder whose manifest matches `key` and whose segments are intact, and
    otherwise (or with restart=True) starts it afresh; `finished` lists the reusable segments.
    """

    def __init__(self, path: Path, key: dict[str, Any], finished: list[SegmentRecord],
                 extradata_sha256: str | None) -> None:
        self.path = path
        self.key = key
        self.finished = finished
        self.extradata_sha256 = extradata_sha256

    @classmethod
    def open(cls, path: Path, key: dict[str, Any], *, restart: bool = False) -> WorkFolder:
        shutil.rmtree(_finished_name(path), ignore_errors=True)
        if path.exists() and not path.is_dir():
            raise OutputError(f"work path {str(path)!r} is in the way and not a folder; remove it")
        if path.is_dir():
            reason = "--no-resume was given" if restart else _stale_reason(path, key)
            if reason is None:
                manifest = json.loads((path / MANIFEST).read_text())
                finished = [SegmentRecord(**record) for record in manifest["segments"]]
                log.info("resuming from %s: %d segments (%d frames) already done", path, len(finished),
                         sum(s.frames for s in finished))
                return cls(path, key, finished, manifest.get("extradata_sha256"))
            log.warning("starting over: the work folder %s does not match this run (%s)", path, reason)
            shutil.rmtree(path)
        try:
            path.mkdir()
        except OSError as error:
            raise OutputError(f"cannot create work folder {str(path)!r} ({error.strerror}); "
                              "check the output folder") from None
        folder = cls(path, key, [], None)
        folder._save()
        return folder

    def segment_path(self, index: int) -> Path:
        return self.path / f"segment-{index:05d}.bin"

    def add(self, record: SegmentRecord, extradata: bytes | None) -> None:
        """Record a finished segment (its file already in place) in the manifest; extradata:
        its encoder's headers (None for a segment without frames, whose encoder never opened)."""
        if extradata is not None:
            digest = hashlib.sha256(extradata).hexdigest()
            if self.extradata_sha256 is None:
                self.extradata_sha256 = digest
            elif digest != self.extradata_sha256:
                raise OutputError(f"the encoder's headers changed between segments in {str(self.path)!r}; "
                                  "rerun with --no-resume")
        self.finished.append(record)
        self._save()

    def _save(self) -> None:
        manifest = {"format": MANIFEST_VERSION, "key": self.key, "extradata_sha256": self.extradata_sha256,
                    "segments": [asdict(record) for record in self.finished]}
        with AtomicFile(self.path / MANIFEST, "w", durable=True, encoding="utf-8") as written:
            json.dump(manifest, written.file, indent=1, sort_keys=True)

    def remove(self) -> None:
        """Remove the folder: renamed first, in one step, to a name that says its run ended, so a
        run killed while deleting its files leaves nothing that looks resumable, and the next
        run of the same OUT (`open`, `discard_finished_work`) finishes the job."""
        finished = _finished_name(self.path)  # `open` removed any of an earlier run
        try:
            os.replace(self.path, finished)
        except OSError:
            finished = self.path
        shutil.rmtree(finished, ignore_errors=True)


def _finished_name(path: Path) -> Path:
    return path.with_name(path.name + "-ended")


def discard_finished_work(output: Path, work_dir: Path | None = None) -> None:
    """Remove what a run of an OUT that exists left behind when it was killed after putting OUT
    in place: its lock file, and its work folder, renamed or not, next to OUT or in `work_dir`.
    A work folder whose manifest was written after OUT is not OUT's: it belongs to a later run
    (with -y) and is kept. Nothing is removed while another run holds OUT."""
    try:
        with output_lock(output, overwrite=True):
            for path in {work_folder(output), work_folder(output, work_dir)}:
                shutil.rmtree(_finished_name(path), ignore_errors=True)
                try:
                    finished = (path / MANIFEST).stat().st_mtime_ns <= output.stat().st_mtime_ns
                except OSError:
                    finished = False
                if finished:
                    shutil.rmtree(path, ignore_errors=True)
    except OutputError:  # busy, or a folder this user cannot write: nothing of ours to tidy
        pass


def _stale_reason(path: Path, key: dict[str, Any]) -> str | None:
    """Why the work folder cannot be reused for `key`, or None when it can."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_VERSION:
            return "work files of another vidface version"
        stored = manifest["key"]
        records = [SegmentRecord(**record) for record in manifest["segments"]]
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "unreadable manifest"
    if stored != key:
        changed = sorted(name for name in set(stored) | set(key) if stored.get(name) != key.get(name))
        return "different " + " and ".join(changed)
    if len({record.index for record in records}) != len(records):
        return "a segment recorded twice"
    for record in records:
        segment = path / record.file
        if not segment.is_file():
            return f"{record.file} is missing"
        if sha256_of(segment) != record.sha256:
            return f"{record.file} does not match its checksum"
        edits = edits_path(segment)
        if record.edits_sha256 is not None and (not edits.is_file() or sha256_of(edits) != record.edits_sha256):
            return f"{edits.name} is missing or does not match its checksum"
    return None



def _time(value: int | None) -> int:
    return _NO_TIME if value is None else value
