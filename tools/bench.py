"""End-to-end benchmark of `vidface restore` on CPU with the tiny random OSDFace.

    python tools/bench.py fps [--sizes 1280x720 1920x1080] [--seconds 5] [--batch-size 8] [--configs default fast]
        [--rounds 3]
    python tools/bench.py memory [--short 10] [--long 300] [--size 320x240] [--fps 25] [--config default]
        [--segment-frames N]
    python tools/bench.py temporal [--strengths 0 0.3 0.45 0.6 0.7 0.8] [--seeds 1 2 3 4]
    python tools/bench.py mask [--parse-sizes 512 256] [--frames 24]
    python tools/bench.py gpu [--size 1920x1080] [--seconds 8] [--faces 4] [--batch-sizes 8 32] [--model full]

fps: generates a clip per size (one moving, turning astronaut head about a quarter of the
  frame tall, degraded, with AAC audio), then times in the same run, one after the other:
  `vidface restore` (each settings preset given with --configs, tiny model, CPU) and deface's CLI (its CenterFace detector
  and blur, libx264) on the same clip, twice: at its default full-size detection and with
  `--scale` set to vidface's detector size (640 px long side); --rounds times, every command in
  turn each round. Prints each command's median fps and the ratios vidface / deface of the
  medians, with the range of the ratios round by round. Both run as subprocesses with the same
  environment (thread settings). The ready model (vidface.models.ready) and the CenterFace graph
  are made before the timed runs, in a cache of the benchmark's own, as a user's usual run finds
  them (tools/bench_startup.py measures the first run).
memory: peak resident memory (max RSS of the subprocess) of `vidface restore` on a short and a
  long clip of the same content; prints the ratio (long / short). --segment-frames sets the
  resumable run's segment length (a value above the long clip's frame count: one segment).
temporal: the flicker / ghosting trade-off of --temporal STRENGTH, in-process: on a still
  degraded face, the frame-to-frame variance of the restored face relative to no blending;
  on a face that jumps to another expression-like change (the head swaps to a mirrored copy
  mid-clip while staying in place), the share of the old face left in the frames after the
  change (ghosting), relative to no blending. Then both at the default strength on other random
  tiny models (--seeds) and frame sizes: the blending must not depend on one model's latents.
  Last, a moving face hidden for 10 and 40 frames: how much its restoration changes across the
  gap, with its temporal state continued (re-identified) and started afresh, against the same
  two frames of the face never hidden (what the face's own motion changes) and ordinary
  neighbouring frames.

mask: the face-parsing paste mask (--paste-mask parsing; BiSeNet, facexlib's architecture with
  random weights: the cost does not depend on the weights). Its CPU cost per 512x512 face at
  each --parse-sizes, next to facexlib's way of running it (all three heads upsampled to
  512, as FaceRestoreHelper does); then, on a still degraded face (tiny model), the
  frame-to-frame variance of the mask the faces are pasted with: temporal smoothing on
  (defaults) and mask smoothing alone (mask_momentum 0 vs default), relative to --no-temporal.

gpu: the full-size random-weight model (SD 2.1-base UNet and VAE, full embedder; random weights
  cost the same time as the real ones) end to end on a generated clip with `--faces` moving
  heads per frame, on `--device` (cuda): fps and faces per second over the whole transcode and
  after the model finished loading (the model loads while decoding and detection start, so
  on a short clip part of the transcode is that wait), GPU utilisation from NVML over each
  window and peak GPU memory in use; next to it, decode + encode alone (--model none) and
  the model alone (OSDFace.restore on random crops at the same batch sizes, in this process).

Each subcommand's results are also written into docs/benchmarks.md (section "bench.py
SUBCOMMAND"), dated and with the command that made them.

Figures vary +-30 % on a shared machine; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks_doc import Section  # noqa: E402
from face_clips import Pose, background, degrade, moving_face_clip, render  # noqa: E402
from media import write_video  # noqa: E402

DEFACE = str(Path(sys.executable).parent / "deface")  # installed next to this Python (the test extra)


def face_clip_images(width: int, height: int, fps: int, seed: int = 0, faces: int = 1):
    """Frame index -> H×W×3 uint8 RGB: `faces` heads side by side, each about a quarter of the
    frame tall, moving on a 4-second loop (drift, bob, ±10° turn, ±15 % scale) out of phase,
    degraded (blur, noise, JPEG)."""
    base = background(width, height)
    scale = 0.25 * height / 200
    rng = np.random.default_rng(seed)

    def image(index: int) -> np.ndarray:
        poses = []
        for face in range(faces):
            phase = 2 * np.pi * (index / (4 * fps) + face / faces)
            poses.append(Pose(width * ((face + 0.5) / faces + 0.2 / faces * np.sin(phase)),
                              height * (0.5 + 0.05 * np.sin(2 * phase)),
                              scale * (1 + 0.15 * np.sin(phase)), 10 * np.sin(phase)))
        rgb, _ = render(base, poses)
        return degrade(rgb, rng, blur=1.0, noise=3.0, jpeg=70)

    return image


def write_clip(path: Path, width: int, height: int, seconds: float, fps: int = 25, faces: int = 1) -> Path:
    frames = int(round(seconds * fps))
    return write_video(path, frames=frames, size=(width, height), fps=fps,
                       images=face_clip_images(width, height, fps, faces=faces),
                       audio="aac", codec_options={"preset": "veryfast", "crf": "20"})


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 25, faces: int = 1) -> Path:
    """`write_clip` in a child process, so this one stays small: the peak memory `timed`
    reports for a later run includes this process's resident memory at the fork (Linux keeps
    the maximum across exec), and writing a 5-minute clip here left ~1 GB resident, which
    read as vidface's own peak (+13 % long / short instead of +2 %)."""
    code = (f"import sys; sys.path[:0] = {[str(ROOT / 'tests'), str(ROOT / 'tools')]!r}; from pathlib import Path; "
            f"from bench import write_clip; write_clip(Path({str(path)!r}), {width}, {height}, {seconds}, {fps}, {faces})")
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident memory (MiB) and stdout of one run of `command` (which must
    succeed). The peak is wait4's ru_maxrss, which also counts this process's resident memory
    at the fork: keep this process small (see `make_clip`)."""
    with tempfile.TemporaryFile() as log, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"failed: {' '.join(command)}\n{log.read().decode(errors='replace')[-2000:]}")
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, out.read().decode(errors="replace")


def tiny_model(folder: Path, size: str = "tiny", seed: int = 0):
    from make_tiny_osdface import write_tiny_osdface

    return write_tiny_osdface(folder, size=size, seed=seed)


def make_ready_model(model, batch_size: int, device: str = "cpu") -> None:
    """Export the model as the timed `vidface restore` runs load it (vidface.models.ready), and
    prepare the CenterFace and face descriptor graphs they read (vidface.faces.onnx_graphs), so
    that they measure a user's usual run, not the first one with these weights and settings."""
    code = ("from vidface.models.loading import load_osdface; from vidface.models.options import ModelOptions; "
            "from vidface.faces.centerface import CenterFaceDetector; CenterFaceDetector(); "
            "from vidface.faces.identity import descriptor_network; descriptor_network(); "
            f"load_osdface(ModelOptions(weights={str(model.release)!r}, base={str(model.base)!r}, device={device!r}, "
            f"batch_size={batch_size}))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def vidface_command(clip: Path, output: Path, model, batch_size: int, extra: list[str] = (),
                    device: str = "cpu") -> list[str]:
    return [sys.executable, "-m", "vidface", "restore", str(clip), str(output), "-y", "--no-progress",
            "--weights", str(model.release), "--base", str(model.base), "--device", device,
            "--batch-size", str(batch_size), *extra]


