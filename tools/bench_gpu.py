#!/usr/bin/env python
"""The levers of the OSDFace restorer's GPU throughput, measured in one run bounded in time.

On the GPU machine (full-size random-weight model, batch 32, within --budget-s 480 s: it fits a
10-minute command on an H100 or H200), and the smoke run on a CPU (tiny model, batch 2):

    python tools/bench_gpu.py
    python tools/bench_gpu.py --device cpu --quick --no-record

The GPU machine reaches no package index: the packages it lacks travel with the working tree
as .site/site.tar.xz, made here by tools/device_site.py (its docstring shows how to unpack it).

1. Model alone: OSDFace.restore on random crops (fixed seed), random weights built as vidface
   builds them (LoRA merged). Per lever, each on top of the one before: warm-up seconds
   (compilation included) apart from the steady faces/s; % of --peak-tflops (FLOPs per face
   counted with FlopCounterMode on eager fp32 at batch 1); peak GPU memory per face; parity
   against eager fp32 (max and mean |difference| of the restored faces, in 8-bit levels).
   Levers: eager-fp32, bf16, channels-last, ready-graphs (bf16 NCHW, exported as vidface's ready
   model is and each network replayed as a CUDA graph; not on top of channels-last), compile
   (mode default, on top of channels-last), cudagraphs (reduce-overhead), autotune (max-autotune:
   CUDA graphs and autotuned kernels), all (autotune, fused QKV projections, inductor's
   conv_1x1_as_mm, cuDNN's autotuner). Compiled with static shapes: the networks OSDFace runs
   (VAE encoder, UNet, VAE decoder); the embedder stays eager.
   Compiled levers and ready-graphs are also timed beside a thread busy in Python, as the
   pipeline's other stages are; so is vidface's default (eager) lever, at GIL switch intervals
   (sys.setswitchinterval) of 5 ms (Python's default) and 0.2 ms: each eager operation gives up
   the GIL and waits to take it back, up to the switch interval. The default lever is also timed
   as the restorer runs it, through the temporal stabiliser on --faces tracks, against itself alone.
2. Faces/s against batch size (--batches, up to the first out-of-memory) for the fastest lever
   (ready-graphs aside: it is exported for --batch alone), or the fastest eager one when
   compiling anew per batch size would not fit the time left; the knee (the smallest batch
   within 5 % of the best) is the auto batch size to use.
3. End to end: `vidface restore` (default dtype and layout, --batch) on a generated clip of
   moving faces, four times: the first run makes the ready model (in a temporary cache), the
   second loads it, the third loads it too but cuts the crops and pastes the faces with OpenCV
   on the CPU, as a CPU run does (on a GPU they stay on the device: pinned uploads, the paste on
   a stream of its own), the fourth is the second with the GIL's switch interval at 0.2 ms. Per
   run: process start to model ready, faces/s after that, NVML GPU utilisation, and the ratio to
   the model alone at the same batch, dtype and layout. Then the ready model's start-up in a
   fresh process, phase by phase (tools/bench_startup.py): torch and vidface imported, the
   device's context, the model loaded, its first batch restored.

4. Detection: CenterFace per call on a 640x360 frame (the full-frame pass) and on one face's six
   192x192 refinement crops, on onnxruntime's CPU provider and in torch on the device, with the
   largest difference of their outputs.
5. Video: the end-to-end clip decoded in software and by NVDEC (PyAV's CUDA hwaccel, frames
   brought to host memory), and its frames encoded by libx264 (vidface's default, crf 18) and by
   h264_nvenc (cq 18): frames per second and the CPU milliseconds each frame costs, the share of
   the CPU that hardware video would give to detection. A way the machine lacks is one line.

Each step checks the time left and prints "skipped: budget" rather than starting without time;
one that runs past its share is stopped (SIGALRM) with the same line. The levers leave
--end-to-end-s and --knee-s to the later steps, and each takes at most --lever-cap-s. A lever
that fails prints one line and the next one runs. All printed lines also go into docs/benchmarks.md (section
"bench_gpu.py (DEVICE)") unless --no-record.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import itertools
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch._dynamo

from bench import GpuSampler, make_clip, tiny_model, transcode_window, vidface_command  # tools/, beside this script
from bench_model import timed
from bench_startup import model_startup
from benchmarks_doc import Section
from make_tiny_osdface import TinyOSDFace

T = TypeVar("T")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Lever:
    """One configuration; `extra`: fused QKV projections, inductor's conv_1x1_as_mm, cuDNN's autotuner;
    `ready`: the networks exported as vidface's ready model is, each replayed as a CUDA graph."""

    label: str
    dtype: torch.dtype
    channels_last: bool = False
    mode: str | None = None  # torch.compile's; None: eager
    extra: bool = False
    ready: bool = False

    @property
    def eager(self) -> bool:
        return self.mode is None and not self.ready

    @property
    def cuda_graphs(self) -> bool:
        return self.ready or self.mode in ("reduce-overhead", "max-autotune")


