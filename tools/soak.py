"""Peak memory over a long run, and what the allocator policy costs in speed.

    python tools/soak.py [--sizes 1280x720 1920x1080] [--models none tiny] [--minutes 10] [--short 10]
        [--every 30] [--loop 20]

For each size, one clip of moving degraded faces with AAC audio (`--loop` seconds, written as
bench.py fps writes its clips, then repeated packet for packet up to `--minutes`), and a short
clip of `--short` seconds of the same content. For each model (`none`: decode + encode only;
`tiny`: the tiny random OSDFace on CPU, so detection, tracking, the model and paste-back all run):

* the short clip, twice: with vidface's allocator policy (`vidface.memory`) and with glibc's
  own (the policy switched off in the child): peak memory and the transcode's fps of each;
* the long clip with the policy, its progress read from the bar (the child's stderr is a
  pseudo-terminal) and its resident memory from /proc every second: a line every `--every`
  seconds of wall time (video position, RSS, peak so far), and the peak when the video passed
  5 minutes and at the end, each as a ratio to the short clip's.

Peaks are the kernel's (VmHWM, ru_maxrss). Clips and models are made in child processes so this
process stays small: ru_maxrss of a child counts its parent's resident memory at the fork.
The figures go to docs/benchmarks.md, a section "soak.py SIZE --model MODEL" for each pair.
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks_doc import Section  # noqa: E402

FPS = 25
WITHOUT_POLICY = ("import sys, vidface.memory as memory; memory.steady_allocator = lambda: None; "
                  "from vidface.cli import main; sys.exit(main())")
WITH_POLICY = "import sys; from vidface.cli import main; sys.exit(main())"
PROGRESS = re.compile(rb"(\d+)/(\d+) \[")


def in_child(code: str) -> None:
    paths = [str(ROOT / "tests"), str(ROOT / "tools")]
    subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = {paths!r}\n{code}"], check=True)


def make_clips(folder: Path, width: int, height: int, loop: float, short: float, minutes: float) -> tuple[Path, Path]:
    base, short_clip, long_clip = (folder / f"{name}_{width}x{height}.mp4" for name in ("loop", "short", "long"))
    in_child(f"from pathlib import Path; from bench import write_clip\n"
             f"write_clip(Path({str(base)!r}), {width}, {height}, {loop}, {FPS})\n"
             f"write_clip(Path({str(short_clip)!r}), {width}, {height}, {short}, {FPS})")
    in_child(f"from pathlib import Path; from soak import repeat_clip\n"
             f"repeat_clip(Path({str(base)!r}), Path({str(long_clip)!r}), {math.ceil(minutes * 60 / loop)})")
    return short_clip, long_clip


def repeat_clip(source: Path, destination: Path, times: int) -> None:
    """Write `source` `times` over into `destination`, packet for packet (no re-encoding): each
    pass's packets are shifted, per stream, by the span of decode times the pass before took."""
    import av

    with av.open(str(source)) as reader, av.open(str(destination), "w") as writer:
        outputs = {stream.index: writer.add_stream_from_template(stream) for stream in reader.streams}
        shift = dict.fromkeys(outputs, 0)
        for _ in range(times):
            reader.seek(0)
            first, end = {}, {}
            for packet in reader.demux():
                if packet.dts is None:
                    continue
                index = packet.stream.index
                first.setdefault(index, packet.dts)
                end[index] = max(end.get(index, packet.dts), packet.dts + (packet.duration or 0))
                packet.pts += shift[index]
                packet.dts += shift[index]
                packet.stream = outputs[index]
                writer.mux(packet)
            for index in first:
                shift[index] += end[index] - first[index]


def command(code: str, clip: Path, output: Path, model: str, folder: Path) -> list[str]:
    flags = ["--model", "none"] if model == "none" else [
        "--weights", str(folder / "tiny" / "release"), "--base", str(folder / "tiny" / "base"), "--device", "cpu"]
    return [sys.executable, "-c", code, "restore", str(clip), str(output), "-y", *flags]