def bench_fps(args: argparse.Namespace, folder: Path) -> None:
    model = tiny_model(folder / "tiny")
    make_ready_model(model, args.batch_size)
    with Section("bench.py fps") as say:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            clip = make_clip(folder / f"clip_{size}.mp4", width, height, args.seconds)
            frames = int(round(args.seconds * 25))
            small = f"{640}x{round(640 * height / width)}"
            runs = {
                f"vidface --config {preset}": vidface_command(clip, folder / "vidface.mp4", model, args.batch_size,
                                                               ["--config", preset])
                for preset in args.configs
            }
            runs.update({
                "deface": [DEFACE, str(clip), "-o", str(folder / "deface.mp4"), "--keep-audio",
                           "--ffmpeg-config", json.dumps({"codec": "libx264"})],
                f"deface --scale {small}": [DEFACE, str(clip), "-o", str(folder / "deface_small.mp4"), "--keep-audio",
                                           "--scale", small, "--ffmpeg-config", json.dumps({"codec": "libx264"})],
            })
            # Rounds of every command in turn: a slow spell of the shared machine falls on all of
            # them, and the medians leave out one slow or fast round.
            rounds = [{name: timed(command) for name, command in runs.items()} for _ in range(args.rounds)]
            say(f"{size}, {frames} frames, one face per frame; median of {args.rounds} rounds, each command in turn:")
            median = {name: float(np.median([r[name][0] for r in rounds])) for name in runs}
            for name in runs:
                walls = [r[name][0] for r in rounds]
                rss = max(r[name][1] for r in rounds)
                # vidface prints its own fps over the transcode (start-up and exit not counted)
                own = (f"; transcode {np.median([transcode_fps(r[name][2]) for r in rounds]):.1f} fps"
                       if name.startswith("vidface") else "")
                spread = f", {min(walls):.1f}-{max(walls):.1f} s" if len(walls) > 1 else ""
                say(f"  {name:28s} {frames / median[name]:6.2f} fps  ({median[name]:.1f} s{spread}, "
                    f"peak {rss:.0f} MiB{own})")
            for preset in args.configs:
                ours = f"vidface --config {preset}"
                for name in runs:
                    if name.startswith("deface"):
                        per_round = [r[name][0] / r[ours][0] for r in rounds]
                        spread = (f" (rounds {min(per_round):.2f}x-{max(per_round):.2f}x)"
                                  if len(per_round) > 1 else "")
                        say(f"  {ours} / {name}: {median[name] / median[ours]:.2f}x{spread}")