LEVERS = {
    "eager-fp32": Lever("eager fp32", torch.float32),
    "bf16": Lever("eager bf16", torch.bfloat16),
    "channels-last": Lever("+ channels_last", torch.bfloat16, True),
    "ready-graphs": Lever("ready graphs", torch.bfloat16, ready=True),
    "compile": Lever("+ torch.compile", torch.bfloat16, True, "default"),
    "cudagraphs": Lever("+ CUDA graphs", torch.bfloat16, True, "reduce-overhead"),
    "autotune": Lever("+ max-autotune", torch.bfloat16, True, "max-autotune"),
    "all": Lever("all levers", torch.bfloat16, True, "max-autotune", extra=True),
}
CPU_LEVERS = ("eager-fp32", "bf16", "channels-last")
SWITCH_INTERVALS_MS = (5.0, 0.2)
STARTUP_S = 30  # what the ready model's start-up phases may take, once the end-to-end runs are done
DEFAULTS = {  # (GPU run, --quick) for the arguments not given
    "model": ("full", "tiny"), "batch": (32, 2), "batches": ([8, 16, 32, 48, 64, 96], [2, 4]), "warmup": (2, 1),
    "iterations": (5, 1), "size": ("1920x1080", "640x360"), "seconds": (4.0, 2.0), "faces": (4, 2),
}


class OutOfTime(BaseException):
    """A step ran past the seconds it was given. Not an Exception, as KeyboardInterrupt is not: what
    torch.compile catches as a compile error (and then retries or falls back from) it must pass on."""


class Budget:
    """The seconds left of --budget-s, and a hard stop for a step that runs past its share."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, keep: float = 0.0) -> float:
        """Seconds left once `keep` (what later steps need) is set aside."""
        return self.end - time.monotonic() - keep

    @contextlib.contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        """OutOfTime in the `with` block after `seconds` (SIGALRM: the main thread only)."""
        def stop(*_: object) -> None:
            raise OutOfTime

        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Measured:
    warmup_s: float
    faces_per_s: float
    mib_per_face: float  # nan off CUDA
    parity: tuple[float, float] | None  # (max, mean) |restored - eager fp32| in 8-bit levels
    beside_busy: float | None = None  # faces/s beside a thread busy in Python


def stopped(error: BaseException) -> bool:
    """Whether `error` is Budget.limit's stop, raised as it is or wrapped by torch.compile."""
    return isinstance(error, OutOfTime) or "OutOfTime" in str(error)


def release() -> None:
    """Free what the last step left: models, compiled code, CUDA graphs, cached GPU memory."""
    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def attempt(say: Say, label: str, seconds: float, budget: Budget, step: Callable[[], T]) -> T | None:
    """`step()` within `seconds`; a failure or an overrun is one printed line, not the end of the run."""
    if seconds <= 0:
        say(f"{label}: skipped: budget")
        return None
    try:
        with budget.limit(seconds):
            return step()
    except (Exception, SystemExit, OutOfTime) as error:  # SystemExit: how bench.py says a subprocess failed
        text = str(error).strip() or type(error).__name__
        line = text.splitlines()[-1] if isinstance(error, SystemExit) else \
            f"{type(error).__name__}: {text.splitlines()[0]}"
        say(f"{label}: skipped: budget (stopped after {seconds:.0f} s)" if stopped(error) else
            f"{label}: failed: {line[:240]}")
    finally:
        release()
    return None


