"""Files that appear only when complete: written under a temporary name beside their target and
renamed into place at the end, removed instead on any error or interruption (and, where the
writer was killed, by the next writer of the same target). With
``durable=True`` the file's data and then the rename are synced to disk, so that after a power
cut the target is either the old file or the whole new one (what a resumable run's segments and
manifest rely on). Scratch folders, for files that are read back and never kept, go where the
system puts temporary files, and do not outlive a killed process for long. Files' SHA-256, kept
by path, size and time so that large files are read once."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no flock, so what a killed process left stays
    fcntl = None

log = logging.getLogger(__name__)

ABANDONED_AFTER = 60.0
"""Seconds after its last write that an unlocked temporary counts as abandoned (younger, it may be
one whose writer has not locked it yet)."""


def _temporary_beside(target: Path) -> Path:
    """A new unique hidden temporary name beside `target`, after removing those a writer of the
    same target left when it was killed (`_remove_abandoned_temporaries`)."""
    _remove_abandoned_temporaries(target)
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")


def _remove_abandoned_temporaries(target: Path) -> None:
    """Remove the unique temporaries of `target` that no live writer holds (`_abandoned`) and
    that are ABANDONED_AFTER old."""
    pattern = f".{glob.escape(target.name)}." + "[0-9a-f]" * 8 + ".partial"
    for path in target.parent.glob(pattern):
        if _abandoned(path, idle=ABANDONED_AFTER):
            path.unlink(missing_ok=True)


def _hold(file: IO[Any]) -> None:
    """Lock an open file for as long as it is open (see `_abandoned`)."""
    if fcntl is not None:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a file this process just made: never blocks


def _abandoned(lock: Path, *, idle: float = 0.0) -> bool:
    """Whether `lock`, a uniquely named file that its process held an flock on while in use
    (`_hold`), is held by nobody (the system releases the lock however the process ends) and was
    last written `idle` seconds ago or more. No later process takes such a name, so it stays
    free. False where flock does not exist, or the file is gone or not this user's."""
    if fcntl is None:
        return False
    try:
        with open(lock, "rb") as file:
            if time.time() - os.fstat(file.fileno()).st_mtime < idle:
                return False
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except OSError:
        return False


def owned_temporary(target: Path) -> Path:
    """The temporary name of a file only one run writes at a time (OUT and its sidecar, under
    OUT's lock): fixed, so a run killed before its rename leaves a file that the next run of the
    same OUT writes over, instead of one more hidden file per kill."""
    return target.with_name(f".{target.name}.vidface-partial")


def _put_in_place(temporary: Path, target: Path, durable: bool) -> None:
    if durable:
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
    os.replace(temporary, target)
    if durable:
        sync_folder(target.parent)


@contextmanager
def atomic_output(target: Path, *, durable: bool = False, temporary: Path | None = None) -> Iterator[Path]:
    """Yield a hidden temporary path next to `target` (default: unique) for a writer that opens
    paths itself (PyAV, safetensors); when the block ends normally it replaces `target`,
    otherwise it is removed, so `target` is either untouched or complete."""
    temporary = temporary or _temporary_beside(target)
    try:
        with open(temporary, "wb") as held:  # the writer opens the same file by its path
            _hold(held)
            yield temporary
            _put_in_place(temporary, target, durable)
    finally:
        temporary.unlink(missing_ok=True)


class AtomicFile:
    """An open file that becomes `target` on `commit` (or a normal end of its `with` block) and
    is removed on `discard` (or an error). temporary: its name while written (default: hidden,
    unique, beside the target)."""

    def __init__(self, target: Path, mode: str = "wb", *, durable: bool = False, temporary: Path | None = None,
                 **options: Any) -> None:
        self.target = Path(target)
        self.temporary = temporary or _temporary_beside(self.target)
        self.durable = durable
        self.file: IO[Any] = open(self.temporary, mode, **options)
        _hold(self.file)

    def commit(self) -> None:
        self.file.close()
        _put_in_place(self.temporary, self.target, self.durable)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:  # flushing what is thrown away failed (a full disk): nothing to keep
            pass
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None and not self.file.closed:
            self.commit()
        else:
            self.discard()