def bench_memory(args: argparse.Namespace, folder: Path) -> None:
    model = tiny_model(folder / "tiny")
    make_ready_model(model, args.batch_size)
    width, height = (int(v) for v in args.size.split("x"))
    peaks = {}
    with Section("bench.py memory") as say:
        for seconds in (args.short, args.long):
            clip = make_clip(folder / f"clip_{seconds}.mp4", width, height, seconds, fps=args.fps)
            extra = ["--config", args.config]
            if args.segment_frames:
                extra += ["--segment-frames", str(args.segment_frames)]
            wall, peaks[seconds], _ = timed(vidface_command(clip, folder / "out.mp4", model, args.batch_size, extra))
            say(f"{seconds:5.0f} s clip ({int(seconds * args.fps)} frames, {args.size} at {args.fps} fps): "
                f"peak {peaks[seconds]:.0f} MiB, {wall:.0f} s")
        say(f"peak memory long / short: {peaks[args.long] / peaks[args.short]:.3f}")


def bench_temporal(args: argparse.Namespace, folder: Path) -> None:
    import dataclasses

    from vidface.config import load_settings
    from vidface.models.loading import load_osdface
    from vidface.models.options import ModelOptions
    from vidface.restore import face_restorer
    from restore_clips import TemporalProbe, face_middle_change, frames_of

    settings = load_settings()

    def runner(model):
        def run(images: list[np.ndarray], strength: float, faces=settings.faces) -> np.ndarray:
            options = dataclasses.replace(settings, temporal=dataclasses.replace(settings.temporal, strength=strength),
                                          model=dataclasses.replace(settings.model, batch_size=8), faces=faces)
            out = face_restorer(model, options)(iter(frames_of(images)))
            return np.stack([frame.to_rgb() for frame in out]).astype(np.float64)
        return run

    def load(seed: int):
        paths = tiny_model(folder / f"tiny{seed}", seed=seed)
        return load_osdface(ModelOptions(weights=str(paths.release), base=str(paths.base), device="cpu", dtype="fp32"),
                            ready=False)

    probe = TemporalProbe.make()
    with Section("bench.py temporal") as say:
        say("tiny random model (seed 0), 256x192, a still face with fresh noise in every frame; flicker: its "
            "frame-to-frame change over --no-temporal's; ghost f+0..2: the old face left in the 3 frames after it "
            "is replaced (its mirror image), beyond --no-temporal's")
        say(f"{'strength':>8} {'flicker':>8} {'ghost f+0..2':>13}")
        run = runner(load(0))
        for strength in args.strengths:
            flicker, ghost = probe.measure(run, strength)
            say(f"{strength:8.2f} {flicker:8.3f} {ghost:13.3f}")
        strength = settings.temporal.strength
        say("")
        say(f"default strength {strength} on other random models and sizes (target: flicker <= 0.5):")
        for seed in args.seeds:
            run = runner(load(seed))
            for width, height in ((256, 192), (160, 120), (384, 288)):
                sized = TemporalProbe.make(width, height, seed=seed, scale=0.6 * height / 192)
                flicker, ghost = sized.measure(run, strength)
                say(f"  seed {seed}, {width}x{height}: flicker {flicker:.3f}, ghost f+0..2 {ghost:.3f}")
        say("")
        say("a moving face hidden from frame 20 (seed 0, 256x192): change of the restored face's middle, in its "
            "aligned crop, across the gap; the same frames of the face never hidden; ordinary neighbours (largest)")
        run = runner(load(0))
        for hidden in (10, 40):
            back = 20 + hidden
            clip = moving_face_clip(back + 20, 256, 192, occluded=tuple(range(20, back)))
            shown = moving_face_clip(back + 20, 256, 192)
            cells = []
            for name, window in (("continued", settings.faces.reid_window), ("afresh", 0.0)):
                out = run(clip.frames, strength, faces=dataclasses.replace(settings.faces, reid_window=window))
                cells.append(f"{name} {face_middle_change(out[19], out[back], clip.truth[19][0], clip.truth[back][0]):5.1f}")
            out = run(shown.frames, strength)
            never = face_middle_change(out[19], out[back], shown.truth[19][0], shown.truth[back][0])
            ordinary = max(face_middle_change(out[i], out[i + 1], shown.truth[i][0], shown.truth[i + 1][0])
                           for i in range(4, 19))
            say(f"  hidden {hidden:2d} frames: across the gap " + ", ".join(cells)
                + f"; never hidden {never:5.1f}; ordinary neighbours {ordinary:5.1f}")


