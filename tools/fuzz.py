"""Fuzz the input path: mutated media through `vidface probe`, `restore --model none`, `track`
and `restore` with a tiny random-weight model, each case in a forked child with a time limit.

Seeds: a short clip in every container and codec the tests make (tests/media.write_video):
MP4 (x264 with B-frames, VFR, AAC, subtitles), Matroska (x264, SubRip, two audio tracks;
FFV1; 10-bit x265), MOV, AVI (MJPEG), MPEG-TS, WebM (VP9, Opus), NUT, FLV and MXF (MPEG-2);
and one picture as a scan's or a plate's file: 10-bit DPX, TIFF, 16-bit PNG.
Mutations, structured and drawn from a seeded generator: bit flips, truncation, a zeroed or
random block, a corrupted header (the first 512 bytes), bytes changed inside index and timestamp
structures (MP4 moov/stts/ctts/stco/stsz/elst, Matroska Cues/Cluster/BlockGroup, AVI idx1, FLV
tags), and a chunk duplicated in place.

A case passes when it ends with exit 0, or exit 1 with one line on stderr; it fails on a
traceback (or more than one line), another exit code, a crash of the interpreter (a signal), a
hang (over --timeout), an OUT or temporary file left by a failed run, or a changed input. A run
prints a table (cases tried, passed, failures by kind) and exits 1 if any case failed; with
--keep it keeps each failing case's folder (input, stderr, command) for a regression test.

    python tools/fuzz.py [--cases 2000] [--seed 0] [--timeout 60] [--keep DIR] [--record] [--only N,N]

--record puts the table into docs/benchmarks.md, dated and with the command.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SEEDS = {  # name: (extension, write_video options)
    "mp4-x264-bframes-vfr": ("mp4", dict(bframes=3, vfr=True, audio="aac", subtitles=True)),
    "mkv-x264-srt-2audio": ("mkv", dict(audio=["aac", "aac"], subtitles=True)),
    "mkv-ffv1": ("mkv", dict(codec="ffv1", audio="flac")),
    "mkv-x265-10bit": ("mkv", dict(codec="libx265", pix_fmt="yuv420p10le")),
    "mov-x264": ("mov", dict(audio="aac")),
    "avi-mjpeg": ("avi", dict(codec="mjpeg", pix_fmt="yuvj420p")),
    "ts-x264": ("ts", dict(audio="aac")),
    "webm-vp9": ("webm", dict(codec="libvpx-vp9", audio="libopus")),
    "nut-ffv1": ("nut", dict(codec="ffv1")),
    "flv-x264": ("flv", dict(audio="aac")),
    "mxf-mpeg2": ("mxf", dict(codec="mpeg2video", fps=25)),
}
STILL_SEEDS = {  # name: (extension, encoder, pixel format): one picture, as one file of a scan or a plate
    "dpx-10bit": ("dpx", "dpx", "gbrp10le"),
    "tiff-rgb": ("tif", "tiff", "rgb24"),
    "png-16bit": ("png", "png", "rgb48be"),
}
MARKERS = [b"moov", b"stts", b"ctts", b"stco", b"stsz", b"elst", b"mdat", b"\x1cS\xbbk", b"\x1fC\xb6u", b"\xa0",
           b"idx1", b"movi", b"\x09\x00\x00", b"\x47\x40"]
TARGETS = {"probe": 0.3, "none": 0.35, "track": 0.3, "restore": 0.05}  # share of the cases
PRELOADED = ("av", "numpy", "cv2", "vidface.cli", "vidface.pipeline", "vidface.commands.probe",
             "vidface.commands.restore", "vidface.commands.track")
KINDS = ("traceback", "exit code", "crash", "hang", "partial output", "input changed")


@dataclass(frozen=True)
class Case:
    """One fuzz case: which seed, mutated how (reproducible from `number` and the run's seed)."""

    number: int
    seed: str
    target: str
    mutation: str


def write_seeds(folder: Path) -> dict[str, Path]:
    """The seed clips (small: 48x32 to 96x64, 12 frames), written once per run, the same bytes
    in every run: a case's mutation is drawn from where markers lie in them, so a run's cases can
    be made again (--only) only from the same seeds."""
    from media import AudioTrack, Subtitles, moving_pattern, write_image_sequence, write_video

    seeds = {}
    for name, (extension, options) in SEEDS.items():
        options = dict(options)
        if options.pop("subtitles", False):
            options["subtitles"] = Subtitles()
        if isinstance(options.get("audio"), list):
            options["audio"] = [AudioTrack(codec=codec) for codec in options["audio"]]
        size = (96, 64) if options.get("codec", "libx264") != "mjpeg" else (95, 63)
        seeds[name] = write_video(folder / f"{name}.{extension}", frames=12, size=size, bitexact=True, **options)
    for name, (extension, codec, pix_fmt) in STILL_SEEDS.items():
        (seeds[name],) = write_image_sequence(folder, f"{name}.%d.{extension}", [moving_pattern(96, 64)(0)],
                                              codec=codec, pix_fmt=pix_fmt, first=1)
    return seeds


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One structured mutation of `data`, and its description."""
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "block", "header", "structure", "duplicate"])
    if kind == "flip":
        count = rng.choice([1, 2, 8, 64])
        for _ in range(count):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data), f"{count} bit flips"
    if kind == "truncate":
        at = rng.randrange(len(data))
        return bytes(data[:at]), f"truncated at {at} of {len(data)}"
    if kind == "block":
        at, size = rng.randrange(len(data)), rng.choice([16, 256, 4096])
        fill = bytes(size) if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(size))
        data[at:at + size] = fill[:len(data) - at]
        return bytes(data), f"{'zeroed' if not any(fill) else 'random'} block of {size} at {at}"
    if kind == "header":
        for _ in range(rng.choice([1, 4, 16])):
            data[rng.randrange(min(512, len(data)))] = rng.randrange(256)
        return bytes(data), "corrupted header"
    if kind == "structure":
        found = [(marker, i) for marker in MARKERS for i in _positions(data, marker)]
        if found:
            marker, at = rng.choice(found)
            for offset in rng.sample(range(4, 40), 4):
                if at + offset < len(data):
                    data[at + offset] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
            return bytes(data), f"fields after {marker!r} at {at}"
        return mutate(bytes(data), rng)
    at, size = rng.randrange(len(data)), rng.choice([188, 1024, 8192])
    return bytes(data[:at] + data[at:at + size] + data[at:]), f"{size} bytes at {at} duplicated"


def _positions(data: bytearray, marker: bytes, limit: int = 8) -> list[int]:
    positions, start = [], 0
    while len(positions) < limit and (at := data.find(marker, start)) >= 0:
        positions.append(at)
        start = at + 1
    return positions


def cases(count: int, seed: int, seeds: dict[str, Path]) -> list[tuple[Case, bytes]]:
    """`count` cases with their mutated inputs, the same for the same `seed`."""
    rng = random.Random(seed)
    names, weights = list(TARGETS), list(TARGETS.values())
    made = []
    for number in range(count):
        name = rng.choice(sorted(seeds))
        data, description = mutate(seeds[name].read_bytes(), rng)
        made.append((Case(number, name, rng.choices(names, weights)[0], description), data))
    return made


def command(case: Case, source: Path, output: Path, model: tuple[str, ...]) -> list[str]:
    if case.target == "probe":
        return ["probe", str(source), "--json"]
    common = ["--no-progress", "-q"]
    if case.target == "none":
        return ["restore", str(source), str(output), "--model", "none", "--segment-frames", "4", *common]
    if case.target == "track":
        return ["track", str(source), str(output), "--tracks", str(output.with_suffix(".jsonl")), *common]
    return ["restore", str(source), str(output), *model, "--segment-frames", "4", *common]


def run_case(case: Case, data: bytes, folder: Path, model: tuple[str, ...], timeout: float) -> str | None:
    """Run one case in a forked child; None when it passes, else the kind of failure."""
    folder.mkdir(parents=True)
    source = folder / f"in.{(SEEDS.get(case.seed) or STILL_SEEDS[case.seed])[0]}"
    source.write_bytes(data)
    before = hashlib.sha256(data).hexdigest()
    output = folder / ("out.mkv" if case.target != "track" else "qa.mkv")
    argv = command(case, source, output, model)
    stderr = folder / "stderr.txt"
    pid = os.fork()
    if pid == 0:  # the child: run the command, report by exit status
        code = 70
        try:
            descriptor = os.open(stderr, os.O_WRONLY | os.O_CREAT)
            os.dup2(descriptor, 2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            from vidface.cli import main

            code = main(argv)
        except BaseException:  # noqa: BLE001 (what escapes the CLI is the finding)
            traceback.print_exc()
            code = 70
        finally:
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 70)
    started = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hang"
        time.sleep(0.01)
    if os.WIFSIGNALED(status):
        return "crash"
    code = os.WEXITSTATUS(status)
    lines = stderr.read_text(errors="replace").strip().splitlines()
    if hashlib.sha256(source.read_bytes()).hexdigest() != before:
        return "input changed"
    if code == 70 or any("Traceback" in line for line in lines):
        return "traceback"
    if code not in (0, 1) or (code == 1 and len(lines) != 1):
        return "exit code"
    # A resumable run that fails keeps its finished segments for a rerun (.OUT.vidface-work): not OUT.
    left = [p.name for p in folder.iterdir() if not p.name.endswith(".vidface-work")
            and (p.name.startswith(".") or (code == 1 and p.name.startswith(("out", "qa"))))]
    if left:
        return "partial output"
    return None


def tiny_model(folder: Path) -> tuple[str, ...]:
    from tiny_model import write_tiny_osdface

    tiny = write_tiny_osdface(folder / "tiny")
    return ("--weights", str(tiny.release), "--base", str(tiny.base), "--device", "cpu", "--dtype", "fp32",
            "--batch-size", "4")


def fuzz(count: int, seed: int, timeout: float, keep: Path | None = None, work: Path | None = None,
         progress: bool = False, only: set[int] | None = None) -> tuple[collections.Counter, list[tuple[Case, str]]]:
    """Run `count` cases (or those numbered in `only`, as the same seed makes them); returns
    (failures by kind, [(case, kind)])."""
    import importlib

    for name in PRELOADED:  # imported before forking, so each child starts at once
        importlib.import_module(name)

    with tempfile.TemporaryDirectory(prefix="vidface-fuzz-", dir=work) as scratch:
        scratch = Path(scratch)
        seeds = write_seeds(scratch)
        model = tiny_model(scratch)
        failures: collections.Counter = collections.Counter()
        found = []
        for case, data in cases(max(only) + 1 if only else count, seed, seeds):
            if only and case.number not in only:
                continue
            folder = scratch / f"case-{case.number}"
            kind = run_case(case, data, folder, model, timeout)
            if kind is not None:
                failures[kind] += 1
                found.append((case, kind))
                if keep is not None:
                    kept = keep / f"{case.number}-{kind.replace(' ', '-')}"
                    shutil.copytree(folder, kept, dirs_exist_ok=True)
                    (kept / "case.txt").write_text(f"{case}\n{' '.join(command(case, Path('IN'), Path('OUT'), ()))}\n")
            shutil.rmtree(folder, ignore_errors=True)
            if progress and (case.number + 1) % 100 == 0:
                print(f"{case.number + 1} cases, {sum(failures.values())} failed", file=sys.stderr, flush=True)
        return failures, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a case may take")
    parser.add_argument("--keep", type=Path, help="keep each failing case's folder here")
    parser.add_argument("--record", action="store_true", help="put the table into docs/benchmarks.md")
    parser.add_argument("--only", type=lambda text: {int(n) for n in text.split(",")}, metavar="N,N,...",
                        help="run only these cases of the seed's run (a failure found, again)")
    args = parser.parse_args()
    started = time.perf_counter()
    failures, found = fuzz(args.cases, args.seed, args.timeout, args.keep, progress=True, only=args.only)
    tried = len(args.only) if args.only else args.cases
    rows = [f"| cases tried | passed | {' | '.join(KINDS)} |", "|---" * (2 + len(KINDS)) + "|",
            f"| {tried} | {tried - sum(failures.values())} | " + " | ".join(str(failures[k]) for k in KINDS) + " |",
            "", f"Seed {args.seed}, {time.perf_counter() - started:.0f} s, at most {args.timeout:g} s a case; "
            f"targets: {', '.join(f'{name} {share:.0%}' for name, share in TARGETS.items())}."]
    rows += [f"- {kind}: {case}" for case, kind in found[:50]]
    print("\n".join(rows))
    if args.record:
        sys.path.insert(0, str(ROOT / "tools"))
        from benchmarks_doc import record

        record("fuzz.py", rows)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
