"""Temporary files and folders that a killed process leaves are removed by the next process
that writes the same target (or makes a scratch folder), and those a live process holds are
kept; real processes, killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vidface.files import ABANDONED_AFTER, SCRATCH_PREFIX, AtomicFile, atomic_output, scratch_folder, sha256_of_files


def _holding(code: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A child running `code` (after `import os, signal, time` and vidface.files), which prints a
    path and then holds it, or kills itself."""
    return subprocess.Popen([sys.executable, "-c", "import os, signal, time\nfrom pathlib import Path\n"
                             "from vidface.files import AtomicFile, scratch_folder\n" + code],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_the_temporary_of_a_killed_writer_goes_with_the_next_writer_of_its_target(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write = ("written = AtomicFile(Path({target!r}), 'w')\nwritten.file.write('half a report'); written.file.flush()\n"
             "print(written.temporary.name, flush=True)\n{then}\n")
    killed = _holding(write.format(target=str(target), then="os.kill(os.getpid(), signal.SIGKILL)"))
    left = tmp_path / killed.stdout.readline().strip()
    assert killed.wait() == -signal.SIGKILL and left.read_text() == "half a report"
    alive = _holding(write.format(target=str(target), then="time.sleep(60)"))
    held = tmp_path / alive.stdout.readline().strip()
    try:
        young = tmp_path / f".{target.name}.0123abcd.partial"  # unlocked, but young: perhaps not locked yet
        young.write_text("")
        other = tmp_path / ".report.html.notours.partial"  # not a name vidface makes
        other.write_text("")
        stale = time.time() - ABANDONED_AFTER - 1
        for path in (left, held, other):
            os.utime(path, (stale, stale))
        with atomic_output(target) as partial:
            assert not left.exists() and held.exists() and young.exists() and other.exists()
            partial.write_text("the whole report")
        assert target.read_text() == "the whole report"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, held.name, young.name, other.name])
        with AtomicFile(target, "w") as written:  # a live writer's, whatever its age, stays
            written.file.write("again")
        assert held.exists() and target.read_text() == "again"
    finally:
        alive.kill()
        alive.wait()


def test_a_scratch_folder_of_a_killed_process_goes_with_the_next_one(tmp_path: Path, monkeypatch) -> None:
    """The scratch folder a killed process held is removed by the next one made on the machine;
    one that a live process holds is kept."""
    make = ("with scratch_folder() as folder:\n"
            "    (folder / 'segment-00001.bin.part').write_bytes(b'x' * 1000)\n"
            "    print(folder.name, flush=True)\n"
            "    {then}\n")
    killed = _holding(make.format(then="os.kill(os.getpid(), signal.SIGKILL)"), {"TMPDIR": str(tmp_path)})
    killed_folder = tmp_path / killed.stdout.readline().strip()
    assert killed.wait() == -signal.SIGKILL and (killed_folder / "segment-00001.bin.part").is_file()
    alive = _holding(make.format(then="time.sleep(60)"), {"TMPDIR": str(tmp_path)})
    alive_folder = tmp_path / alive.stdout.readline().strip()
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with scratch_folder() as mine:
            assert not killed_folder.exists() and alive_folder.is_dir()
            assert sorted(tmp_path.glob(SCRATCH_PREFIX + "*")) == sorted([alive_folder, mine])
        assert not mine.exists()
    finally:
        alive.kill()
        alive.wait()


def test_file_hashes_are_read_once_and_kept_without_a_writable_cache(tmp_path: Path) -> None:
    """`sha256_of_files` reads a file once while its size and time stay (a changed byte under
    the same stamp is not seen, as intended: the stamp stands for the content); where the cache
    cannot be written it still hashes; a missing file is an OSError for the caller to word."""

    model = tmp_path / "model.onnx"
    model.write_bytes(b"graph one")
    cache = tmp_path / "cache"
    want = hashlib.sha256(b"graph one").hexdigest()
    assert sha256_of_files({"m": model}, cache) == {"m": want}
    stamp = model.stat()
    model.write_bytes(b"graph two")
    os.utime(model, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert sha256_of_files({"m": model}, cache) == {"m": want}
    os.utime(model, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    assert sha256_of_files({"m": model}, cache) == {"m": hashlib.sha256(b"graph two").hexdigest()}
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert sha256_of_files({"m": model}, blocked / "cache") == {"m": hashlib.sha256(b"graph two").hexdigest()}
    with pytest.raises(OSError) as raised:
        sha256_of_files({"gone": tmp_path / "gone.onnx"}, cache)
    assert raised.value.filename == str(tmp_path / "gone.onnx")