def bench_mask(args: argparse.Namespace, folder: Path) -> None:
    import dataclasses

    import torch

    from mask_tools import recorded_paste_masks, save_random_bisenet
    from restore_clips import face_region, frames_of
    from vidface.config import load_settings
    from vidface.faces.parsing import FaceParser
    from vidface.metrics import temporal_flicker
    from vidface.models.loading import load_osdface
    from vidface.models.options import ModelOptions
    from vidface.restore import face_restorer

    weights = save_random_bisenet(folder / "parsing_bisenet.pth")
    batch = 4
    images = torch.rand(batch, 3, 512, 512, generator=torch.Generator().manual_seed(0))

    def best_ms(call) -> float:
        """Best of 5 (after a warm-up), per face."""
        with torch.inference_mode():
            call()
            times = []
            for _ in range(5):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
        return 1000 * min(times) / batch

    parsers = {size: FaceParser(size=size, weights=weights) for size in args.parse_sizes}
    network = parsers[args.parse_sizes[0]].network

    def facexlib_way() -> None:  # FaceRestoreHelper: network(x)[0] at 512, arg-max (cost is value-free)
        network(images)[0].argmax(dim=1)

    with Section("bench.py mask") as say:
        reference = best_ms(facexlib_way)
        say(f"face parsing, CPU ({torch.get_num_threads()} threads), batches of {batch} 512x512 crops:")
        say(f"  facexlib's forward at 512 (3 heads upsampled, arg-max): {reference:7.1f} ms/face")
        for size, parser in parsers.items():
            ms = best_ms(lambda: parser.face_masks(images))
            say(f"  vidface FaceParser at {size:4d} (main head, soft mask):   {ms:7.1f} ms/face "
                f"({ms / reference:.2f}x facexlib's)")

        paths = tiny_model(folder / "tiny")
        model = load_osdface(ModelOptions(weights=str(paths.release), base=str(paths.base), device="cpu", dtype="fp32"),
                             ready=False)
        width, height = 256, 192
        face, (landmarks,) = render(background(width, height), [Pose(width / 2, height / 2, 0.6, 0.0)])
        rng = np.random.default_rng(0)
        images = [degrade(face, rng) for _ in range(args.frames)]
        region = face_region(landmarks, (height, width))
        settings = load_settings(overrides={"paste.mask": "parsing", "paste.parse_size": 64,
                                            "paste.parsing_weights": str(weights), "model.batch_size": 8})

        def mask_flicker(**temporal) -> float:
            options = dataclasses.replace(settings, temporal=dataclasses.replace(settings.temporal, **temporal))
            with recorded_paste_masks() as masks:
                for _ in face_restorer(model, options)(iter(frames_of(images))):  # edited in place: fresh frames
                    pass
            return temporal_flicker(np.stack(masks[3:]), region)

        off = mask_flicker(strength=0.0)
        on = mask_flicker()
        unsmoothed = mask_flicker(mask_momentum=0.0)
        say(f"paste mask flicker on a still degraded face ({args.frames} frames, tiny model, parser at 64 px):")
        say(f"  temporal on (defaults) / --no-temporal:           {on / off:.3f}")
        say(f"  mask_momentum {settings.temporal.mask_momentum} / 0 (latent and prompt smoothing on): "
            f"{on / unsmoothed:.3f}")


