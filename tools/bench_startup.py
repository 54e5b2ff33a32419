#!/usr/bin/env python
"""Start-up: seconds from a fresh process's start until the model is ready, built from the weights
against the ready model (vidface.models.ready), measured in the same run; and the start of the
commands that load no model.

    python tools/bench_startup.py [--models tiny full] [--device cpu] [--dtype bf16] [--repeats 3]

For each random-weight model (tools/make_tiny_osdface.py: "tiny" the test model, "full" the
released architecture), a fresh Python process imports torch and vidface and runs
`load_osdface`, three ways: "built" (ready=False: diffusers and peft imported, the networks
built in float32, the LoRA merged, then cast and moved), "ready, first run" (built, exported
and saved, then loaded from the export) and "ready" (loaded from the export: torch alone). The
figure is the best of --repeats runs of each (first run: once), from the process's start (its
interpreter start-up included) to the model on the device; the best "ready" run's phases follow
(torch imported, vidface imported, the device ready: on a GPU its CUDA context, then the model).
tools/bench_gpu.py times the same phases on a GPU, with the first batch restored after. Then
the default detector (CenterFace on onnxruntime), from the process's start: on a first run,
which prepares its graph (importing onnx) into the cache, and on later runs, which read the
prepared graph. Last, `vidface --help`, `vidface probe` and `vidface restore --model none
--help`, which import no model. And the exit of a short restore with the tiny model: from its
summary line (printed once the output is complete) to the process's end, for the `vidface`
program and for `vidface.cli.main` called alone, which leaves the cyclic garbage collector's
passes of the interpreter's teardown in (vidface.cli.program). The lines are written into
docs/benchmarks.md (section "bench_startup.py (DEVICE)"), dated and with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks_doc import Section  # tools/, beside this script
from make_tiny_osdface import write_tiny_osdface  # tools/, beside this script

LOAD = """import json, sys, time
started = float(sys.argv[1])
marks = {}
def mark(phase):
    marks[phase] = time.time() - started
import torch
mark("torch imported")
from vidface.models.loading import load_osdface
from vidface.models.options import ModelOptions, resolve_device
mark("vidface imported")
device = resolve_device(sys.argv[4])
if device.type == "cuda":
    torch.cuda.mem_get_info(device)  # the CUDA context: load_osdface would make it otherwise
mark("device ready")
model = load_osdface(ModelOptions(weights=sys.argv[2], base=sys.argv[3], device=sys.argv[4], dtype=sys.argv[5],
                                  batch_size=int(sys.argv[7])), ready=sys.argv[6] == "ready")
if device.type == "cuda":
    torch.cuda.synchronize(device)
mark("model ready")
if sys.argv[8] == "restore":
    model.restore(torch.rand(model.batch_size, 3, model.face_size, model.face_size))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    mark("first batch restored")
print(json.dumps({"marks": marks, "diffusers": "diffusers" in sys.modules}))
"""


@dataclass(frozen=True)
class Startup:
    marks: dict[str, float]  # phase -> seconds from the process's start to its end, in order
    imported_diffusers: bool

    @property
    def ready(self) -> float:
        return self.marks["model ready"]

    def phases(self) -> str:
        return ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in self.marks.items())


def model_startup(model, device: str, dtype: str, way: str, cache: Path, batch: int = 0,
                  first_batch: bool = False) -> Startup:
    """A fresh process that loads `model` (`way`: "built" or "ready"; batch 0: vidface's auto
    batch) and, with first_batch, restores one batch of random faces: the seconds from its start
    to the end of each phase, and whether it imported diffusers."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    run = subprocess.run([sys.executable, "-c", LOAD, repr(time.time()), str(model.release), str(model.base),
                          device, dtype, way, str(batch), "restore" if first_batch else "load"],
                         capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        raise SystemExit(f"loading failed:\n{run.stderr[-2000:]}")
    result = json.loads(run.stdout.splitlines()[-1])
    return Startup(result["marks"], result["diffusers"])


DETECTOR = """import time, sys
started = float(sys.argv[1])
from vidface.faces.detect import create_detector
create_detector("centerface")
print(time.time() - started, "onnx" in sys.modules)
"""


