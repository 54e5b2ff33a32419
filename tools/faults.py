"""Fault injection: kill, starve and disturb real `vidface restore` runs (tiny random OSDFace on
CPU, resumable segments), then check that nothing was lost.

    python tools/faults.py [--kills 20] [--seed 1] [--only KIND,...] [--record]

Kinds of case:

* kill: SIGKILL at a point of the run, then the same command again. Named points (in the child,
  through a patched function: during model loading, a segment written but not renamed, a segment
  in place but not in the manifest, during the final mux, the sidecar in place but not OUT, OUT
  in place before the work folder is removed, the work folder half deleted) and the rest at
  random times of an uninterrupted run's length (`--kills` in all, drawn from `--seed`).
* disk full: the output folder on a small file system (tmpfs where this process may mount one,
  else a file-size limit) that fills during a segment, and during the final mux; then more room
  and the same command again, which must resume.
* read-only output folder (as root, a read-only mount of it), and the output folder
  removed while the run writes it (then created again, and the command rerun).
* input replaced while it is read; two runs at once on one OUT; two folder-mode runs at once on
  one folder; in folder mode, a file that grows and one that vanishes during the run.

Every case checks: each run ends with exit 0, or exit 1 and one line on stderr (never a
traceback); no OUT while a run has not finished; the input unchanged; and at the end, OUT and its
sidecar byte for byte those of an uninterrupted run, next to nothing else (no temporary, lock or
work file left). A table of cases tried, passed and failures by kind ends the run (exit 1 if any
failed); --record puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]

FRAMES, SIZE, SEGMENT = 60, (256, 192), 12
KINDS = ("traceback", "exit code", "partial output", "output differs", "left over", "input changed", "no resume")
CHILD = ("import os, sys; sys.path[:0] = {paths!r}\n"
         "from faults import arm; arm(os.environ.get('VIDFACE_FAULT'))\n"
         "from vidface.cli import main; sys.exit(main())")
NAMED_KILLS = ("model load", "segment before rename", "segment before manifest", "final mux",
               "sidecar before OUT", "OUT before cleanup", "cleanup half done")


def arm(point: str | None) -> None:
    """In the child: SIGKILL this process when the run reaches `point` (one of NAMED_KILLS)."""
    if not point:
        return
    import shutil as shutil_module

    import vidface.files
    import vidface.models.loading
    import vidface.resume

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def on_call(owner, name: str, when: Callable[..., bool]) -> None:
        original = getattr(owner, name)
        calls = [0]

        def patched(*args, **kwargs):
            calls[0] += 1
            if when(calls[0], *args, **kwargs):
                die()
            return original(*args, **kwargs)

        setattr(owner, name, patched)

    def half_then_die(path, *args, **kwargs):
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        if str(path).endswith("-ended") and files:
            for file in files[: len(files) // 2]:
                file.unlink()
            die()
        return rmtree(path, *args, **kwargs)

    if point == "model load":
        on_call(vidface.models.loading, "_torch_load", lambda count, *a, **k: count == 2)
    elif point == "segment before rename":
        on_call(vidface.resume.SegmentWriter, "finish", lambda count, *a, **k: count == 2)
    elif point == "segment before manifest":
        on_call(vidface.resume.WorkFolder, "add", lambda count, *a, **k: count == 3)
    elif point == "final mux":
        on_call(vidface.resume, "read_segment", lambda count, *a, data=True, **k: data and count >= 6)
    elif point == "sidecar before OUT":
        on_call(vidface.files, "_put_in_place",
                lambda count, temporary, target, durable: target.suffix == ".mp4")
    elif point == "OUT before cleanup":
        on_call(vidface.resume.WorkFolder, "remove", lambda count, *a, **k: True)
    elif point == "cleanup half done":
        rmtree = shutil_module.rmtree
        shutil_module.rmtree = half_then_die
    else:
        raise SystemExit(f"unknown fault point {point!r}")


@dataclass
class Setup:
    """What every case shares: the tiny model, the input clip and the uninterrupted run's result."""

    folder: Path
    clip: Path
    model: tuple[str, ...]
    reference: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float