class GpuSampler:
    """GPU utilisation (NVML's: the share of time a kernel was running) and memory in use,
    sampled every `period` seconds on a thread while in the `with` block; without NVML (no
    NVIDIA GPU) it records nothing."""

    def __init__(self, index: int = 0, period: float = 0.1):
        self.index, self.period = index, period
        self.samples: list[tuple[float, int, float]] = []  # (perf_counter, percent, MiB used)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "GpuSampler":
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no NVML library or no NVIDIA driver: nothing to sample
            return self
        handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)

        def sample() -> None:
            while not self._stop.wait(self.period):
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                used = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
                self.samples.append((time.perf_counter(), rates.gpu, used))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, float]:
        """(mean utilisation %, peak MiB in use) over the samples taken in [start, end]; nan without samples."""
        inside = [(util, used) for t, util, used in self.samples if start <= t <= end]
        if not inside:
            return float("nan"), float("nan")
        return float(np.mean([u for u, _ in inside])), max(used for _, used in inside)


SUMMARY = re.compile(r": (\d+) frames(?:, (\d+) faces restored in \d+ frames)? in ([\d.]+) s"
                     r" \([\d.]+ fps(?:; ([\d.]+) s of it waiting for the model)?")


WAITS = re.compile(r"(stage waits \(s, .*)$")


def transcode_fps(said: str) -> float:
    """Frames per second over the transcode, from a vidface restore's printed summary."""
    transcode = Transcode.said(said)
    if transcode is None:
        raise SystemExit(f"no summary line in vidface's output: {said[-500:]!r}")
    return transcode.frames / transcode.seconds


@dataclass(frozen=True)
class Transcode:
    """What a vidface restore said of its transcode (the run without start-up and exit), and
    when (perf_counter) the summary was printed, right after the transcode ended."""

    frames: int
    faces: int
    seconds: float
    model_wait: float
    ended: float
    waits: str = ""  # the stage queues' waits, where the command ran with -v

    @classmethod
    def said(cls, text: str, ended: float = 0.0) -> Transcode | None:
        """The transcode vidface's summary line in `text` describes, or None without one."""
        match = SUMMARY.search(text)
        if match is None:
            return None
        return cls(int(match[1]), int(match[2] or 0), float(match[3]), float(match[4] or 0), ended)