def configure(reference: torch.nn.Module, lever: Lever) -> torch.nn.Module:
    """The lever's model: the fp32 reference itself for eager fp32, else a copy in the lever's
    dtype, layout and compilation (static shapes: one graph per batch size)."""
    if lever == LEVERS["eager-fp32"]:
        return reference
    model = copy.deepcopy(reference).to(dtype=lever.dtype)
    if lever.ready:
        return ready_with_cuda_graphs(model)
    networks = model.networks
    if lever.channels_last:
        for network in networks:
            network.to(memory_format=torch.channels_last)
    if lever.extra:  # diffusers' fuse_qkv_projections, on the networks' attention layers
        from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

        for attention in (m for network in networks for m in network.modules() if isinstance(m, Attention)):
            attention.fuse_projections(fuse=True)
            attention.set_processor(FusedAttnProcessor2_0())
    if lever.mode:
        for network in networks:
            network.compile(mode=lever.mode, dynamic=False)
    return model


class GraphReplay(torch.nn.Module):
    """`network` captured in a CUDA graph at its first call and replayed after: one launch per
    call, whatever its operation count (inputs of that call's shapes only)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.graph: torch.cuda.CUDAGraph | None = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            self.inputs = [tensor.clone() for tensor in inputs]
            side = torch.cuda.Stream()  # warm-up off the capturing stream, as torch.cuda.graph asks
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.network(*self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = self.network(*self.inputs)
        for slot, tensor in zip(self.inputs, inputs):
            slot.copy_(tensor)
        self.graph.replay()
        return self.output.clone()  # the next replay writes over self.output


def ready_with_cuda_graphs(model: torch.nn.Module) -> torch.nn.Module:
    """`model` as vidface's ready model runs it (its networks exported at its batch size, loaded
    from the graph files), each network replayed as a CUDA graph."""
    from vidface.models.ready import load_ready, save_ready

    with tempfile.TemporaryDirectory(prefix="vidface-bench-ready-") as folder:
        save_ready(model, Path(folder) / "ready", model.batch_size)
        ready = load_ready(Path(folder) / "ready", model.device)
    if ready is None:
        raise RuntimeError("the exported model could not be loaded back")
    ready.encoder, ready.noise, ready.decoder = (GraphReplay(network) for network in ready.networks)
    return ready


@contextlib.contextmanager
def lever_settings(lever: Lever) -> Iterator[None]:
    """The `extra` lever's global settings, while its model compiles and runs."""
    import torch._inductor.config as inductor

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark or lever.extra
    try:
        with inductor.patch(conv_1x1_as_mm=lever.extra):
            yield
    finally:
        torch.backends.cudnn.benchmark = benchmark


def measure(model: torch.nn.Module, crops: torch.Tensor, reference: torch.Tensor | None, args: argparse.Namespace,
            device: torch.device, busy: bool = False) -> Measured:
    """Warm-up calls (compilation, CUDA graph capture) timed apart from the steady ones; parity
    from the last call's faces; busy: the steady calls once more beside a thread busy in Python."""
    outputs: list[torch.Tensor] = []

    def run(images: torch.Tensor) -> None:
        outputs[:] = [model.restore(images)]

    warm, _ = timed(run, crops, args.warmup, 0, device)
    faces_per_s, mib = timed(run, crops, args.iterations, 0, device)
    parity = None
    if reference is not None:
        diff = (outputs[0] - reference).abs() * 255
        parity = diff.max().item(), diff.mean().item()
    beside = None
    if busy:
        with busy_python_thread():
            beside, _ = timed(run, crops, args.iterations, 0, device)
    return Measured(args.warmup * len(crops) / warm, faces_per_s, mib, parity, beside)


def describe(label: str, batch: int, result: Measured, flops: float, args: argparse.Namespace) -> str:
    percent = 100 * result.faces_per_s * flops / (args.peak_tflops * 1e12)
    memory = "" if math.isnan(result.mib_per_face) else f", {result.mib_per_face:5.0f} MiB/face"
    parity = "" if result.parity is None else \
        f"; vs eager fp32: max {result.parity[0]:.2f}, mean {result.parity[1]:.3f} levels"
    if result.beside_busy is not None:
        ratio = result.beside_busy / result.faces_per_s
        memory += f", beside a busy Python thread {result.beside_busy:.2f} ({ratio:.2f}x)"
    return (f"{label} batch {batch:3d}: warm-up {result.warmup_s:6.1f} s, {result.faces_per_s:8.2f} faces/s, "
            f"{percent:5.1f} % of peak{memory}{parity}")


