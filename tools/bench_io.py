"""Transcode speed of `vidface restore --model none` against the ffmpeg binary.

Generates a 720p, 30-second clip with AAC audio (PyAV), then times, in the same run:
  ffmpeg -i IN -map 0 -c:v libx264 -crf 18 -preset P -c:a copy OUT
  vidface restore IN OUT --model none --crf 18 --preset P
and prints both speeds and their ratio (vidface / ffmpeg; 1.0 is parity), which are also
written into docs/benchmarks.md (section "bench_io.py"), dated and with the command. The ffmpeg
binary is only needed here (Debian: apt-get install ffmpeg); vidface itself never calls it.

    python tools/bench_io.py [--seconds 30] [--preset medium] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_doc import Section  # noqa: E402
from media import AudioTrack, write_video  # noqa: E402


def textured_frames(width: int, height: int):
    """H×W×3 uint8 RGB: a moving gradient, a moving disc and film-like grain (so the encoder
    has real work, unlike flat synthetic colour)."""
    rng = np.random.default_rng(0)
    grain = rng.integers(-3, 4, (8, height, width, 1), dtype=np.int16)
    y, x = np.mgrid[0:height, 0:width]

    def image(index: int) -> np.ndarray:
        base = np.stack([(x + 4 * index) % 256, (y + 2 * index) % 256,
                         np.full_like(x, (index * 3) % 256)], axis=-1).astype(np.int16)
        cx, cy = (200 + 9 * index) % width, height // 2 + int(150 * np.sin(index / 15))
        base[(x - cx) ** 2 + (y - cy) ** 2 < 120 ** 2] = (230, 190, 160)
        return np.clip(base + grain[index % len(grain)], 0, 255).astype(np.uint8)

    return image


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one run of `command`."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"bench_io: {command[0]} failed with exit code {process.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the clip and outputs in")
    args = parser.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("bench_io: no ffmpeg binary on PATH (Debian: apt-get install ffmpeg)", file=sys.stderr)
        return 1
    folder = args.keep or Path(tempfile.mkdtemp(prefix="vidface-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "clip720p.mp4"
    fps, frames = 30, 30 * args.seconds
    if not source.exists():
        started = time.perf_counter()
        write_video(source, frames=frames, size=(1280, 720), fps=fps, images=textured_frames(1280, 720),
                    audio=AudioTrack("aac"), codec_options={"preset": "ultrafast", "crf": "16"})
        print(f"generated {source} ({frames} frames, {source.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
    ffmpeg_cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(source), "-map", "0",
                  "-c:v", "libx264", "-crf", "18", "-preset", args.preset, "-c:a", "copy",
                  str(folder / "ffmpeg.mp4")]
    vidface_cmd = [sys.executable, "-m", "vidface", "restore", str(source), str(folder / "vidface.mp4"),
                   "--model", "none", "--crf", "18", "--encoder-opt", f"preset={args.preset}", "--no-progress", "-y"]
    ffmpeg_runs, vidface_runs = [], []
    for _ in range(args.repeat):  # interleaved, so a change in machine load hits both
        ffmpeg_runs.append(timed(ffmpeg_cmd))
        vidface_runs.append(timed(vidface_cmd))
    ffmpeg_best, ffmpeg_rss = min(ffmpeg_runs)
    vidface_best, vidface_rss = min(vidface_runs)
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split(" Copyright")[0]
    with Section("bench_io.py") as say:
        say(f"clip: 1280x720, {frames} frames at {fps} fps, AAC audio; libx264 crf 18 preset {args.preset}")
        say(f"{version + ':':34s} {ffmpeg_best:7.2f} s {frames / ffmpeg_best:6.1f} fps  peak {ffmpeg_rss:5.0f} MB")
        say(f"{'vidface restore --model none:':34s} {vidface_best:7.2f} s {frames / vidface_best:6.1f} fps  "
            f"peak {vidface_rss:5.0f} MB")
        say(f"ratio vidface/ffmpeg speed: {ffmpeg_best / vidface_best:.2f}x (target >= 0.80x)")
    if args.keep is None:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