def transcode_window(command: list[str]) -> Transcode:
    """Run `command` (a vidface restore) and read its summary line as it is printed, with the
    stage queues' waits that it logs with -v."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    summary, waits, said = None, "", deque(maxlen=40)
    for line in process.stdout:
        said.append(line)
        summary = Transcode.said(line, time.perf_counter()) or summary
        waits = match[1] if (match := WAITS.search(line)) else waits
    if process.wait() != 0 or summary is None:
        raise SystemExit(f"failed: {' '.join(command)}\n{''.join(said)[-2000:]}")
    return replace(summary, waits=waits)


def bench_gpu(args: argparse.Namespace, folder: Path) -> None:
    import torch

    from bench_model import timed as time_model
    from vidface.models.loading import load_osdface
    from vidface.models.options import ModelOptions, resolve_device

    device = resolve_device(args.device)
    start = time.perf_counter()
    model = tiny_model(folder / "model", size=args.model)
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(folder / "clip.mp4", width, height, args.seconds, faces=args.faces)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    with Section(f"bench.py gpu ({name}, {args.model} model)") as say:
        say(f"{name}; {args.model} random-weight model; {args.size} clip, {args.seconds:g} s at 25 fps, "
            f"{args.faces} faces per frame (written in {time.perf_counter() - start:.0f} s)")

        io_only = transcode_window(vidface_command(clip, folder / "out.mp4", model, 1, ["--model", "none"],
                                                   device=args.device))
        say(f"  decode + encode alone (--model none): {io_only.frames / io_only.seconds:6.1f} fps")
        restored = {}
        for batch in args.batch_sizes:
            make_ready_model(model, batch, args.device)
            with GpuSampler() as sampler:
                run = transcode_window(vidface_command(clip, folder / "out.mp4", model, batch, ["-v"],
                                                       device=args.device))
            ready = run.ended - run.seconds + run.model_wait
            util, used = sampler.between(run.ended - run.seconds, run.ended)
            util_ready, _ = sampler.between(ready, run.ended)
            working = run.seconds - run.model_wait
            restored[batch] = run.faces / working
            say(f"  vidface restore, batch {batch:3d}: {run.frames / run.seconds:5.1f} fps, "
                f"{run.faces / run.seconds:6.1f} faces/s over the transcode ({run.seconds:.1f} s, GPU busy {util:4.1f} %, "
                f"peak {used:.0f} MiB on the GPU); after the model loaded ({run.model_wait:.1f} s in): "
                f"{run.frames / working:5.1f} fps, {restored[batch]:6.1f} faces/s, GPU busy {util_ready:4.1f} %")
            say(f"    {run.waits or 'stage waits: not logged'}")

        loaded = load_osdface(ModelOptions(weights=str(model.release), base=str(model.base), device=args.device),
                              ready=False)
        size = loaded.face_size
        crops = torch.rand(max(args.batch_sizes), 3, size, size, generator=torch.Generator().manual_seed(0))
        for batch in args.batch_sizes:
            alone, _ = time_model(loaded.restore, crops[:batch].to(device), iterations=3, warmup=1, device=device)
            say(f"  model alone (OSDFace.restore), batch {batch:3d}: {alone:7.1f} faces/s; "
                f"end to end after the model loaded / model alone: {restored[batch] / alone:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    fps = sub.add_parser("fps")
    fps.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"])
    fps.add_argument("--seconds", type=float, default=5.0)
    fps.add_argument("--batch-size", type=int, default=8)
    fps.add_argument("--configs", nargs="+", default=["default", "fast"], help="settings presets or files")
    fps.add_argument("--rounds", type=int, default=3, help="runs of each command, in turn; medians are reported")
    memory = sub.add_parser("memory")
    memory.add_argument("--short", type=float, default=10.0)
    memory.add_argument("--long", type=float, default=300.0)
    memory.add_argument("--size", default="320x240")
    memory.add_argument("--fps", type=int, default=25)
    memory.add_argument("--batch-size", type=int, default=8)
    memory.add_argument("--config", default="default", help="settings preset or file")
    memory.add_argument("--segment-frames", type=int, default=None, help="frames per resumable segment")
    temporal = sub.add_parser("temporal")
    temporal.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.45, 0.6, 0.7, 0.8])
    temporal.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4],
                          help="other random tiny models the default strength is measured on")
    mask = sub.add_parser("mask")
    mask.add_argument("--parse-sizes", type=int, nargs="+", default=[512, 256])
    mask.add_argument("--frames", type=int, default=24)
    gpu = sub.add_parser("gpu")
    gpu.add_argument("--size", default="1920x1080")
    gpu.add_argument("--seconds", type=float, default=8.0)
    gpu.add_argument("--faces", type=int, default=4, help="faces per frame")
    gpu.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    gpu.add_argument("--model", choices=("full", "tiny"), default="full", help="random-weight model size")
    gpu.add_argument("--device", default="cuda")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidface-bench-") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # ready models of the random weights: not the user's
        commands = {"fps": bench_fps, "memory": bench_memory, "temporal": bench_temporal, "mask": bench_mask,
                    "gpu": bench_gpu}
        commands[args.what](args, Path(tmp))


if __name__ == "__main__":
    main()
