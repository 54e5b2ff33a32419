"""Minimal reproduction: does an encoder's output depend on memory nobody initialised?

Plain PyAV, no vidface. Writes a 96x64 VFR clip with B-frames (x264), then decodes it and
hands every decoded frame to libx264, in child processes under different allocators
(`MALLOC_PERTURB_` unset, twice, then two values), once per way of preparing the frames:

  decoded         the decoder's frames as they come (what a transcoder naturally does)
  zeroed-padding  the same frames with the bytes between each row's end and the next row
                  (line padding) set to zero first, copying a frame only where the decoder
                  still holds it (what vidface's encoder does, `vidface.io.pixels.defined_padding`)
  rebuilt         every frame rebuilt from its samples (`from_ndarray(to_ndarray())`), so it
                  has no padding and no side data
  decoded, AVX2   the decoder's frames as they come, x264 limited to AVX2 (x264-params
                  asm=AVX2: what vidface's encoder does on AVX-512 CPUs,
                  `vidface.io.encoder_setup.repeatable_options`)
  decoded, no-mbtree  the same, x264 free to use AVX-512 but without its macroblock tree

A way whose output changes with the allocator reads uninitialised memory. A second probe
encodes frames of its own whose line padding and rows below the picture are filled with 0 and
then 255: if the packets differ, this machine's encoder reads outside the picture.

    python tools/repro_uninit_encode.py [--codec libx264] [--keep DIR]

Prints one line per way and probe, with the CPU's AVX-512 support and the FFmpeg versions, in a
form that can go into a bug report as it is.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WAYS = ("decoded", "zeroed-padding", "rebuilt", "decoded, AVX2", "decoded, no-mbtree")
X264_PARAMS = {"decoded, AVX2": "asm=AVX2", "decoded, no-mbtree": "no-mbtree=1"}
ALLOCATORS = ((None, "default"), (None, "default again"), ("77", "MALLOC_PERTURB_=77"),
              ("123", "MALLOC_PERTURB_=123"))


def write_clip(path: Path) -> None:
    """96x64 yuv420p H.264 with B-frames and frame intervals of 1, 2, 6, 3 ticks of 1/72 s."""
    steps = [1, 2, 6, 3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"bf": "3"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 72)
        y, x = np.mgrid[0:64, 0:96]
        pts = 0
        for index in range(30):
            rgb = np.stack([x * 255 // 95, y * 255 // 63, np.full_like(x, index * 37 % 256)], -1).astype(np.uint8)
            rgb[20:32, index * 3 % 84: index * 3 % 84 + 12] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = pts
            pts += steps[index % 4]
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def zero_padding(frame: av.VideoFrame) -> av.VideoFrame:
    """`frame` with its line padding set to zero, copied first only if the decoder shares it."""
    planes = [(plane, _row_bytes(frame, index)) for index, plane in enumerate(frame.planes)]
    if all(not np.frombuffer(plane, np.uint8).reshape(plane.height, -1)[:, used:].any() for plane, used in planes):
        return frame
    frame.make_writable()
    for index, plane in enumerate(frame.planes):
        np.frombuffer(plane, np.uint8).reshape(plane.height, -1)[:, _row_bytes(frame, index):] = 0
    return frame


def _row_bytes(frame: av.VideoFrame, index: int) -> int:
    components = [c for c in frame.format.components if c.plane == index]
    return frame.planes[index].width * len(components) * (2 if max(c.bits for c in components) > 8 else 1)


def encode_child(clip: Path, way: str, codec: str) -> str:
    """sha256 of the packets `codec` makes of `clip`'s frames prepared `way`."""
    digest = hashlib.sha256()
    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        encoder = av.CodecContext.create(codec, "w")
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        encoder.time_base = stream.time_base
        if way in X264_PARAMS:
            encoder.options = {"x264-params": X264_PARAMS[way]}
        for frame in source.decode(stream):
            if way == "zeroed-padding":
                frame = zero_padding(frame)
            elif way == "rebuilt":
                pts = frame.pts
                frame = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
                frame.pts = pts
            frame.pict_type = av.video.frame.PictureType.NONE
            for packet in encoder.encode(frame):
                digest.update(bytes(packet))
        for packet in encoder.encode(None):
            digest.update(bytes(packet))
    return digest.hexdigest()[:16]


def outside_probe_child(clip: Path, fill: int, codec: str) -> str:
    """sha256 of the packets for frames copied into buffers of our own whose bytes outside the
    picture (line padding, rows down to the allocation's 32-row alignment) all hold `fill`."""
    digest = hashlib.sha256()
    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        encoder = av.CodecContext.create(codec, "w")
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        encoder.time_base = stream.time_base
        for frame in source.decode(stream):
            own = av.VideoFrame(frame.width, frame.height, frame.format.name)
            padded_rows = -(-frame.height // 32) * 32
            for index, (plane, target) in enumerate(zip(frame.planes, own.planes)):
                rows = padded_rows * target.height // frame.height
                ctypes.memset(target.buffer_ptr, fill, target.line_size * rows)
                used = _row_bytes(frame, index)
                source_rows = np.frombuffer(plane, np.uint8).reshape(plane.height, -1)
                np.frombuffer(target, np.uint8).reshape(target.height, -1)[:, :used] = source_rows[:, :used]
            own.pts = frame.pts
            for packet in encoder.encode(own):
                digest.update(bytes(packet))
        for packet in encoder.encode(None):
            digest.update(bytes(packet))
    return digest.hexdigest()[:16]


def run_child(args: list[str], perturb: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
    if perturb is not None:
        env["MALLOC_PERTURB_"] = perturb
    result = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="libx264")
    parser.add_argument("--keep", type=Path, help="write the clip here and keep it")
    parser.add_argument("--child", nargs=2, metavar=("CLIP", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        clip, way = Path(args.child[0]), args.child[1]
        print(outside_probe_child(clip, int(way.split("=")[1]), args.codec) if way.startswith("fill=")
              else encode_child(clip, way, args.codec))
        return

    versions = ", ".join(f"{name} {'.'.join(map(str, v))}" for name, v in av.library_versions.items()
                         if name in ("libavcodec", "libavutil"))
    print(f"PyAV {av.__version__} ({versions}); CPU AVX-512: {'yes' if has_avx512() else 'no'}; codec {args.codec}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        clip = folder / "vfr_bframes.mp4"
        write_clip(clip)
        for way in WAYS:
            outputs = [run_child(["--codec", args.codec, "--child", str(clip), way], perturb)
                       for perturb, _ in ALLOCATORS]
            verdict = "reproducible" if len(set(outputs)) == 1 else "DIFFERS: reads uninitialised memory"
            print(f"{way:19s} {verdict:40s} " + "  ".join(f"{name}: {out}" for (_, name), out in zip(ALLOCATORS, outputs)))
        fills = [run_child(["--codec", args.codec, "--child", str(clip), f"fill={fill}"], None) for fill in (0, 255)]
        verdict = "no" if fills[0] == fills[1] else "YES"
        print(f"encoder reads outside the picture (line padding, rows below): {verdict}  (0: {fills[0]}  255: {fills[1]})")


if __name__ == "__main__":
    main()