def command(setup: Setup, source: Path, output: Path, *extra: str) -> list[str]:
    child = CHILD.format(paths=[str(ROOT / "tests"), str(ROOT / "tools")])
    return [sys.executable, "-c", child, "restore", str(source), str(output), *setup.model,
            "--segment-frames", str(SEGMENT), "--no-progress", "-q", *extra]


def start(setup: Setup, source: Path, output: Path, *extra: str, fault: str | None = None,
          limit: int | None = None) -> subprocess.Popen:
    def child_setup() -> None:
        if limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, VIDFACE_FAULT=fault or "")
    return subprocess.Popen(command(setup, source, output, *extra), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=child_setup)


def finish(process: subprocess.Popen) -> Run:
    started = time.monotonic()
    stdout, stderr = process.communicate()
    return Run(process.returncode, stdout, stderr, time.monotonic() - started)


def run(setup: Setup, source: Path, output: Path, *extra: str, **options) -> Run:
    return finish(start(setup, source, output, *extra, **options))


class Check:
    """The failures of one case, by kind (KINDS)."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []

    def fail(self, kind: str, detail: str) -> None:
        self.failures.append((kind, detail))

    def ended_cleanly(self, result: Run, *, killed: bool = False, expect: tuple[int, ...] = (0, 1)) -> None:
        """A run's ending: exit 0, or 1 with one line on stderr (or SIGKILL, when it was killed)."""
        lines = result.stderr.strip().splitlines()
        if "Traceback" in result.stderr:
            self.fail("traceback", lines[-1] if lines else "")
        elif killed and result.code == -signal.SIGKILL:
            return
        elif result.code not in expect or (result.code == 1 and len(lines) != 1):
            self.fail("exit code", f"exit {result.code}: {' | '.join(lines[-3:])}")

    def no_output(self, output: Path) -> None:
        if output.exists():
            self.fail("partial output", f"{output.name} exists after a run that did not finish")

    def same_as_reference(self, setup: Setup, output: Path, *, sidecar: bool = True) -> None:
        names = [output.name] + ([output.name + ".vidface.json"] if sidecar else [])
        for name in names:
            path = output.with_name(name)
            if not path.exists() or path.read_bytes() != setup.reference[name.replace(output.stem, "out", 1)]:
                self.fail("output differs", f"{name} is not the uninterrupted run's")

    def nothing_left(self, folder: Path, expected: set[str]) -> None:
        left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        extra = [name for name in left if name not in expected]
        if extra:
            self.fail("left over", ", ".join(extra))

    def input_unchanged(self, path: Path, digest: str) -> None:
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            self.fail("input changed", str(path))


def prepare(folder: Path) -> Setup:
    from bench import write_clip
    from tiny_model import write_tiny_osdface

    tiny = write_tiny_osdface(folder / "tiny")
    model = ("--weights", str(tiny.release), "--base", str(tiny.base), "--device", "cpu", "--dtype", "fp32",
             "--batch-size", "4")
    clip = write_clip(folder / "in.mp4", *SIZE, FRAMES / 25)
    setup = Setup(folder, clip, model)
    reference = folder / "reference"
    reference.mkdir()
    output = reference / "out.mp4"
    result = run(setup, clip, output)
    if result.code != 0:
        raise SystemExit(f"the uninterrupted run failed: {result.stderr.strip()}")
    setup.seconds = result.seconds
    setup.reference = {"out.mp4": output.read_bytes(), "out.mp4.vidface.json": (reference / "out.mp4.vidface.json").read_bytes()}
    return setup


def case_folder(setup: Setup, name: str) -> tuple[Path, Path, str]:
    """A fresh folder holding a copy of the input: (folder, input, input's sha256)."""
    folder = setup.folder / name.replace(" ", "-")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    source = folder / "in.mp4"
    shutil.copyfile(setup.clip, source)
    return folder, source, hashlib.sha256(source.read_bytes()).hexdigest()


OUTPUTS = {"in.mp4", "out.mp4", "out.mp4.vidface.json"}


