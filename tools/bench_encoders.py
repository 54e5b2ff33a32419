"""Size and picture quality of the encoders that have no constant rate factor (MPEG-2, MPEG-4
Part 2, MJPEG) as vidface drives them, at a fixed quantizer (--qscale), against FFmpeg's own rate
control, which aims at 200 kb/s whatever the picture; libx264 at vidface's default (crf 18)
beside them. Each is a `vidface restore --model none` of one clip, a pan over a real photo;
the figures are Mb/s and PSNR (dB, RGB, every frame against the source's).

Prints the figures and writes them into docs/benchmarks.md (section "bench_encoders.py").

    python tools/bench_encoders.py [--size 1280x720] [--frames 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from skimage import data
from skimage.transform import resize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from benchmarks_doc import Section  # noqa: E402
from media import write_video  # noqa: E402

FPS = 25
RUNS = [("libx264", "crf 18 (vidface's default)", []),
        *((codec, label, args) for codec in ("mpeg2video", "mpeg4", "mjpeg") for label, args in (
            ("FFmpeg's rate control", ["--config", "{own_rate_control}"]),
            ("--qscale 2 (vidface's default)", []),
            ("--qscale 5", ["--qscale", "5"])))]


def panning_photo(width: int, height: int, frames: int) -> np.ndarray:
    """`frames` pictures of a real photo (scikit-image's astronaut), seen through a window that
    pans across it, 3 pixels a frame."""
    photo = data.astronaut()
    scale = max((width + 3 * frames) / photo.shape[1], height / photo.shape[0])
    big = (resize(photo, (round(photo.shape[0] * scale) + 1, round(photo.shape[1] * scale) + 1),
                  anti_aliasing=True) * 255).astype(np.uint8)
    return np.stack([big[:height, 3 * index:3 * index + width] for index in range(frames)])


def rgb_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.float64) for frame in container.decode(video=0)]


def psnr(reference: list[np.ndarray], frames: list[np.ndarray]) -> float:
    error = np.mean([np.mean((a - b) ** 2) for a, b in zip(reference, frames, strict=True)])
    return float(10 * np.log10(255 ** 2 / error))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the clip (default: 1280x720)")
    parser.add_argument("--frames", type=int, default=50, help="frames in the clip (default: 50)")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    seconds = args.frames / FPS
    with tempfile.TemporaryDirectory(prefix="vidface-bench-encoders-") as folder, \
            Section("bench_encoders.py") as say:
        folder = Path(folder)
        source = write_video(folder / "in.mkv", frames=args.frames, size=(width, height), fps=FPS,
                             images=panning_photo(width, height, args.frames), codec_options={"crf": "8"})
        own_rate_control = folder / "own.yaml"
        own_rate_control.write_text("encode:\n  qscale: null\n")
        reference = rgb_frames(source)
        say(f"{width}x{height}, {args.frames} frames at {FPS} fps panning over a photo, "
            f"each through vidface restore --model none:")
        for number, (codec, label, extra) in enumerate(RUNS):
            output = folder / f"{number}.mkv"
            command = [sys.executable, "-m", "vidface", "restore", "--model", "none", str(source), str(output),
                       "--no-progress", "--codec", codec,
                       *(arg.format(own_rate_control=own_rate_control) for arg in extra)]
            subprocess.run(command, check=True, capture_output=True)
            rate = output.stat().st_size * 8 / seconds / 1e6
            say(f"  {codec:11s} {label:32s} {rate:6.2f} Mb/s  {psnr(reference, rgb_frames(output)):5.1f} dB")


if __name__ == "__main__":
    main()
