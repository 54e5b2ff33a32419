"""The render farm on this machine: throughput with one worker and with two, and what each
segment costs beyond its restoration, measured in the same run.

    python tools/bench_farm.py [--seconds 16] [--size 320x240] [--segment-frames 100] [--threads 1]

A generated face clip (one moving degraded head, AAC audio) goes through the tiny random OSDFace
on the CPU: first in one process (vidface's resumable run, the baseline), then on a local Ray
with one worker and with two. Every run's model uses `--threads` CPU threads, so the workers
do not share cores. Prints, per run, the wall time (actors' start included) and fps; per
segment, the workers' restoring time, the overhead beyond it (scheduling, transfer of the
encoded bytes, checks) and its share; the driver's final mux per frame; the warm-up and
look-ahead frames each segment decodes and restores beyond its own; and what these allow on 8,
64 and 512 GPUs (Amdahl, with a GPU's faces per second from --gpu-faces-per-second), for one
long film and for an archive of many files, with the shortest segment that keeps the overhead
under 5 %. The results are also written into docs/benchmarks.md (section
"bench_farm.py"), dated and with the command that made them; docs/scaling.md reads them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from benchmarks_doc import Section  # noqa: E402
from face_clips import moving_face_clip  # noqa: E402
from media import write_video  # noqa: E402
from make_tiny_osdface import write_tiny_osdface  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--segment-frames", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each run's model")
    parser.add_argument("--gpu-faces-per-second", type=float, default=25.8,
                        help="one GPU's end-to-end faces per second, for the projection (default: the H100 "
                             "figure of bench.py gpu in docs/benchmarks.md)")
    args = parser.parse_args()

    import ray

    from vidface.api import load_restorer, resume_options
    from vidface.config import load_settings
    from vidface.farm import farm_restore
    from vidface.plan import plan_transcode
    from vidface.weights import resolve

    width, height = (int(v) for v in args.size.split("x"))
    frames = int(args.seconds * 25)
    with tempfile.TemporaryDirectory() as scratch, Section("bench_farm.py") as say:
        folder = Path(scratch)
        tiny = write_tiny_osdface(folder / "model")
        clip = moving_face_clip(frames, width, height)
        source = write_video(folder / "in.mkv", frames=frames, fps=25, size=(width, height),
                             images=np.stack(clip.frames), audio="aac")
        settings = load_settings(overrides={"model.weights": str(tiny.release), "model.base": str(tiny.base),
                                            "model.device": "cpu", "model.dtype": "fp32",
                                            "model.threads": args.threads})
        say(f"{args.size} clip, {frames} frames at 25 fps, one face per frame; tiny random OSDFace on the CPU, "
            f"{args.threads} thread(s) per model; segments of {args.segment_frames} frames")
        started = time.perf_counter()
        load_restorer(settings).restore(source, folder / "one.mkv", segment_frames=args.segment_frames)
        baseline = time.perf_counter() - started
        say(f"  one process:     {baseline:7.1f} s  {frames / baseline:6.2f} fps")

        logging.getLogger("ray").setLevel(logging.ERROR)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        resume = resume_options(settings, "osdface", resolve(settings.model.weights, settings.model.base),
                                segment_frames=args.segment_frames)
        runs = {}
        for workers in (1, 2):
            output = folder / f"farm{workers}.mkv"
            started = time.perf_counter()
            _, tally = farm_restore([plan_transcode(source, output, encode=settings.encode)], settings, resume,
                                    workers=workers)
            runs[workers] = (time.perf_counter() - started, tally)
            wall = runs[workers][0]
            say(f"  farm, {workers} worker(s): {wall:7.1f} s  {frames / wall:6.2f} fps  "
                f"({baseline / wall:.2f}x one process)")
        ray.shutdown()

        wall, tally = runs[2]
        segments = sum(w.segments for w in tally.workers.values())
        restoring = sum(w.seconds for w in tally.workers.values()) / segments
        overhead = tally.overhead / segments
        say(f"  two workers / one: {runs[1][0] / wall:.2f}x")
        say(f"per segment ({segments} segments): restoring {restoring:.2f} s, overhead beyond it {overhead:.3f} s "
            f"({100 * overhead / restoring:.1f} %)")
        say(f"final mux on the driver: {tally.muxing:.2f} s ({1000 * tally.muxing / frames:.2f} ms per frame)")
        segmenting = resume.segmenting
        margin = segmenting.warmup + segmenting.lookahead
        say(f"warm-up + look-ahead per segment: {margin} frames restored beyond the segment's own")
        # Projection for GPUs: the model's time per frame there (one face per frame) replaces the
        # tiny CPU model's; the overhead per segment and the mux per frame are the ones measured here.
        per_frame = 1 / args.gpu_faces_per_second
        mux = tally.muxing / frames
        shortest = (overhead / per_frame + margin) / 0.05
        say(f"projection at {args.gpu_faces_per_second:g} faces/s per GPU: segments of at least {shortest:.0f} "
            f"frames keep the overhead and the warm-up under 5 % of a segment")
        film = 150_000  # frames: an hour and forty minutes at 25 fps
        for length in (300, 900):
            segment_time = (length + margin) * per_frame + overhead
            count = -(-film // length)
            for gpus in (8, 64, 512):
                parallel = -(-count // gpus) * segment_time  # in waves: a segment is not split
                serial = film * mux
                say(f"  {length}-frame segments, {gpus:3d} GPUs, one {film}-frame film ({count} segments): "
                    f"{film * per_frame / (parallel + serial):6.1f}x one GPU (final mux {serial:.0f} s of "
                    f"{parallel + serial:.0f} s)")
        # Many files in one queue: the mux of a finished file runs beside the other files' segments,
        # so only the extra frames and the overhead of each segment remain.
        for length in (300, 900):
            share = length * per_frame / ((length + margin) * per_frame + overhead)
            say(f"  {length}-frame segments, an archive of many files: "
                + ", ".join(f"{gpus} GPUs {gpus * share:.0f}x" for gpus in (8, 64, 512)) + " one GPU")


if __name__ == "__main__":
    main()