def kill_case(setup: Setup, point: str | None, delay: float | None) -> Check:
    """SIGKILL at a named point (in the child) or after `delay` seconds, then rerun."""
    check = Check()
    folder, source, digest = case_folder(setup, f"kill {point or round(delay, 2)}")
    output = folder / "out.mp4"
    process = start(setup, source, output, fault=point)
    if delay is not None:
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
    killed = finish(process)
    check.ended_cleanly(killed, killed=True)
    if point is not None and killed.code != -signal.SIGKILL:
        check.fail("exit code", f"the run never reached {point!r} (exit {killed.code})")
    complete = output.exists()
    if complete:  # killed after OUT was put in place: it must be whole already
        check.same_as_reference(setup, output)
    rerun = run(setup, source, output)
    check.ended_cleanly(rerun, expect=(1,) if complete else (0,))
    check.same_as_reference(setup, output)
    check.nothing_left(folder, OUTPUTS)
    check.input_unchanged(source, digest)
    return check


def mount_small(folder: Path, size: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def disk_full_case(setup: Setup, during: str) -> Check:
    """Room for part of one segment ("segment") or for the segments but not OUT ("mux"); then
    more room and the same command again, which resumes from the segments kept."""
    check = Check()
    folder, source, digest = case_folder(setup, f"disk full {during}")
    out_size = len(setup.reference["out.mp4"])
    room = int(out_size * (0.5 if during == "segment" else 1.5))
    space = folder / "space"
    mounted = mount_small(space, room)
    output = space / "out.mp4"
    try:
        full = run(setup, source, output, limit=None if mounted else int(out_size * (0.1 if during == "segment" else 0.6)))
        check.ended_cleanly(full, expect=(1,))
        check.no_output(output)
        kept = work_consistent(check, output)
        if mounted:
            subprocess.run(["mount", "-o", f"remount,size={out_size * 4}", str(space)], check=True)
        rerun = run(setup, source, output)
        check.ended_cleanly(rerun, expect=(0,))
        if kept and "resumed" not in rerun.stdout:
            check.fail("no resume", f"{kept} segments were kept, but the rerun started over")
        check.same_as_reference(setup, output)
        check.nothing_left(space, {"out.mp4", "out.mp4.vidface.json"})
    finally:
        if mounted:
            subprocess.run(["umount", str(space)], check=False)
    check.input_unchanged(source, digest)
    return check


def work_consistent(check: Check, output: Path) -> int:
    """Whether the work folder left by a failed run is one a rerun can trust: a readable manifest
    whose segments all match their checksums. Returns the segments it keeps."""
    import json

    from vidface.files import sha256_of
    from vidface.resume import MANIFEST, work_folder

    work = work_folder(output)
    if not work.exists():
        return 0
    try:
        segments = json.loads((work / MANIFEST).read_text())["segments"]
    except (OSError, ValueError, KeyError) as error:
        check.fail("no resume", f"manifest unreadable: {error}")
        return 0
    for segment in segments:
        if sha256_of(work / segment["file"]) != segment["sha256"]:
            check.fail("no resume", f"{segment['file']} does not match the manifest")
    return len(segments)


def read_only_case(setup: Setup) -> Check:
    """An output folder the run may not write (as root, whom permissions do not stop, a read-only
    mount of it): one line, nothing written."""
    check = Check()
    folder, source, digest = case_folder(setup, "read-only folder")
    closed = folder / "closed"
    closed.mkdir()
    closed.chmod(0o555)
    mounted = os.geteuid() == 0 and subprocess.run(
        f"mount --bind {closed} {closed} && mount -o remount,ro,bind {closed}", shell=True,
        capture_output=True).returncode == 0
    try:
        result = run(setup, source, closed / "out.mp4")
        check.ended_cleanly(result, expect=(1,))
        check.nothing_left(closed, set())
    finally:
        if mounted:
            subprocess.run(["umount", str(closed)], check=False)
    check.input_unchanged(source, digest)
    return check


def wait_for_segment(output: Path, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Wait until the run has finished a segment (its manifest lists one); False if it ended first."""
    from vidface.resume import MANIFEST, work_folder

    manifest = work_folder(output) / MANIFEST
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if '"index"' in manifest.read_text():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def removed_folder_case(setup: Setup) -> Check:
    """The output folder removed while the run writes it; then created again and the command rerun."""
    check = Check()
    folder, source, digest = case_folder(setup, "output folder removed")
    target = folder / "target"
    target.mkdir()
    output = target / "out.mp4"
    process = start(setup, source, output)
    if not wait_for_segment(output, process):
        check.fail("exit code", "the run ended before its first segment")
    shutil.rmtree(target, ignore_errors=True)
    check.ended_cleanly(finish(process), expect=(1,))
    check.no_output(output)
    target.mkdir(exist_ok=True)
    check.ended_cleanly(run(setup, source, output), expect=(0,))
    check.same_as_reference(setup, output)
    check.nothing_left(target, {"out.mp4", "out.mp4.vidface.json"})
    check.input_unchanged(source, digest)
    return check


def replaced_input_case(setup: Setup) -> Check:
    """IN replaced by another video while it is read: one line, no OUT; the rerun restores the new IN."""
    from bench import write_clip

    check = Check()
    folder, source, digest = case_folder(setup, "input replaced")
    other = write_clip(folder / "other.mp4", *SIZE, FRAMES / 25, faces=2)
    os.replace(other, folder / "first.mp4")
    shutil.copyfile(folder / "first.mp4", source)  # the run starts on another video...
    output = folder / "out.mp4"
    process = start(setup, source, output)
    if not wait_for_segment(output, process):
        check.fail("exit code", "the run ended before its first segment")
    shutil.copyfile(setup.clip, folder / "new.mp4")
    os.replace(folder / "new.mp4", source)  # ...and IN becomes the reference input under it
    result = finish(process)
    check.ended_cleanly(result, expect=(1,))
    if "changed while it was read" not in result.stderr:
        check.fail("exit code", f"not reported as a changed input: {result.stderr.strip()}")
    check.no_output(output)
    check.ended_cleanly(run(setup, source, output), expect=(0,))
    check.same_as_reference(setup, output)
    check.nothing_left(folder, OUTPUTS | {"first.mp4"})
    check.input_unchanged(source, digest)
    return check


def same_output_case(setup: Setup) -> Check:
    """A second run on an OUT that a first is writing: one line; the first is unaffected."""
    check = Check()
    folder, source, digest = case_folder(setup, "two runs one output")
    output = folder / "out.mp4"
    first = start(setup, source, output)
    wait_for_segment(output, first)
    second = run(setup, source, output)
    check.ended_cleanly(second, expect=(1,))
    if "another vidface run is writing" not in second.stderr:
        check.fail("exit code", f"the second run was not refused: {second.stderr.strip()}")
    check.ended_cleanly(finish(first), expect=(0,))
    check.same_as_reference(setup, output)
    check.nothing_left(folder, OUTPUTS)
    check.input_unchanged(source, digest)
    return check


def folder_setup(setup: Setup, name: str, count: int) -> tuple[Path, Path, Path, list[str]]:
    folder, source, _ = case_folder(setup, name)
    videos, outputs = folder / "videos", folder / "restored"
    videos.mkdir()
    names = [f"clip{number}.mp4" for number in range(count)]
    for video in names:
        shutil.copyfile(source, videos / video)
    source.unlink()
    return folder, videos, outputs, names


def concurrent_folders_case(setup: Setup) -> Check:
    """Two folder-mode runs at once over one folder: they share the files, each done once."""
    check = Check()
    folder, videos, outputs, names = folder_setup(setup, "two folder runs", 3)
    first = start(setup, videos, outputs)
    wait_for_segment(outputs / names[0], first)
    second = start(setup, videos, outputs)
    results = [finish(first), finish(second)]
    for result in results:
        check.ended_cleanly(result, expect=(0,))
    done = sum(result.stdout.count(" done ") for result in results)
    if done != len(names):
        check.fail("exit code", f"{done} files restored by the two runs for {len(names)} files")
    for name in names:
        check.same_as_reference(setup, outputs / name, sidecar=False)
    check.nothing_left(outputs, set(names) | {name + ".vidface.json" for name in names})
    for name in names:
        check.input_unchanged(videos / name, hashlib.sha256(setup.clip.read_bytes()).hexdigest())
    return check


def changing_folder_case(setup: Setup) -> Check:
    """In folder mode, a file that grows while it is read and one that vanishes before its turn:
    each fails in one row, the rest are restored, and a rerun does what is left."""
    check = Check()
    folder, videos, outputs, names = folder_setup(setup, "files grow and vanish", 3)
    growing, vanishing = names[0], names[2]
    process = start(setup, videos, outputs)
    wait_for_segment(outputs / growing, process)
    with open(videos / growing, "ab") as file:
        file.write(b"\0" * 4096)
    (videos / vanishing).unlink()
    result = finish(process)
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1] and line.split()[0] in names}
    if result.code != 1 or "Traceback" in result.stderr:
        check.fail("exit code" if "Traceback" not in result.stderr else "traceback", f"exit {result.code}")
    for name, word in ((growing, "changed while it was read"), (vanishing, "failed"), (names[1], "done")):
        if word not in rows.get(name, ""):
            check.fail("exit code", f"{name}: {rows.get(name, 'no row')!r} does not say {word!r}")
    for name in (growing, vanishing):
        check.no_output(outputs / name)
    with open(videos / growing, "r+b") as file:
        file.truncate(setup.clip.stat().st_size)
    check.ended_cleanly(run(setup, videos, outputs), expect=(0,))
    for name in (growing, names[1]):
        check.same_as_reference(setup, outputs / name, sidecar=False)
    check.nothing_left(outputs, {growing, names[1], growing + ".vidface.json", names[1] + ".vidface.json"})
    return check


def cases(kills: int, seed: int, setup: Setup) -> list[tuple[str, Callable[[], Check]]]:
    """Every case, named, as a function to run."""
    rng = random.Random(seed)
    found: list[tuple[str, Callable[[], Check]]] = []
    for point in NAMED_KILLS[:kills]:
        found.append((f"kill: {point}", lambda point=point: kill_case(setup, point, None)))
    for _ in range(max(0, kills - len(NAMED_KILLS))):
        delay = rng.uniform(0.2, setup.seconds)
        found.append((f"kill: after {delay:.2f} s", lambda delay=delay: kill_case(setup, None, delay)))
    found += [("disk full: during a segment", lambda: disk_full_case(setup, "segment")),
              ("disk full: during the mux", lambda: disk_full_case(setup, "mux")),
              ("read-only output folder", lambda: read_only_case(setup)),
              ("output folder removed", lambda: removed_folder_case(setup)),
              ("input replaced while read", lambda: replaced_input_case(setup)),
              ("two runs on one output", lambda: same_output_case(setup)),
              ("two folder-mode runs on one folder", lambda: concurrent_folders_case(setup)),
              ("folder mode: files grow and vanish", lambda: changing_folder_case(setup))]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILL cases: the named points, then random times")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="run only the cases whose names start with one of these (comma-separated)")
    parser.add_argument("--keep", type=Path, help="keep the scratch folder here")
    parser.add_argument("--record", action="store_true", help="put the table into docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidface-faults-") as scratch:
        setup = prepare(Path(scratch))
        failures: collections.Counter = collections.Counter()
        found, tried = [], 0
        for name, case in cases(args.kills, args.seed, setup):
            if args.only and not name.startswith(tuple(args.only.split(","))):
                continue
            tried += 1
            check = case()
            print(f"{'ok    ' if not check.failures else 'FAILED'} {name}", flush=True)
            for kind, detail in check.failures:
                print(f"       {kind}: {detail}", flush=True)
                failures[kind] += 1
            if check.failures:
                found.append((name, check.failures))
        if args.keep:
            shutil.copytree(scratch, args.keep, dirs_exist_ok=True)
    failed = len(found)
    rows = [f"| cases tried | passed | {' | '.join(KINDS)} |", "|---" * (2 + len(KINDS)) + "|",
            f"| {tried} | {tried - failed} | " + " | ".join(str(failures[k]) for k in KINDS) + " |", "",
            f"Seed {args.seed}, {time.perf_counter() - started:.0f} s; {FRAMES} frames of {SIZE[0]}x{SIZE[1]} in "
            f"segments of {SEGMENT}, tiny model on CPU; an uninterrupted run takes {setup.seconds:.1f} s."]
    rows += [f"- {name}: {'; '.join(f'{kind}: {detail}' for kind, detail in failures_)}" for name, failures_ in found]
    print("\n".join(rows))
    if args.record:
        from benchmarks_doc import record

        record("faults.py", rows)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