def knee(args: argparse.Namespace, device: torch.device, reference: torch.nn.Module, results: dict[str, Measured],
         flops: float, budget: Budget, say: Say) -> None:
    """Step 2: faces/s against batch size for the fastest lever (see the module doc), and the knee."""
    results = {n: r for n, r in results.items() if not LEVERS[n].ready}  # the ready lever runs at --batch alone
    if not results:
        say("faces/s against batch size: no lever that runs at any batch size was measured")
        return
    name = max(results, key=lambda n: results[n].faces_per_s)
    others = [b for b in args.batches if b != args.batch]
    eager = [n for n in results if LEVERS[n].eager]
    if LEVERS[name].mode and eager and results[name].warmup_s * len(others) > budget.left(args.end_to_end_s):
        fastest = max(eager, key=lambda n: results[n].faces_per_s)
        say(f"{LEVERS[name].label} compiles anew for each batch size (~{results[name].warmup_s:.0f} s each, "
            f"{len(others)} sizes): more than the time left; the knee of {LEVERS[fastest].label} instead")
        name = fastest
    lever = LEVERS[name]
    say(f"faces/s against batch size, {lever.label}:")
    model = configure(reference, lever)
    size = reference.face_size
    crops = torch.rand(max(args.batches), 3, size, size, generator=torch.Generator().manual_seed(1))
    points: dict[int, Measured] = {}
    with lever_settings(lever):
        for index, batch in enumerate(args.batches):
            if batch == args.batch:
                points[batch] = results[name]
                say(describe(" ", batch, points[batch], flops, args).split(";")[0] + " (measured above)")
                continue
            try:
                points[batch] = measure(model, crops[:batch].to(device), None, args, device)
            except (Exception, OutOfTime) as error:  # the cache is emptied after this step (attempt)
                oom = isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()
                if not (stopped(error) or oom):
                    raise
                say(f"  batches {' '.join(map(str, args.batches[index:]))}: skipped: budget" if stopped(error)
                    else f"  batch {batch:3d}: out of memory; larger batches not tried")
                break
            say(describe(" ", batch, points[batch], flops, args))
    if points:
        top = max(points, key=lambda b: points[b].faces_per_s)
        best = min(b for b in points if points[b].faces_per_s >= 0.95 * points[top].faces_per_s)
        memory = "" if math.isnan(points[best].mib_per_face) else f", {points[best].mib_per_face:.0f} MiB/face"
        say(f"  knee: batch {best} ({points[best].faces_per_s:.2f} faces/s{memory}; the smallest within 5 % of the "
            f"best, {points[top].faces_per_s:.2f} at batch {top}): the auto batch size for this lever")


