"""Pixel-format conversions: vidface's (`vidface.io.pixels.reformatted`: one thread, the
calling thread's own reformatter) against PyAV's `VideoFrame.reformat` as it comes (a
reformatter per frame, FFmpeg's scaler with a worker thread per core), in the same run.

1. Decoded frames to RGB, as `Frame.to_rgb` converts every frame with a face (720p and 1080p
   H.264; the frames are kept, as the pipeline's queues keep them): CPU milliseconds per frame
   and the threads the process holds afterwards, for vidface's way, PyAV's default (threads
   for this machine's cores) and PyAV with threads=16 (what the default gives a 16-core
   machine, such as the GPU machine's host).
2. RGB to 10-bit YUV, as a restored face is converted to paste it into a 10-bit frame: on
   patches of a real photo at many sizes, the share of conversions whose samples differ from
   a one-thread conversion of the same patch (FFmpeg's sliced conversion writes wrong values
   where a slice starts), for the same three ways.
3. A face's edit in a 10-bit 1080p frame in 8-bit RGB and in 16-bit RGB (what vidface uses for
   a frame of more than 8 bits a sample): CPU milliseconds per frame of `Frame.to_rgb` and of
   `Frame.with_rgb` with a 320-pixel face patch of the photo (4:4:4, so that chroma subsampling
   hides nothing), and how far the pasted picture lands from the photo, in 10-bit steps.
4. The 16-bit RGB a 10-bit frame's faces are cut from and pasted into (yuv420p10le, four faces
   in a row, each aligned crop a fifth of the frame's height): CPU milliseconds per frame for
   the whole picture against only the part the faces reach (`warp_source_box`, grown by the
   paste's context), as the restorer's faces thread converts it.

Prints the figures and writes them into docs/benchmarks.md (section "bench_conversion.py").

    python tools/bench_conversion.py [--frames 60] [--patches 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from skimage import data
from skimage.transform import resize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from benchmarks_doc import Section  # noqa: E402
from media import moving_pattern, write_video  # noqa: E402

from vidface.faces.align import FFHQ_TEMPLATE_512, face_crop, warp_source_box  # noqa: E402
from vidface.faces.paste import patch_box  # noqa: E402
from vidface.io.blend import BLEND_CONTEXT  # noqa: E402
from vidface.io.frames import Frame  # noqa: E402
from vidface.io.pixels import reformatted  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
DEEP_FORMATS = ("yuv420p10le", "yuv422p10le", "yuv444p10le")
Convert = Callable[..., av.VideoFrame]
WAYS: dict[str, Convert] = {
    "vidface": reformatted,
    "PyAV default": lambda video, **options: video.reformat(**options),
    "PyAV threads=16": lambda video, **options: video.reformat(threads=16, **options),
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def to_rgb_cost(path: Path, convert: Convert) -> tuple[float, int]:
    """CPU milliseconds per frame of converting the clip's frames to RGB (kept), and the
    threads the process gained."""
    frames = decoded(path)
    threads, start = thread_count(), cpu_seconds()
    kept = [convert(video, format="rgb24").to_ndarray() for video in frames]
    cost = (cpu_seconds() - start) * 1000 / len(frames)
    gained = thread_count() - threads
    del kept, frames
    return cost, gained


def wrong_conversions(patches: list[np.ndarray], pix_fmt: str, convert: Convert) -> int:
    """How many patches `convert` turns into other samples than a one-thread conversion does."""
    wrong = 0
    for patch in patches:
        want = VideoReformatter().reformat(av.VideoFrame.from_ndarray(patch, format="rgb24"), format=pix_fmt,
                                           threads=1)
        got = convert(av.VideoFrame.from_ndarray(patch, format="rgb24"), format=pix_fmt)
        wrong += any(not np.array_equal(_samples(a), _samples(b)) for a, b in zip(want.planes, got.planes))
    return wrong


def _samples(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, :plane.width]


def photo_patches(count: int, seed: int = 0) -> list[np.ndarray]:
    """Patches of the astronaut photo resized to even sizes from 64 to 400 pixels a side."""
    rng = np.random.default_rng(seed)
    photo = data.astronaut()
    sizes = rng.integers(32, 200, (count, 2)) * 2
    return [(resize(photo, (int(h), int(w)), anti_aliasing=True) * 255).round().astype(np.uint8)
            for h, w in sizes]


def deep_edit_costs(rounds: int) -> list[str]:
    """Part 3: lines of to_rgb and with_rgb costs and pasted precision in 8-bit and 16-bit RGB."""
    width, height, side = 1920, 1080, 320
    photo = resize(data.astronaut(), (side, side), anti_aliasing=True)  # float in [0, 1]
    picture = av.VideoFrame.from_ndarray(moving_pattern(width, height)(0), format="rgb24")
    picture = reformatted(picture, format="yuv444p10le")  # no chroma subsampling to blur the precision
    mask = np.ones((side, side), np.float32)
    lines = []
    for deep, dtype, top in ((False, np.uint8, 255), (True, np.uint16, 65535)):
        patch = np.rint(photo * top).astype(dtype)
        to_rgb, with_rgb = [], []
        for _ in range(rounds):
            frame = Frame(index=0, pts=0, time_base=Fraction(1, 25), duration=1, video=picture).copy()
            start = cpu_seconds()
            frame.to_rgb(deep=deep)
            middle = cpu_seconds()
            frame.with_rgb(patch, mask, (800, 300))
            to_rgb.append(middle - start)
            with_rgb.append(cpu_seconds() - middle)
            pasted = frame.to_rgb(deep=True)[300:300 + side, 800:800 + side].astype(float) / 65535
        steps = np.abs(pasted - photo) * 1023
        lines.append(f"  {'16-bit' if deep else '8-bit':6s} RGB: to_rgb {np.median(to_rgb) * 1000:6.2f} ms, with_rgb "
                     f"{np.median(with_rgb) * 1000:6.2f} ms; pasted RGB off the photo by {steps.mean():.2f} 10-bit "
                     f"steps on average, {np.percentile(steps, 99):.2f} at the 99th percentile")
    return lines


def faces_part_costs(rounds: int) -> list[str]:
    """Part 4: lines of whole-picture and faces' part 16-bit conversions of 10-bit frames."""
    lines = []
    for name, (width, height) in {**SIZES, "4K": (3840, 2160)}.items():
        picture = reformatted(av.VideoFrame.from_ndarray(moving_pattern(width, height)(0), format="rgb24"),
                              format="yuv420p10le")
        frame = Frame(index=0, pts=0, time_base=Fraction(1, 25), duration=1, video=picture)
        side = height / 5  # an aligned crop's side in the frame: the face itself about half of it
        crops = [face_crop(FFHQ_TEMPLATE_512 * side / 512 + (width * (i + 1) / 5 - side / 2, height / 2 - side / 2))
                 for i in range(4)]
        box = patch_box([warp_source_box(crop, width, height) for crop in crops], BLEND_CONTEXT, width, height)
        costs = {}
        for way, part in (("whole", None), ("part", box)):
            times = []
            for _ in range(rounds):
                start = cpu_seconds()
                frame.to_rgb(deep=True, box=part)
                times.append(cpu_seconds() - start)
            costs[way] = float(np.median(times))
        share = (box[2] - box[0]) * (box[3] - box[1]) / (width * height)
        lines.append(f"  {name:5s} whole {costs['whole'] * 1000:6.2f} ms, faces' part ({share:.0%} of the frame) "
                     f"{costs['part'] * 1000:6.2f} ms: {costs['whole'] / costs['part']:.1f}x less")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--patches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="conversions of each clip by each way, in turn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Section("bench_conversion.py") as say:
        say(f"machine: {os.cpu_count()} cores; PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info}")
        say(f"decoded H.264 frames to RGB, {args.frames} frames kept: CPU ms per frame (median of "
            f"{args.rounds} rounds), threads gained")
        for name, (width, height) in SIZES.items():
            clip = write_video(Path(tmp) / f"{name}.mp4", frames=args.frames, size=(width, height), fps=25,
                               images=moving_pattern(width, height))
            # Rounds of every way in turn, medians: the first conversions of a process also set
            # up FFmpeg's tables.
            rounds = [{way: to_rgb_cost(clip, convert) for way, convert in WAYS.items()} for _ in range(args.rounds)]
            costs = {way: float(np.median([r[way][0] for r in rounds])) for way in WAYS}
            for way in WAYS:
                say(f"  {name:6s} {way:16s} {costs[way]:6.2f} ms  +{max(r[way][1] for r in rounds)} threads")
            say(f"  {name:6s} vidface / PyAV default: {costs['vidface'] / costs['PyAV default']:.2f}x CPU; "
                f"vidface / PyAV threads=16: {costs['vidface'] / costs['PyAV threads=16']:.2f}x CPU")
        patches = photo_patches(args.patches)
        say(f"RGB -> 10-bit YUV, {args.patches} photo patches 64-400 px a side: conversions whose samples differ "
            "from a one-thread conversion's")
        for pix_fmt in DEEP_FORMATS:
            counts = ", ".join(f"{way} {wrong_conversions(patches, pix_fmt, convert)}" for way, convert in WAYS.items())
            say(f"  {pix_fmt}: {counts}")
        say(f"a 320x320 face edited into a 1920x1080 yuv444p10le frame, CPU ms (median of {args.rounds * 5}):")
        for line in deep_edit_costs(args.rounds * 5):
            say(line)
        say(f"a 10-bit frame's 16-bit RGB for four faces (yuv420p10le), CPU ms (median of {args.rounds * 5}):")
        for line in faces_part_costs(args.rounds * 5):
            say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
