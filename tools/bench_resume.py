"""What resumable runs cost, and how much warm-up / look-ahead a segment needs.

    python tools/bench_resume.py io [--size 1280x720] [--seconds 12] [--segments 600 100]
    python tools/bench_resume.py boundary [--warmups 0 4 8 16 24 32] [--lookaheads 0 4 8 16 24]
    python tools/bench_resume.py memory [--frames 300] [--segments 30] [--size 320x240] [--repeats 2]

io: `vidface restore --model none` in-process on a generated clip with AAC audio: a plain
  one-pass transcode against resumable runs (segments of each given size, no interruption),
  interleaved, best of 3. The difference is the segment files' write and read-back and the
  extra keyframe each segment starts with. Prints seconds and ratios to the plain run.
boundary: the face restorer (tiny random OSDFace, CPU) on a moving degraded face, 3 segments
  of 32 frames: every segment processed the way a resumable run does it (its own processor
  call fed W frames before and L after it; those outputs dropped) against one continuous
  call. Prints, per W and L, the mean and largest difference (8-bit levels) in the face
  region of the frames next to segment edges, next to the face's own frame-to-frame change
  in the continuous output. The defaults (vidface.pipeline.Segmenting) are the smallest W and
  L past which the difference stops falling; their extra work is (W + L) / N.
memory: peak resident memory (max RSS of the subprocess) of `vidface restore` (tiny random
  OSDFace, CPU, default settings) on one generated face clip, run as one segment and in
  segments of each given size, interleaved, each --repeats times; prints the peaks and the
  ratio of each segmented run's mean peak to the one-segment run's. Memory that grows with
  each segment (threads, allocator) shows here before it shows in a long clip.

Each subcommand's results are also written into docs/benchmarks.md (section "bench_resume.py
SUBCOMMAND"), dated and with the command that made them.

Figures vary +-30 % on a shared machine; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks_doc import Section  # noqa: E402
from media import write_video  # noqa: E402


def bench_io(args: argparse.Namespace, folder: Path) -> None:
    from vidface.pipeline import Resume, Segmenting, identity, plan_transcode, transcode

    width, height = (int(v) for v in args.size.split("x"))
    frames = int(args.seconds * 25)
    clip = write_video(folder / "clip.mp4", frames=frames, size=(width, height), fps=25, audio="aac",
                       codec_options={"preset": "veryfast"})
    runs = {"plain": None, **{f"segments of {n}": Resume(segmenting=Segmenting(frames=n)) for n in args.segments}}
    best = {name: float("inf") for name in runs}
    for _ in range(3):
        for name, resume in runs.items():
            plan = plan_transcode(clip, folder / "out.mp4", overwrite=True)
            started = time.perf_counter()
            transcode(plan, identity, resume=resume)
            best[name] = min(best[name], time.perf_counter() - started)
    with Section("bench_resume.py io") as say:
        say(f"{args.size}, {frames} frames, --model none (decode + x264 + audio copy):")
        for name, seconds in best.items():
            say(f"  {name:18s} {seconds:6.2f} s  {frames / seconds:6.1f} fps  x{seconds / best['plain']:.3f}")


def bench_boundary(args: argparse.Namespace, folder: Path) -> None:
    from bench import face_clip_images, tiny_model
    from restore_clips import frames_of
    from vidface.config import load_settings
    from vidface.models.loading import load_osdface
    from vidface.models.options import ModelOptions
    from vidface.restore import face_restorer

    paths = tiny_model(folder / "tiny")
    model = load_osdface(ModelOptions(weights=str(paths.release), base=str(paths.base), device="cpu", dtype="fp32"),
                         ready=False)
    settings = load_settings()
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, batch_size=8))
    processor = face_restorer(model, settings)
    width, height, segment, count = 320, 240, 32, 96
    image = face_clip_images(width, height, 25)
    images = [image(i) for i in range(count)]

    def restored(first: int, stop: int) -> dict[int, np.ndarray]:
        """Frames [first, stop) restored in one call (fresh frames: the restorer edits them in place)."""
        items = frames_of(images[first:stop], first=first)
        return {frame.index: frame.to_rgb().astype(np.int16) for frame in processor(iter(items))}

    continuous = restored(0, count)
    changed = np.stack([np.abs(continuous[i] - images[i]).max(axis=2) > 0 for i in range(count)])
    region = changed.any(axis=0)  # where the restorer paints faces
    edges = [i for b in range(segment, count, segment) for i in range(b - 3, b + 3)]
    motion = np.mean([np.abs(continuous[i] - continuous[i - 1])[region].mean() for i in edges])
    with Section("bench_resume.py boundary") as say:
        say(f"{count} frames, segments of {segment}; face region {region.mean():.1%} of the frame; "
            f"continuous output's own change between neighbouring frames there: {motion:.2f} levels")
        say(f"{'W':>3} {'L':>3} {'mean diff':>10} {'max diff':>9} {'extra work at N=600':>20}")
        grid = [(w, args.lookaheads[-1]) for w in args.warmups] + [(args.warmups[-1], l) for l in args.lookaheads[:-1]]
        for warmup, lookahead in grid:
            started = time.perf_counter()
            segmented: dict[int, np.ndarray] = {}
            for first in range(0, count, segment):
                stop = min(first + segment, count)
                part = restored(max(0, first - warmup), min(count, stop + lookahead))
                segmented.update({i: part[i] for i in range(first, stop)})
            diffs = [np.abs(segmented[i] - continuous[i])[region] for i in edges]
            say(f"{warmup:3d} {lookahead:3d} {np.mean([d.mean() for d in diffs]):10.3f} "
                f"{max(int(d.max()) for d in diffs):9d} {(warmup + lookahead) / 600:19.1%}"
                f"   ({time.perf_counter() - started:.0f} s)")


def bench_memory(args: argparse.Namespace, folder: Path) -> None:
    from bench import make_clip, timed, tiny_model, vidface_command

    model = tiny_model(folder / "tiny")
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(folder / "clip.mp4", width, height, args.frames / 25, fps=25)
    one = args.frames + 1  # segment frames that make the whole clip one segment
    peaks: dict[int, list[float]] = {}
    for _ in range(args.repeats):
        for frames in [one, *args.segments]:
            _, peak, _ = timed(vidface_command(clip, folder / "out.mp4", model, 8, ["--segment-frames", str(frames)]))
            peaks.setdefault(frames, []).append(peak)
    with Section("bench_resume.py memory") as say:
        say(f"{args.frames} frames, {args.size}: peak MiB per run")
        for frames, values in peaks.items():
            name = "one segment" if frames == one else f"{frames}-frame segments"
            ratio = np.mean(values) / np.mean(peaks[one])
            say(f"  {name:22s} {' '.join(f'{v:6.0f}' for v in values)}   mean / one segment: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    io = sub.add_parser("io")
    io.add_argument("--size", default="1280x720")
    io.add_argument("--seconds", type=float, default=12.0)
    io.add_argument("--segments", type=int, nargs="+", default=[600, 100])
    boundary = sub.add_parser("boundary")
    boundary.add_argument("--warmups", type=int, nargs="+", default=[0, 4, 8, 16, 24, 32])
    boundary.add_argument("--lookaheads", type=int, nargs="+", default=[0, 4, 8, 16, 24])
    memory = sub.add_parser("memory")
    memory.add_argument("--frames", type=int, default=300)
    memory.add_argument("--segments", type=int, nargs="+", default=[30])
    memory.add_argument("--size", default="320x240")
    memory.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        {"io": bench_io, "boundary": bench_boundary, "memory": bench_memory}[args.what](args, Path(folder))


if __name__ == "__main__":
    main()
