"""Files that appear only when complete: written under a temporary name beside their target and
renamed into place at the end, removed instead on any error or interruption (and, where the
writer was killed, by the next writer of the same target). With
``durable=True`` the file's data and then the rename are synced to disk, so that after a power
cut the target is either the old file or the whole new one (what a resumable run's segments and
manifest rely on). Scratch folders, for files that are read back and never kept, go where the
system puts temporary files, and do not outlive a killed process for long."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any


ABANDONED_AFTER = 60.0
"""Seconds after its last write that an unlocked temporary counts as abandoned (younger, it may be
one whose writer has not locked it yet)."""


def _temporary_beside(target: Path) -> Path:
    """A new unique hidden temporary name beside `target`, after removing those a writer of the
    same target left when it was killed (`_remove_abandoned_temporaries`)."""
    _remove_abandoned_temporaries(target)
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")


def _remove_abandoned_temporaries(target: Path) -> None:
    """Remove the unique temporaries of `target` that no live writer holds: each writer keeps an
    flock on its temporary while it writes (`_hold`), which the system releases however the
    writer ends. Where flock does not exist (Windows) they stay."""
    try:
        import fcntl
    except ImportError:
        return
    pattern = f".{glob.escape(target.name)}." + "[0-9a-f]" * 8 + ".partial"
    for path in target.parent.glob(pattern):
        try:
            with open(path, "rb") as file:
                if time.time() - os.fstat(file.fileno()).st_mtime < ABANDONED_AFTER:
                    continue
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink()
        except OSError:  # held by a live writer, gone already, or not this user's
            continue


def _hold(file: IO[Any]) -> None:
    """Lock an open temporary for as long as it is open (see `_remove_abandoned_temporaries`)."""
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a file this process just made: never blocks


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


SCRATCH_PREFIX = "vidface-scratch-"
_SCRATCH_LOCK = ".lock"


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A private folder in the system's temporary folder, removed when the block ends, and, if
    its process is killed first (a preempted farm worker), by the next `scratch_folder` on the
    same machine: each holds an flock on its lock file while in use, which the system releases
    however the process ends. Where flock does not exist (Windows) a killed process's folder stays."""
    try:
        import fcntl
    except ImportError:
        with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX) as folder:
            yield Path(folder)
        return
    root = Path(tempfile.gettempdir())
    for abandoned in root.glob(SCRATCH_PREFIX + "*"):
        try:
            with open(abandoned / _SCRATCH_LOCK, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(abandoned, ignore_errors=True)
        except OSError:  # in use, still being made, or another user's
            continue
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))
    try:
        # Locked before it is named: a lock file that exists is held, or its holder is dead.
        with open(folder / (_SCRATCH_LOCK + "-new"), "wb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            os.replace(folder / (_SCRATCH_LOCK + "-new"), folder / _SCRATCH_LOCK)
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