def short_run(code: str, clip: Path, output: Path, model: str, folder: Path) -> tuple[float, float]:
    """Peak MiB and the transcode's own fps (vidface prints it, start-up and model loading left out)."""
    with tempfile.TemporaryFile() as said:
        process = subprocess.Popen(command(code, clip, output, model, folder), stdout=said,
                                   stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        raise_on_failure(status, clip)
        said.seek(0)
        fps = float(re.findall(rb"\(([0-9.]+) fps", said.read())[-1])
    return usage.ru_maxrss / 1024, fps


def raise_on_failure(status: int, clip: Path) -> None:
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vidface failed on {clip}")


def sampled_run(clip: Path, output: Path, model: str, folder: Path, every: float, say) -> dict[str, float]:
    """Run the long clip with the policy; sample RSS each second and progress from the bar."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # tqdm draws nothing 0 columns wide
    process = subprocess.Popen(command(WITH_POLICY, clip, output, model, folder), stdout=subprocess.DEVNULL,
                               stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    start = time.monotonic()
    frame, total, peak_at_5, next_line = 0, 0, None, every
    status_file = Path(f"/proc/{process.pid}/status")
    pending = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                pending = (pending + os.read(leader, 65536))[-4096:]
            except OSError:  # the child closed its end
                break
            found = PROGRESS.findall(pending)
            if found:
                frame, total = (int(value) for value in found[-1])
        try:
            fields = dict(line.split(":", 1) for line in status_file.read_text().splitlines() if ":" in line)
            rss, hwm = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
        except (OSError, KeyError):
            continue
        if peak_at_5 is None and frame >= 5 * 60 * FPS:
            peak_at_5 = hwm
        elapsed = time.monotonic() - start
        if elapsed >= next_line:
            say(f"  {elapsed:5.0f} s  video {frame / FPS / 60:5.2f} min  RSS {rss:6.0f} MiB  peak so far {hwm:6.0f} MiB")
            next_line += every
    _, status, usage = os.wait4(process.pid, 0)
    os.close(leader)
    raise_on_failure(status, clip)
    return {"frames": total, "peak at 5 min": peak_at_5 or float("nan"), "peak at end": usage.ru_maxrss / 1024,
            "seconds": time.monotonic() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"])
    parser.add_argument("--models", nargs="+", choices=("none", "tiny"), default=["none", "tiny"])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long clip")
    parser.add_argument("--short", type=float, default=10.0, help="seconds of the short clip")
    parser.add_argument("--every", type=float, default=30.0, help="seconds of wall time between RSS lines")
    parser.add_argument("--loop", type=float, default=20.0, help="seconds of distinct content in the long clip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidface-soak-") as tmp:
        folder = Path(tmp)
        if "tiny" in args.models:
            in_child(f"from make_tiny_osdface import write_tiny_osdface; from pathlib import Path\n"
                     f"write_tiny_osdface(Path({str(folder / 'tiny')!r}))")
        for size in args.sizes:
            width, height = (int(value) for value in size.split("x"))
            short_clip, long_clip = make_clips(folder, width, height, args.loop, args.short, args.minutes)
            for model in args.models:
                with Section(f"soak.py {size} --model {model}") as say:
                    soak(folder, short_clip, long_clip, model, args, say)


def soak(folder: Path, short_clip: Path, long_clip: Path, model: str, args: argparse.Namespace, say) -> None:
    output = folder / "out.mp4"
    peak, fps = short_run(WITH_POLICY, short_clip, output, model, folder)
    glibc_peak, glibc_fps = short_run(WITHOUT_POLICY, short_clip, output, model, folder)
    say(f"--model {model}, {args.short:g} s clip: peak {peak:.0f} MiB, {fps:.1f} fps; "
        f"glibc's own policy: peak {glibc_peak:.0f} MiB, {glibc_fps:.1f} fps "
        f"(speed with the policy / without: {fps / glibc_fps:.2f})")
    say(f"{args.minutes:g} min clip, RSS every {args.every:g} s:")
    run = sampled_run(long_clip, output, model, folder, args.every, say)
    say(f"{run['frames']} frames in {run['seconds']:.0f} s; peak at 5 min {run['peak at 5 min']:.0f} MiB "
        f"({run['peak at 5 min'] / peak:.3f} x the short clip's), at the end {run['peak at end']:.0f} MiB "
        f"({run['peak at end'] / peak:.3f} x)")

if __name__ == "__main__":
    main()