def detector_ready_seconds(cache: Path) -> tuple[float, bool]:
    """Seconds from a fresh process's start to the default detector made, and whether it imported onnx."""
    run = subprocess.run([sys.executable, "-c", DETECTOR, repr(time.time())], capture_output=True, text=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(cache)}, check=False)
    if run.returncode != 0:
        raise SystemExit(f"making the detector failed:\n{run.stderr[-2000:]}")
    seconds, imported = run.stdout.split()[-2:]
    return float(seconds), imported == "True"


def command_seconds(arguments: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vidface", *arguments], capture_output=True, check=True)
        best = min(best, time.perf_counter() - start)
    return best


EXITS = {"vidface": ["-m", "vidface"],
         "vidface.cli.main alone": ["-c", "import sys; from vidface.cli import main; sys.exit(main())"]}


def exit_seconds(way: list[str], arguments: list[str], cache: Path, repeats: int) -> float:
    """Best of `repeats`: seconds from the summary line of `python WAY ARGUMENTS` (a restore) to its process's end."""
    best = float("inf")
    for _ in range(repeats):
        process = subprocess.Popen([sys.executable, *way, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, "XDG_CACHE_HOME": str(cache)})
        process.stdout.readline()
        said = time.perf_counter()
        _, errors = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"the restore failed:\n{errors.decode(errors='replace')[-2000:]}")
        best = min(best, time.perf_counter() - said)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bf16", help="fp32, fp16 or bf16 (default bf16, a GPU's default)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidface-startup-") as tmp, \
            Section(f"bench_startup.py ({args.device})") as say:
        folder = Path(tmp)
        say(f"process start to model ready on {args.device} in {args.dtype}, best of {args.repeats}:")
        for size in args.models:
            model = write_tiny_osdface(folder / size, size=size)
            cache = folder / f"cache-{size}"
            built = min(model_startup(model, args.device, args.dtype, "built", cache).ready
                        for _ in range(args.repeats))
            first = model_startup(model, args.device, args.dtype, "ready", cache).ready
            ready = [model_startup(model, args.device, args.dtype, "ready", cache) for _ in range(args.repeats)]
            best = min(ready, key=lambda startup: startup.ready)
            imported = any(startup.imported_diffusers for startup in ready)
            say(f"  {size:4s} model: built {built:6.2f} s; ready, first run {first:6.2f} s; "
                f"ready {best.ready:6.2f} s ({'imports' if imported else 'no'} diffusers); "
                f"built / ready: {built / best.ready:.2f}x")
            say(f"    ready, the best run's phases from the process's start: {best.phases()}")
            shutil.rmtree(cache, ignore_errors=True)
        first, first_onnx = detector_ready_seconds(folder / "cache-detector")
        later = [detector_ready_seconds(folder / "cache-detector") for _ in range(args.repeats)]
        say(f"process start to the CenterFace detector made: first run {first:.2f} s "
            f"({'imports' if first_onnx else 'no'} onnx; prepares the graph), later runs {min(s for s, _ in later):.2f} s "
            f"({'imports' if any(i for _, i in later) else 'no'} onnx)")
        clip = folder / "clip.mp4"
        sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests")]
        from media import write_video  # tests/: a short clip with audio

        write_video(clip, frames=10, audio="aac")
        say("commands that load no model (process start to exit):")
        for arguments in (["--help"], ["probe", str(clip)], ["restore", "--model", "none", "--help"]):
            say(f"  vidface {' '.join(a if a != str(clip) else 'clip.mp4' for a in arguments):28s} "
                f"{command_seconds(arguments, args.repeats):5.2f} s")
        model = write_tiny_osdface(folder / "exit", size="tiny")
        restore = ["restore", str(clip), str(folder / "out.mp4"), "-y", "-q", "--no-progress", "--weights",
                   str(model.release), "--base", str(model.base), "--device", args.device, "--dtype", args.dtype]
        exits = {name: exit_seconds(way, restore, folder / "cache-exit", args.repeats) for name, way in EXITS.items()}
        say(f"a restore's exit (tiny model, summary line to process end), best of {args.repeats}:")
        for name, seconds in exits.items():
            say(f"  {name:28s} {seconds:5.2f} s")
        say(f"  vidface.cli.main alone / vidface: {exits['vidface.cli.main alone'] / exits['vidface']:.2f}x")


if __name__ == "__main__":
    main()
