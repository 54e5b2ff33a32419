"""What the encoder's guards against undefined memory cost: the padding guard
(`vidface.io.pixels.defined_padding`) against the alternatives and x264's own time per frame,
and x264 limited to AVX2 (`vidface.io.encoder_setup.repeatable_options`, on AVX-512 CPUs) against x264
free to use AVX-512, measured in the same run.

For decoded frames of a 4K (3840x2160) and an SD (720x576, rows padded to 768 bytes) H.264 clip:
  guard       defined_padding as the encoder calls it (padding found all zero: a read of it)
  guard+copy  the guard's worst case, on a frame whose padding holds other bytes: a copy of the
              frame (make_writable, as for a frame the decoder still references), then zeroing
  rebuild     every frame rebuilt from its samples (`from_ndarray(to_ndarray())`)
  x264        encoding the frame with vidface's defaults (crf 18, preset medium), free to use
              every SIMD level the CPU has
  x264 AVX2   the same, limited to AVX2 (x264-params asm=AVX2), and its time over x264's
Prints milliseconds per frame and each one's share of x264's time, and writes them into
docs/benchmarks.md.

    python tools/bench_padding.py [--frames 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_doc import record  # noqa: E402

from vidface.io.encoder_setup import X264_REPEATABLE_ASM, cpu_has_avx512  # noqa: E402
from vidface.io.frames import Frame  # noqa: E402
from vidface.io.pixels import defined_padding  # noqa: E402

SIZES = {"4K 3840x2160": (3840, 2160), "SD 720x576": (720, 576)}


def write_clip(path: Path, width: int, height: int, frames: int) -> None:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * index, axis=1), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return list(container.decode(stream))


def per_frame(frames: list[av.VideoFrame], work: Callable[[av.VideoFrame], object]) -> float:
    """Median milliseconds of `work` over the frames."""
    times = []
    for video in frames:
        start = time.perf_counter()
        work(video)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def guard_with_copy(video: av.VideoFrame) -> None:
    copy = Frame(0, 0, Fraction(1, 25), None, video).copy().video  # padding as malloc left it
    for plane in copy.planes:
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, plane.width:] = 1
    defined_padding(copy)


def rebuild(video: av.VideoFrame) -> None:
    av.VideoFrame.from_ndarray(video.to_ndarray(), format=video.format.name)


def x264_ms(frames: list[av.VideoFrame], **options: str) -> float:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": "18", **options}
    start = time.perf_counter()
    for index, video in enumerate(frames):
        video.pts = index
        encoder.encode(video)
    encoder.encode(None)
    return (time.perf_counter() - start) * 1000 / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()
    rows = [f"CPU with AVX-512: {'yes' if cpu_has_avx512() else 'no'}", "",
            "| frames | guard | guard+copy | rebuild | x264 medium | x264 medium, AVX2 |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        for name, (width, height) in SIZES.items():
            clip = Path(scratch) / f"{width}.mp4"
            write_clip(clip, width, height, args.frames)
            frames = decoded(clip)
            padding = frames[0].planes[0].line_size - width
            guard = per_frame(frames, defined_padding)
            copy = per_frame(frames, guard_with_copy)
            rebuilt = per_frame(frames, rebuild)
            # in turn, best of three each: the first encoder of a process also pays for warming up
            limited_options = {"x264-params": f"asm={X264_REPEATABLE_ASM}"}
            encode, limited = (min(times) for times in zip(*[(x264_ms(frames), x264_ms(frames, **limited_options))
                                                               for _ in range(3)]))
            share = lambda ms: f"{ms:.3f} ms ({100 * ms / encode:.2f} %)"  # noqa: E731
            line = (f"| {name} ({padding} B luma padding) | {share(guard)} | {share(copy)} | {share(rebuilt)} "
                    f"| {encode:.0f} ms | {limited:.0f} ms ({limited / encode:.2f}x) |")
            print(line)
            rows.append(line)
    rows.append("")
    rows.append("Milliseconds per frame, median over the frames; in brackets the share of x264's time "
                "(for x264 limited to AVX2: its time over x264's).")
    record("Encoder guards against undefined memory", rows)


if __name__ == "__main__":
    main()