def model_alone(args: argparse.Namespace, device: torch.device, paths: TinyOSDFace, budget: Budget,
                say: Say) -> dict[str, Measured]:
    """Steps 1 and 2; returns each lever's figures at --batch."""
    from torch.utils.flop_counter import FlopCounterMode

    from vidface.models.loading import load_osdface
    from vidface.models.options import ModelOptions

    def load() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, float]:
        options = ModelOptions(weights=str(paths.release), base=str(paths.base), device=args.device, dtype="fp32",
                               batch_size=args.batch, channels_last=False)
        model = load_osdface(options, ready=False)  # built from the weights: any dtype, batch and layout
        size = model.face_size
        crops = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        with FlopCounterMode(display=False) as counter:
            model.restore(crops[:1])
        return model, crops, model.restore(crops), counter.get_total_flops()

    loaded = attempt(say, "eager fp32 reference", budget.left(args.end_to_end_s), budget, load)
    if loaded is None:
        return {}
    reference, crops, expected, flops = loaded
    which = "H100/H200 SXM dense bf16, the default" if args.peak_tflops == 989 else "--peak-tflops"
    say(f"model alone, {reference.face_size} px faces: {flops / 1e9:.1f} GFLOP per face (FlopCounterMode, eager fp32, "
        f"batch 1); % of peak against {args.peak_tflops:g} TFLOP/s ({which})")
    results: dict[str, Measured] = {}
    for name in args.levers:
        lever = LEVERS[name]
        label = f"  {lever.label:16s}"
        if lever.cuda_graphs and device.type != "cuda":
            say(f"{label}: unavailable on {device.type} (CUDA graphs)")
            continue

        def run(lever: Lever = lever) -> Measured:
            with lever_settings(lever):
                return measure(configure(reference, lever), crops, expected, args, device, busy=not lever.eager)

        result = attempt(say, label, min(args.lever_cap_s, budget.left(args.end_to_end_s + args.knee_s)), budget, run)
        if result is not None:
            results[name] = result
            say(describe(label, args.batch, result, flops, args))
    default = default_lever(device)
    if default in results:
        attempt(say, "beside a busy Python thread", budget.left(args.end_to_end_s), budget,
                lambda: beside_busy_python(reference, LEVERS[default], crops, args, device, say))
        attempt(say, "as the restorer runs it", budget.left(args.end_to_end_s), budget,
                lambda: restorer_batches(reference, LEVERS[default], crops, args, device, say))
    if results:
        attempt(say, "faces/s against batch size", budget.left(args.end_to_end_s), budget,
                lambda: knee(args, device, reference, results, flops, budget, say))
    return results


@contextlib.contextmanager
def busy_python_thread() -> Iterator[None]:
    """A thread busy in Python while in the block: pure-Python loops and small numpy operations,
    as the tracker and the paste stage run."""
    import numpy as np

    stop = threading.Event()

    def busy() -> None:
        values = np.zeros(100)
        while not stop.is_set():
            total = 0
            for i in range(1000):
                total += i
            values = values + total

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def beside_busy_python(reference: torch.nn.Module, lever: Lever, crops: torch.Tensor, args: argparse.Namespace,
                       device: torch.device, say: Say) -> None:
    """`lever`'s faces/s alone and beside a thread busy in Python, at each of SWITCH_INTERVALS_MS."""
    model = configure(reference, lever)
    previous = sys.getswitchinterval()
    say(f"{lever.label}, batch {args.batch}, beside a thread busy in Python (the GIL's switch interval):")
    try:
        for milliseconds in SWITCH_INTERVALS_MS:
            sys.setswitchinterval(milliseconds / 1000)
            result = measure(model, crops, None, args, device, busy=True)
            alone, beside = result.faces_per_s, result.beside_busy
            say(f"  {milliseconds:g} ms: alone {alone:.2f} faces/s, beside it {beside:.2f} ({beside / alone:.2f}x)")
    finally:
        sys.setswitchinterval(previous)