def sync_folder(path: Path) -> None:
    """Make a rename in `path` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's contents, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


FILE_HASHES = "file-hashes.json"
"""The record `sha256_of_files` keeps in a cache folder."""


def sha256_of_files(paths: Mapping[str, Path], cache: Path) -> dict[str, str]:
    """{name: SHA-256} of each file of `paths`, from the record kept in the `cache` folder where
    the file's resolved path, size and modification time match it, else read (`sha256_of`) and
    recorded: model files of hundreds of megabytes are hashed at every run's start otherwise.
    OSError where a file cannot be read; a record that cannot be written only costs reading the
    files again next time."""
    record = cache / FILE_HASHES
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    hashes, changed = {}, False
    for name, path in paths.items():
        stat = path.stat()
        key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
        entry = known.get(key)
        if isinstance(entry, list) and entry[:2] == stamp:
            hashes[name] = entry[2]
            continue
        hashes[name] = sha256_of(path)
        known[key] = [*stamp, hashes[name]]
        changed = True
    if changed:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with AtomicFile(record, "w", encoding="utf-8") as written:
                json.dump(known, written.file)
        except OSError as error:
            log.debug("could not keep file hashes in %s: %s", record, error)
    return hashes


SCRATCH_PREFIX = "vidface-scratch-"
_SCRATCH_LOCK = ".lock"


@contextmanager
def scratch_folder(root: Path | None = None) -> Iterator[Path]:
    """A private folder in `root` (default: the system's temporary folder), removed when the
    block ends, and, if its process is killed first (a preempted farm worker), by the next
    `scratch_folder` in the same root: each holds an flock on its lock file while in use, which
    the system releases however the process ends. Where flock does not exist (Windows) a killed
    process's folder stays. A block may move the folder away (to publish it whole); it should
    remove the lock file first (see `publish_folder`)."""
    root = root or Path(tempfile.gettempdir())
    if fcntl is None:
        with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=root) as folder:
            yield Path(folder)
        return
    for folder in root.glob(SCRATCH_PREFIX + "*"):
        if _abandoned(folder / _SCRATCH_LOCK):  # a folder still being made has no lock file yet
            shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))
    try:
        # Locked before it is named: a lock file that exists is held, or its holder is dead.
        with open(folder / (_SCRATCH_LOCK + "-new"), "wb") as lock:
            _hold(lock)
            os.replace(folder / (_SCRATCH_LOCK + "-new"), folder / _SCRATCH_LOCK)
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish_folder(scratch: Path, target: Path) -> bool:
    """Move a complete `scratch_folder` to `target` in one rename (same file system), without its
    lock file. False, and `scratch` left to its block's cleanup, if `target` already exists (another
    process published it first)."""
    (scratch / _SCRATCH_LOCK).unlink(missing_ok=True)  # the flock outlives the name
    try:
        os.rename(scratch, target)
    except OSError:
        if target.is_dir():
            return False
        raise
    return True


def mark_used(path: Path) -> None:
    """Make `path` the most recently used entry of its cache (its modification time, what
    `forget_least_recently_used` goes by). A cache this user may only read (one shared by an
    administrator) is still used, unmarked."""
    try:
        path.touch()
    except OSError:
        pass


def most_recently_used_first(entries: Iterable[Path]) -> list[Path]:
    """`entries` of a cache, most recently used first; one removed meanwhile (by another process)
    comes last."""
    def used(entry: Path) -> int:
        try:
            return entry.stat().st_mtime_ns
        except OSError:
            return -1

    return sorted(entries, key=used, reverse=True)


def forget_least_recently_used(entries: Iterable[Path], newest: Path, keep: int) -> None:
    """Remove all but the `keep` most recently used of a cache's `entries` (files or folders),
    `newest` (just made) always among those kept."""
    others = most_recently_used_first(entry for entry in entries if entry != newest)
    for old in others[keep - 1:]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
