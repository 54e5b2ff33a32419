#!/usr/bin/env python
"""Who holds Python's GIL during `vidface restore`: each pipeline stage's share of the run's wall
time, and the functions it holds it in.

    python tools/profile_gil.py [--device cpu] [--model tiny] [--size 1920x1080] [--seconds 4] [--faces 4]
    python tools/profile_gil.py --device cuda --model full --batch 32      # on a GPU machine

Makes a clip of moving faces and a random-weight model (its ready model and the detector's and
descriptor's graphs made first, in a cache of its own, as a user's usual run finds them), then runs `vidface restore` on them under py-spy (`record --gil`: a sample
is taken only from the thread that holds the GIL). The restorer's stage needs the GIL to issue
each operation: whatever share the other stages hold, it waits for. Per thread: the seconds it
held the GIL and their share of the run's wall time, and its top functions (the innermost frame
in vidface, or "import PACKAGE" while one is imported). Needs py-spy (pip install py-spy). The lines go into
docs/benchmarks.md (section "profile_gil.py (DEVICE)") unless --no-record.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import make_clip, make_ready_model, tiny_model, vidface_command  # tools/, beside this script
from benchmarks_doc import Section


def held_samples(raw: Path) -> tuple[collections.Counter, dict[str, collections.Counter]]:
    """From py-spy's raw output: samples per thread name, and per thread the samples per function."""
    threads: collections.Counter = collections.Counter()
    functions: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if ": " in frames[0] else "unnamed (starting)"
        threads[thread] += int(count)
        functions[thread][_function(frames[1:])] += int(count)
    return threads, functions


def _function(frames: list[str]) -> str:
    """The innermost function in vidface (py-spy's frames read "name (path:line)"), else the
    innermost one; an import under way there is named for the package it imports."""
    if not frames:
        return "(no Python frame)"
    ours = [index for index, frame in enumerate(frames) if "vidface/" in frame]
    last = ours[-1] if ours else len(frames) - 1
    importing = [frame for frame in frames[last:] if frame.startswith("<module> ")]
    if importing:
        inner = next((frame for frame in importing if "vidface/" not in frame), importing[0])
        return "import " + inner.split(" (", 1)[1].split("/", 1)[0].removesuffix(".py")
    return frames[last].split(" (")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--batch", type=int, default=8, help="the restorer's batch (default: 8)")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default: 200)")
    parser.add_argument("--top", type=int, default=4, help="functions shown per thread (default: 4)")
    parser.add_argument("--no-record", dest="record", action="store_false")
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("profile_gil.py: py-spy is needed: pip install py-spy")
    section = Section(f"profile_gil.py ({args.device})")
    with tempfile.TemporaryDirectory(prefix="vidface-gil-") as tmp, \
            section if args.record else contextlib.nullcontext(section) as say:
        folder = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # the run's own ready model and graphs
        width, height = (int(v) for v in args.size.split("x"))
        clip = make_clip(folder / "clip.mp4", width, height, args.seconds, faces=args.faces)
        model = tiny_model(folder / "model", size=args.model)
        make_ready_model(model, args.batch, args.device)
        raw = folder / "gil.txt"
        command = [spy, "record", "--gil", "--threads", "--format", "raw", "--rate", str(args.rate), "--output",
                   str(raw), "--", *vidface_command(clip, folder / "out.mp4", model, args.batch, device=args.device)]
        started = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if run.returncode != 0 or not raw.is_file():
            raise SystemExit(f"profile_gil.py: the profiled run failed:\n{(run.stderr or run.stdout)[-2000:]}")
        threads, functions = held_samples(raw)
        say(f"vidface restore, {args.size}, {args.seconds:g} s at 25 fps, {args.faces} moving faces, {args.model} "
            f"random-weight model on {args.device}, batch {args.batch}: {wall:.1f} s wall; GIL held "
            f"{sum(threads.values()) / args.rate:.1f} s ({100 * sum(threads.values()) / args.rate / wall:.0f} % of it)")
        for thread, samples in threads.most_common():
            top = ", ".join(f"{name} {count / args.rate:.2f} s"
                            for name, count in functions[thread].most_common(args.top))
            say(f"  {thread:20s} {samples / args.rate:6.2f} s ({100 * samples / args.rate / wall:4.1f} %): {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