def restorer_batches(reference: torch.nn.Module, lever: Lever, crops: torch.Tensor, args: argparse.Namespace,
                     device: torch.device, say: Say) -> None:
    """`lever`'s model alone and as the restorer runs it (vidface.model_stage's batch: the temporal
    stabiliser on --faces tracks that go on from batch to batch, the faces left on the device),
    timed in turn: what the restorer adds to each batch, apart from the pipeline's other stages."""
    from vidface.model_stage import restore_batch
    from vidface.models.temporal import CropRow, TemporalStabilizer

    model = configure(reference, lever)
    stabilizer = TemporalStabilizer(forget_stale=False)
    first_frames = itertools.count(0, math.ceil(len(crops) / args.faces))

    def restore(images: torch.Tensor) -> None:
        first = next(first_frames)
        rows = [CropRow(i % args.faces, first + i // args.faces, 0.01) for i in range(len(images))]
        restore_batch(model, stabilizer, None, images, rows, on_host=False)

    alone, _ = timed(model.restore, crops, args.iterations, args.warmup, device)
    restorer, _ = timed(restore, crops, args.iterations, args.warmup, device)
    say(f"{lever.label}, batch {len(crops)}, as the restorer runs it ({args.faces} tracks through the temporal "
        f"stabiliser): {restorer:.2f} faces/s against {alone:.2f} alone ({restorer / alone:.2f}x)")


def default_lever(device: torch.device) -> str | None:
    """The eager lever that `vidface restore` runs with its defaults on `device` (--dtype auto,
    its layout rule), or None where no lever is it (fp16 on a GPU without bf16)."""
    from vidface.models.loading import uses_channels_last
    from vidface.models.options import ModelOptions, resolve_dtype

    dtype = resolve_dtype("auto", device)
    layout = uses_channels_last(ModelOptions(), device, dtype)
    return next((name for name, lever in LEVERS.items()
                 if lever.eager and lever.dtype == dtype and lever.channels_last == layout), None)


def vidface_program(setup: str) -> str:
    """`python -c` source that runs `setup` (lines of Python, `sys` imported), then `vidface` with
    the command line's arguments."""
    return f"import sys\n{setup}from vidface.cli import main\nsys.exit(main(sys.argv[1:]))\n"


# `vidface` with the restorer's faces_on_device off: crops cut and faces pasted with OpenCV.
FACES_ON_HOST = vidface_program(
    "import functools\nimport vidface.restore\n"
    "vidface.restore.face_restorer = functools.partial(vidface.restore.face_restorer, faces_on_device=False)\n")
# `vidface` with the GIL's switch interval at the shortest of SWITCH_INTERVALS_MS.
SHORT_SWITCH = vidface_program(f"sys.setswitchinterval({min(SWITCH_INTERVALS_MS) / 1000!r})\n")


def end_to_end(args: argparse.Namespace, device: torch.device, paths: TinyOSDFace, folder: Path, clip: Path,
               alone: dict[str, Measured], budget: Budget, say: Say) -> None:
    """Step 3: `vidface restore` as a subprocess, four times (coreutils' timeout ends it with the
    budget), then the ready model's start-up phases."""
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # the ready model: made by the first run, loaded by the next
    same = default_lever(device)
    against = LEVERS[same].label if same else "none of the levers is vidface's default here"
    say(f"end to end: vidface restore, {args.size}, {args.seconds:g} s at 25 fps, {args.faces} moving faces, batch "
        f"{args.batch}, default dtype and layout; ratio to the model alone: {against}")
    took = 0.0
    restore = vidface_command(clip, folder / "out.mp4", paths, args.batch, ["-v"], device=args.device)
    runs = {"first run (makes the ready model)": restore, "second run (loads it)": restore,
            "third run (crops and paste on the CPU)": [sys.executable, "-c", FACES_ON_HOST, *restore[3:]],
            f"fourth run (switch interval {min(SWITCH_INTERVALS_MS):g} ms)": [sys.executable, "-c", SHORT_SWITCH,
                                                                          *restore[3:]]}
    for which, vidface in runs.items():
        if budget.left() < took:
            say(f"  {which}: skipped: budget")
            break
        command = ["timeout", "--kill-after=5", str(max(1, int(budget.left()))), *vidface]
        with GpuSampler() as sampler:
            launched = time.perf_counter()
            try:
                run = transcode_window(command)
            except SystemExit:
                if budget.left() <= 1:  # ended by `timeout`
                    raise OutOfTime from None
                raise
        took = time.perf_counter() - launched
        ready = run.ended - run.seconds + run.model_wait
        working = run.seconds - run.model_wait
        util, used = sampler.between(ready, run.ended)
        faces_per_s = run.faces / working
        gpu = "n/a" if math.isnan(util) else f"{util:.0f} %, peak {used:.0f} MiB in use"
        ratio = f"{faces_per_s / alone[same].faces_per_s:.2f}" if same in alone else "n/a (lever not measured)"
        say(f"  {which}: model ready {ready - launched:.1f} s after the start ({run.model_wait:.1f} s of the transcode "
            f"waiting for it); after that {faces_per_s:.2f} faces/s ({run.faces} faces, {run.frames / working:.1f} "
            f"fps), GPU busy {gpu}; end to end / model alone {ratio}")
        say(f"    {run.waits or 'stage waits: not logged'}")
    if budget.left() < STARTUP_S:
        say("  the ready model's start-up phases: skipped: budget")
        return
    startup = model_startup(paths, args.device, "auto", "ready", folder / "cache", args.batch, first_batch=True)
    made = "imported diffusers: the ready model was missing" if startup.imported_diffusers else "no diffusers"
    say(f"  the ready model in a fresh process, from its start ({made}): {startup.phases()}")


def detection(device: torch.device, say: Say) -> None:
    """CenterFace's milliseconds per call on each runtime (best of 10, after 3 untimed calls; the
    outputs come back to the host, so each call is complete when timed)."""
    import numpy as np

    from vidface.faces.centerface import CenterFaceDetector

    rng = np.random.default_rng(0)
    inputs = {"640x360 frame": rng.uniform(0, 255, (1, 3, 384, 640)).astype(np.float32),
              "6 refinement crops": rng.uniform(0, 255, (6, 3, 192, 192)).astype(np.float32)}
    runtimes = {"onnxruntime (CPU)": CenterFaceDetector(),
                f"torch ({device})": CenterFaceDetector(device=str(device), runtime="torch")}
    say("detection (CenterFace, ms per call):")
    for what, blob in inputs.items():
        outputs, times = [], []
        for detector in runtimes.values():
            for _ in range(3):
                outputs_now = detector.network_outputs(blob)
            best = math.inf
            for _ in range(10):
                start = time.perf_counter()
                detector.network_outputs(blob)
                best = min(best, time.perf_counter() - start)
            outputs.append(outputs_now)
            times.append(best * 1000)
        difference = max(float(np.abs(a - b).max()) for a, b in zip(outputs[0], outputs[1]))
        say(f"  {what:20s} " + ", ".join(f"{label} {ms:.2f}" for label, ms in zip(runtimes, times))
            + f"; onnxruntime / torch {times[0] / times[1]:.2f}x; max |difference| {difference:.2g}")


def video(clip: Path, say: Say) -> None:
    """Step 5: each way alone, over the whole clip; CPU time is the process's, all threads."""
    import av
    from av.codec.hwaccel import HWAccel

    def timed_frames(work: Callable[[], int]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        frames = work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return frames / wall, cpu * 1000 / frames

    def decode(hwaccel: HWAccel | None) -> int:
        with av.open(str(clip), hwaccel=hwaccel) as container:
            return sum(1 for _ in container.decode(video=0))

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = [frame.reformat(format="yuv420p") for frame in container.decode(stream)]
        rate = stream.average_rate

    def encode(codec: str, options: dict[str, str]) -> int:
        context = av.CodecContext.create(codec, "w")
        context.width, context.height, context.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        context.time_base, context.framerate, context.options = 1 / rate, rate, options
        for index, frame in enumerate(frames):
            frame.pts = index
            context.encode(frame)
        context.encode(None)
        return len(frames)

    ways = {"decode, software": lambda: decode(None),
            "decode, NVDEC": lambda: decode(HWAccel(device_type="cuda", allow_software_fallback=False)),
            "encode, libx264 crf 18": lambda: encode("libx264", {"crf": "18"}),
            "encode, h264_nvenc cq 18": lambda: encode("h264_nvenc", {"cq": "18"})}
    say(f"video ({clip.name}, {len(frames)} frames of {frames[0].width}x{frames[0].height}; PyAV {av.__version__}):")
    for label, work in ways.items():
        try:
            fps, cpu_ms = timed_frames(work)
        except (av.FFmpegError, OSError, ValueError) as error:  # no such device or encoder on this machine
            say(f"  {label:26s} unavailable ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
            continue
        say(f"  {label:26s} {fps:7.1f} fps, {cpu_ms:6.2f} CPU ms per frame")


def parse(argv: list[str] | None) -> argparse.Namespace:
    def names(text: str) -> list[str]:
        unknown = [n for n in text.split(",") if n not in LEVERS]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown lever {unknown[0]}; choose from {', '.join(LEVERS)}")
        return [n for n in LEVERS if n in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    add("--model", choices=("full", "tiny"), help="random-weight model size (default: full)")
    add("--batch", type=int, help="faces per call for the levers and end to end (default: 32)")
    add("--batches", type=int, nargs="+", help="batch sizes for the knee (default: 8 16 32 48 64 96)")
    add("--levers", type=names, help=f"comma-separated, of {','.join(LEVERS)} (default: all on a GPU, "
        f"{','.join(CPU_LEVERS)} on a CPU)")
    add("--warmup", type=int, help="untimed calls per configuration (default: 2)")
    add("--iterations", type=int, help="timed calls per configuration (default: 5)")
    add("--peak-tflops", type=float, default=989.0, help="for %% of peak (default: 989, H100/H200 SXM dense bf16)")
    add("--budget-s", type=float, default=480.0, help="seconds for everything (default: 480)")
    add("--end-to-end-s", type=float, default=180.0, help="seconds kept for end to end (default: 180)")
    add("--knee-s", type=float, default=60.0, help="seconds the levers leave for the knee (default: 60)")
    add("--lever-cap-s", type=float, default=240.0, help="most seconds for one lever, compiling included (default: 240)")
    add("--size", help="end-to-end clip size (default: 1920x1080)")
    add("--seconds", type=float, help="end-to-end clip length (default: 4)")
    add("--faces", type=int, help="moving faces per frame in the clip (default: 4)")
    add("--skip-end-to-end", action="store_true", help="the model alone only")
    add("--detection-s", type=float, default=30.0, help="seconds for the detection step (default: 30; 0 skips it)")
    add("--video-s", type=float, default=30.0, help="seconds for the video step (default: 30; 0 skips it)")
    add("--quick", action="store_true", help="smoke run: tiny model, batch 2, batches 2 4, 1 warm-up and 1 timed "
        "call, a 640x360 2 s clip with 2 faces")
    add("--no-record", dest="record", action="store_false", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    for key, values in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, values[args.quick])
    args.batches = sorted(set(args.batches))
    if args.warmup < 1 or args.iterations < 1:
        parser.error("--warmup and --iterations must be at least 1 (compiled models compile in the warm-up)")
    if args.skip_end_to_end:
        args.end_to_end_s = 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    from vidface.errors import InputError
    from vidface.models.options import resolve_device

    args = parse(argv)
    try:
        device = resolve_device(args.device)
    except InputError as error:
        raise SystemExit(f"bench_gpu.py: {error}") from None
    args.levers = args.levers or list(LEVERS if device.type == "cuda" else CPU_LEVERS)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    section = Section(f"bench_gpu.py ({name})")
    budget = Budget(args.budget_s)
    with section if args.record else contextlib.nullcontext(section) as say:
        say(f"{name}; torch {torch.__version__} (CUDA {torch.version.cuda}); {args.model} random-weight OSDFace; batch "
            f"{args.batch}; {args.warmup} warm-up + {args.iterations} timed calls per lever; budget {args.budget_s:g} s; "
            f"fp32 matmul precision {torch.get_float32_matmul_precision()}, cuDNN TF32 "
            f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}")
        with tempfile.TemporaryDirectory(prefix="vidface-bench-gpu-") as tmp:
            folder = Path(tmp)
            paths = attempt(say, "writing the random-weight model", budget.left(), budget,
                            lambda: tiny_model(folder / "model", size=args.model))
            if paths is None:
                return 1
            width, height = (int(v) for v in args.size.split("x"))
            clip = attempt(say, "writing the clip", budget.left(), budget,
                           lambda: make_clip(folder / "clip.mp4", width, height, args.seconds, faces=args.faces))
            if clip is None:
                return 1
            for label, seconds, step in (("detection", args.detection_s, lambda: detection(device, say)),
                                         ("video", args.video_s, lambda: video(clip, say))):
                if seconds == 0:
                    say(f"{label}: skipped (--{label}-s 0)")
                else:
                    attempt(say, label, min(seconds, budget.left()), budget, step)
            alone = model_alone(args, device, paths, budget, say)
            release()  # the reference model, now out of scope
            if args.skip_end_to_end:
                say("end to end: skipped (--skip-end-to-end)")
            else:  # 10 s past the budget, so that `timeout` ends vidface before the alarm ends the wait
                left = budget.left()
                attempt(say, "end to end", left + 10 if left > 0 else 0, budget,
                        lambda: end_to_end(args, device, paths, folder, clip, alone, budget, say))
        say(f"done in {args.budget_s - budget.left():.0f} s of the {args.budget_s:g} s budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
