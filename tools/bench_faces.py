"""Benchmark of the faces stage on CPU: detector speed, tracking overhead, smoothing quality.

    python tools/bench_faces.py [--frames 60] [--repeat 10] [--python-only | --identity-only]

Prints: detector ms/frame at 720p and 1080p (the default downscaled detection with landmark
refinement, without refinement, and at full size), each also as a ratio to a plain onnxruntime
CenterFace call timed alternately in the same run, with the load average, since the absolute
figures follow the machine's load; the tracker's own time per frame; on a generated clip (the
astronaut head moving, scaling, turning; degraded by blur, noise and JPEG, and clean): recall,
jitter ratio (RMS second difference of smoothed / raw landmarks; target <= 0.33), crop error
(how far the 512x512 crop aligned on the estimate is from the crop aligned on the truth, in
crop pixels; target <= 2 px) and landmark error in the true crop, split into a constant offset
and a varying part, for --detect-every 1, 2, 3, and 2, 3 with --detect-motion 0.05 (with the
share of frames the detector runs on); recall and crop error by face size for the detector
input sizes; the tracking stage's own crop error and detector use on the fast and slow
clips; the faces stage's CPU time on a 720p clip at two speeds of motion, detecting
every frame and every second frame; re-identification on generated clips (a face hidden for
10, 20 and 40 frames, one leaving the frame and coming back, two people crossing): id
switches and returns that kept their id, with --reid-window 2 and 0; the face descriptor's
cost at 720p as a share of the faces stage; and its milliseconds per face, dlib's network
against vidface's (the same network on onnxruntime, vidface.faces.dlib_resnet), with how fast
a Python thread runs beside each (section "bench_faces.py identity"; --identity-only runs these
alone); and the stage's own time per frame with its network's outputs replayed, at 1080p with
four faces and 720p with one (section "bench_faces.py python"; --python-only runs it alone).

The truth is face_clips.ASTRONAUT_LANDMARKS (the refined detector's own averaged reading, in 8
crops, of the clean upright head) carried along the clip's known path; the first line printed re-measures it.
So the errors are the detector's and tracker's inconsistency under motion, scaling, turning,
resampling and degradation, not a disagreement with human annotation.

The results are also written into docs/benchmarks.md (section "bench_faces.py"), dated and with
the command that made them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks_doc import Section  # noqa: E402
from face_clips import (ASTRONAUT_LANDMARKS, CountingPasses, Picture, Pose, background, crop_error,  # noqa: E402
                        crossing_faces_clip, error_parts, head_sprite, hopper_sprite, id_switches, jitter,
                        leaving_and_returning_clip, match_tracks, moving_face_clip, read_reference_landmarks,
                        render)
from vidface.faces.detect import create_detector  # noqa: E402
from vidface.faces.shots import ShotCutDetector  # noqa: E402
from vidface.faces.options import FaceOptions  # noqa: E402
from vidface.faces.track import DETECT, REFINE, FaceTracker  # noqa: E402


def frame_with_face(width: int, height: int, scale: float) -> np.ndarray:
    rgb, _ = render(background(width, height), [Pose(width * 0.45, height * 0.5, scale, 5.0)])
    return rgb


def plain_centerface():
    """A plain onnxruntime CenterFace call (the file as shipped, only its dims made dynamic;
    default session options; input blob made beforehand): the baseline the detector's times are
    divided by, measured in the same run, so the ratio means something on a loaded machine."""
    import onnxruntime

    from vidface.faces.centerface import _INPUT, _OUTPUTS, centerface_model_path, dynamic_model

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(dynamic_model(centerface_model_path()).SerializeToString(),
                                           options, providers=["CPUExecutionProvider"])

    def run(blob: np.ndarray) -> None:
        session.run(list(_OUTPUTS), {_INPUT: blob})
    return run


def blob_for(width: int, height: int) -> np.ndarray:
    """A 1×3×H×W float32 input the size CenterFace sees for a width×height frame (padded to 32)."""
    return np.random.default_rng(0).uniform(0, 255, (1, 3, -(-height // 32) * 32, -(-width // 32) * 32)).astype(np.float32)


def interleaved_ms(calls: dict, repeat: int) -> dict:
    """Median ms per call of each (function, argument) in `calls`, timed in alternation so that
    changing load on the machine affects them alike."""
    times: dict = {name: [] for name in calls}
    for function, argument in calls.values():
        function(argument)  # warm-up
    for _ in range(repeat):
        for name, (function, argument) in calls.items():
            start = time.perf_counter()
            function(argument)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(values)) for name, values in times.items()}


def detector_speed(repeat: int, say: Section) -> None:
    plain = plain_centerface()
    settings = {"default (640 px, refined)": dict(), "640 px, no refinement": dict(refine=False),
                "full size, no refinement": dict(max_side=None, refine=False)}
    detectors = {name: create_detector("centerface", **options) for name, options in settings.items()}
    say(f"detector (CenterFace, onnxruntime CPU), median ms per frame with one face; load average "
        f"before: {Path('/proc/loadavg').read_text().split()[0]}")
    for width, height in ((1280, 720), (1920, 1080)):
        frame = frame_with_face(width, height, height / 360)
        small = (640, round(640 * height / width))
        calls = {"plain": (plain, blob_for(*small)), "plain full": (plain, blob_for(width, height))}
        calls.update({name: (detector.detect, frame) for name, detector in detectors.items()})
        ms = interleaved_ms(calls, repeat)
        say(f"  {height}p: plain onnxruntime call {ms['plain']:.1f} ms at {small[0]}x{small[1]}, "
            f"{ms['plain full']:.1f} ms at {width}x{height}")
        for name in settings:
            base = "plain full" if name.startswith("full") else "plain"
            say(f"    {name:28s} {ms[name]:7.1f} ms  ({ms[name] / ms[base]:.2f}x the plain call at its input size)")
    say(f"  load average after: {Path('/proc/loadavg').read_text().split()[0]}")


def run_tracker(detections: list, config: FaceOptions) -> tuple[list, float, float]:
    """Track precomputed detections, using those of the frames where the tracking stage would
    run the detector (its runs, and its searches of skipped frames for a face that appeared or
    left) or the refinement pass alone (for which the same refined readings stand in); returns
    the tracked faces per frame, the tracker's ms per frame and the share of frames the
    detector or the refinement ran on."""
    tracker = FaceTracker(config)
    out = []
    detected: set[int] = set()

    def earlier(index: int) -> list:
        detected.add(index)
        return detections[index]

    since = config.detect_every
    start = time.perf_counter()
    for index, faces in enumerate(detections):
        need = tracker.needs_detection(since)
        if need is not None:
            detected.add(index)
        out.extend(tracker.update(faces if need else None, earlier=earlier, complete=need != REFINE))
        since = 1 if need == DETECT else since + 1
    out.extend(tracker.finish())
    ms = (time.perf_counter() - start) / len(detections) * 1000
    return [faces for _, faces in out], ms, len(detected) / len(detections)


def smoothing_quality(frames: int, degraded: bool, say: Section) -> None:
    """Tracking quality on the moving-head clip; its whole path (a left-to-right drift, a bob,
    ±12° turn, ±25 % scale) spans `frames` frames, so fewer frames is faster motion."""
    clip = moving_face_clip(frames, 640, 360, scale=1.0, degraded=degraded)
    detector = create_detector("centerface")
    raw = [detector.detect(rgb) for rgb in clip.frames]
    truth = np.stack([t[0] for t in clip.truth])
    measured = np.stack([faces[0].landmarks for faces in raw if faces])
    found = sum(1 for faces in raw if faces)
    raw_error = np.mean([crop_error(faces[0].landmarks, t) for faces, t in zip(raw, truth) if faces])
    raw_parts = error_parts(measured, truth[[i for i, faces in enumerate(raw) if faces]])
    cuts = ShotCutDetector()
    cut_ms = interleaved_ms({"cut": (cuts.is_cut, clip.frames[0])}, 20)["cut"]
    run_tracker(raw, FaceOptions())  # warm-up: the tracker's imports
    say("")
    say(f"clip: {frames} frames 640x360, head ~{np.linalg.norm(truth[0, 1] - truth[0, 0]):.0f} px eye distance, "
        f"{'blur + noise + JPEG' if degraded else 'clean'}; detector recall {found}/{frames}, "
        f"raw crop error {raw_error:.2f} px, landmark error {raw_parts.landmark:.2f} px (constant offset "
        f"{raw_parts.offset:.2f}, varying {raw_parts.varying:.2f}); "
        f"shot-cut check {cut_ms:.2f} ms per frame")
    for every, motion in ((1, None), (2, None), (3, None), (2, 0.05), (3, 0.05)):
        tracked, ms, share = run_tracker(raw, FaceOptions(detect_every=every, detect_motion=motion))
        reported = [faces[0].landmarks if faces else None for faces in tracked]
        recall = sum(r is not None for r in reported) / frames
        smoothed = np.stack([r for r in reported if r is not None])
        kept = [i for i, r in enumerate(reported) if r is not None]
        error = np.mean([crop_error(reported[i], truth[i]) for i in kept])
        parts = error_parts(smoothed, truth[kept])
        ratio = jitter(smoothed) / jitter(measured)
        noise_ratio = jitter(smoothed - truth[kept]) / jitter(measured - truth[[i for i, f in enumerate(raw) if f]])
        say(f"detect-every {every}, detect-motion {motion}: detector or refinement on {share:.0%} of frames, recall {recall:.2f}, tracker {ms:.2f} ms/frame, jitter ratio {ratio:.3f} "
            f"(target <= 0.33; true motion alone: {jitter(truth) / jitter(measured):.3f}; "
            f"of the error alone: {noise_ratio:.3f}), "
            f"crop error {error:.2f} px (target <= 2); landmark error in the crop {parts.landmark:.2f} px: "
            f"constant offset {parts.offset:.2f} px, varying {parts.varying:.2f} px")


def stage_accuracy(frames: int, say: Section) -> None:
    """The tracking stage itself with the default detector (full-frame runs, refinement-only
    frames, searches of skipped frames) on the degraded moving-head clip: crop error and the
    share of frames each pass ran on, detect-every 1 and 2."""
    from vidface.faces.options import detector_for
    from vidface.faces.track import track_faces

    clip = moving_face_clip(frames, 640, 360, scale=1.0, degraded=True)
    detector = detector_for(FaceOptions())
    for every in (1, 2):
        counting = CountingPasses(detector)
        out = list(track_faces((Picture(rgb, i) for i, rgb in enumerate(clip.frames)), counting, FaceOptions(detect_every=every)))
        errors = [crop_error(faces[0].landmarks, truth[0]) for (_, faces), truth in zip(out, clip.truth) if faces]
        say(f"stage, detect-every {every}: full detector on {counting.detected / frames:.0%} of frames, refinement "
            f"alone on {counting.refined / frames:.0%}, recall {len(errors) / frames:.2f}, "
            f"crop error {np.mean(errors):.2f} px")


def recall_by_size(say: Section) -> None:
    say("")
    say("recall and raw crop error by face size (720p frames, 12 poses each):")
    for max_side in (640, 960, None):
        detector = create_detector("centerface", max_side=max_side)
        cells = []
        for scale in (0.25, 0.4, 0.7, 1.5):
            clip = moving_face_clip(12, 1280, 720, scale=scale)
            faces = [detector.detect(rgb) for rgb in clip.frames]
            hits = [(f[0].landmarks, t[0]) for f, t in zip(faces, clip.truth) if f]
            eyes = np.linalg.norm(clip.truth[0][0][1] - clip.truth[0][0][0])
            error = np.mean([crop_error(a, b) for a, b in hits]) if hits else float("nan")
            cells.append(f"eyes {eyes:3.0f}px: {len(hits):2d}/12 {error:5.2f}px")
        say(f"  detect-size {str(max_side or 'full'):5s} " + " | ".join(cells))


def stage_cpu(say: Section, frames: int = 125) -> None:
    """CPU time of the whole faces stage (track_faces with the default detector) on tools/bench.py's
    720p clip, and on the same clip moving at a quarter of the speed, detecting every frame
    and with detect-every 2 (its motion rule and its searches of skipped frames)."""
    from bench import face_clip_images
    from vidface.faces.options import detector_for
    from vidface.faces.track import track_faces

    detector = detector_for(FaceOptions())
    say("")
    say(f"faces stage on {frames} frames of 720p (tools/bench.py's moving head), CPU seconds:")
    for speed, fps in (("full speed", 25), ("quarter speed", 100)):
        images = face_clip_images(1280, 720, fps)
        clip = [Picture(images(i), i) for i in range(frames)]
        cells = []
        for every in (1, 2):
            start = time.process_time()
            out = list(track_faces(iter(clip), detector, FaceOptions(detect_every=every)))
            faces = sum(len(f) for _, f in out)
            cells.append(f"detect-every {every}: {time.process_time() - start:5.1f} s ({faces} faces)")
        say(f"  {speed:13s} " + " | ".join(cells))


def reidentification(say: Section) -> None:
    """Id switches along each true face's path, and the returns (a true face seen again after
    frames without it) that kept their id, with re-identification on and off."""
    from vidface.faces.options import detector_for
    from vidface.faces.track import track_faces

    clips = {f"hidden {hidden} frames": moving_face_clip(40 + hidden, occluded=tuple(range(20, 20 + hidden)))
             for hidden in (10, 20, 40)}
    clips["out of the frame and back"] = leaving_and_returning_clip()
    clips["two people crossing"] = crossing_faces_clip(60, people=(head_sprite(), hopper_sprite()))
    detector = detector_for(FaceOptions())
    say("")
    say("re-identification (id switches along the true faces' paths; returns that kept their id):")
    for window in (2.0, 0.0):
        cells = []
        for name, clip in clips.items():
            frames = (Picture(rgb, i) for i, rgb in enumerate(clip.frames))
            tracked = [faces for _, faces in track_faces(frames, detector, FaceOptions(reid_window=window))]
            paths = match_tracks(clip.truth, tracked).values()
            switches = sum(id_switches(path) for path in paths)
            returns = kept = 0
            for path in paths:
                ids = [(i, track) for i, track in enumerate(path) if track is not None]
                for (before, old), (after, new) in zip(ids, ids[1:]):
                    if after > before + 1:
                        returns += 1
                        kept += old == new
            cells.append(f"{name}: {switches} switches, {kept}/{returns} returns kept")
        say(f"  --reid-window {window:g}: " + "; ".join(cells))


def descriptor_cost(say: Section, frames: int = 125) -> None:
    """CPU time in the face descriptor during the faces stage on a 720p clip of the moving head,
    hidden for 20 frames twice, so it is described at confirmation, on refreshes and on returns."""
    from vidface.faces.identity import FaceDescriber
    from vidface.faces.options import detector_for
    from vidface.faces.track import track_faces

    hidden = tuple(range(30, 50)) + tuple(range(80, 100))
    clip = [Picture(rgb, i) for i, rgb in enumerate(moving_face_clip(frames, 1280, 720, scale=1.0, occluded=hidden).frames)]
    spent = {"seconds": 0.0, "calls": 0}
    describe = FaceDescriber.describe

    def timed(self, rgb, box):
        start = time.process_time()
        try:
            return describe(self, rgb, box)
        finally:
            spent["seconds"] += time.process_time() - start
            spent["calls"] += 1

    FaceDescriber.describe = timed
    try:
        start = time.process_time()
        list(track_faces(iter(clip), detector_for(FaceOptions()), FaceOptions()))
        total = time.process_time() - start
    finally:
        FaceDescriber.describe = describe
    say(f"face descriptor in the faces stage ({frames} frames of 720p, the face hidden twice): {spent['calls']} calls, "
        f"{1000 * spent['seconds'] / max(spent['calls'], 1):.0f} ms each, {spent['seconds']:.2f} s of {total:.1f} s CPU "
        f"({100 * spent['seconds'] / total:.1f} %)")


class RecordedNetwork:
    """A detector's network that keeps its outputs, then (after `replay`) gives them back in the
    same order instead of running: the stage around it runs as before, without its cost."""

    def __init__(self, network) -> None:
        self.network = network
        self.outputs: list = []
        self.seconds = 0.0
        self.replaying = None

    def __call__(self, blob: np.ndarray) -> list:
        if self.replaying is not None:
            return next(self.replaying)
        started = time.perf_counter()
        self.outputs.append(self.network(blob))
        self.seconds += time.perf_counter() - started
        return self.outputs[-1]

    def replay(self) -> None:
        self.replaying = iter(self.outputs)


def stage_python(say: Section, seconds: float = 4.0, repeat: int = 3) -> None:
    """The faces stage's own time per frame, its detector network aside (the network's outputs
    recorded in a first pass and replayed): decoding the network's outputs, the refinement's
    geometry, tracking, and OpenCV's resizing and cropping, on tools/bench.py's clips of moving
    faces. On a GPU the network takes a few milliseconds, so this is most of the stage, and its
    Python (all of it but OpenCV's calls) holds the GIL that the restorer's stage needs."""
    from bench import make_clip
    from vidface.faces.options import detector_for
    from vidface.faces.track import track_faces
    from vidface.io.decode import decode_frames

    say(f"faces stage, ms per frame, its network's outputs replayed for the rest (best of {repeat}), on {seconds:g} s "
        f"clips of tools/bench.py's moving faces:")
    with tempfile.TemporaryDirectory(prefix="vidface-bench-faces-") as folder:
        for width, height, faces in ((1920, 1080, 4), (1280, 720, 1)):
            clip = make_clip(Path(folder) / f"clip_{width}x{height}_{faces}.mp4", width, height, seconds, faces=faces)
            frames = list(decode_frames(clip))
            detector = detector_for(FaceOptions())
            network = detector.refiner.network_outputs = RecordedNetwork(detector.refiner.network_outputs)

            def stage() -> int:
                return sum(len(tracked) for _, tracked in track_faces(iter(frames), detector, FaceOptions()))

            started = time.perf_counter()
            found = stage()
            whole = time.perf_counter() - started
            rest = []
            for _ in range(repeat):
                network.replay()
                started = time.perf_counter()
                stage()
                rest.append(time.perf_counter() - started)
            say(f"  {width}x{height}, {faces} face(s) a frame ({found} faces in {len(frames)} frames): stage "
                f"{1000 * whole / len(frames):5.1f}, network {1000 * network.seconds / len(frames):5.1f}, the rest "
                f"{1000 * min(rest) / len(frames):5.2f}")


def descriptor_beside_python(say: Section, calls: int = 20) -> None:
    """ms per face described (dlib places the chip either way), with dlib's network and with
    vidface's (the same network on onnxruntime, vidface.faces.dlib_resnet), and how fast a
    Python thread counts meanwhile against alone: dlib's binding holds the GIL through its
    network, so every other stage's Python (the restorer's among them) waits for it."""
    import threading

    from vidface.faces.identity import DESCRIPTOR_FILE, FaceDescriber, _dlib_models, _model_file

    dlib, _ = _dlib_models()
    dlib_network = dlib.face_recognition_model_v1(str(_model_file(DESCRIPTOR_FILE)))
    rgb = moving_face_clip(40, seed=0).frames[5]
    box = create_detector().detect(rgb)[0].box
    describer = FaceDescriber()
    ways = {"dlib": lambda: dlib_network.compute_face_descriptor(describer.chip(rgb, box)),
            "vidface": lambda: describer.describe(rgb, box)}

    def counting_rate(work) -> tuple[float, float]:
        """(counts per second of a Python thread while `work` runs `calls` times, seconds per call)."""
        stop, counts = threading.Event(), [0]

        def count() -> None:
            while not stop.is_set():
                counts[0] += 1

        thread = threading.Thread(target=count)
        start = time.perf_counter()
        thread.start()
        for _ in range(calls):
            work()
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join()
        return counts[0] / elapsed, elapsed / calls

    for work in ways.values():
        work()  # first calls: allocations, oneDNN's kernels
    alone, _ = counting_rate(lambda: time.sleep(0.01))
    say(f"face descriptor beside a Python thread that counts ({calls} calls; dlib places the chip either way, "
        f"the network is dlib's or vidface's on onnxruntime):")
    for name, work in ways.items():
        rate, seconds = counting_rate(work)
        say(f"  {name:16s} {1000 * seconds:6.1f} ms per face; the thread counts at {rate / alone:.2f}x its speed alone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames of the generated clip (default: 60)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per detector setting (default: 10)")
    parser.add_argument("--python-only", action="store_true",
                        help='only the stage\'s own time, its network aside (section "bench_faces.py python")')
    parser.add_argument("--identity-only", action="store_true",
                        help='only re-identification and the descriptor\'s cost (section "bench_faces.py identity")')
    args = parser.parse_args()
    with Section("bench_faces.py python") as say:
        stage_python(say)
    if args.python_only:
        return
    with Section("bench_faces.py identity") as say:
        reidentification(say)
        descriptor_cost(say)
        descriptor_beside_python(say)
    if args.identity_only:
        return
    with Section("bench_faces.py") as say:
        reading = read_reference_landmarks(create_detector("centerface", refine_crops=8))
        say(f"truth check: the refined detector's reading (8 crops) of the clean head is within "
            f"{np.linalg.norm(reading - ASTRONAUT_LANDMARKS, axis=1).max():.2f} px (photo pixels) of ASTRONAUT_LANDMARKS")
        detector_speed(args.repeat, say)
        smoothing_quality(args.frames, degraded=True, say=say)
        smoothing_quality(args.frames, degraded=False, say=say)
        smoothing_quality(max(args.frames // 3, 8), degraded=True, say=say)
        for frames in (max(args.frames // 3, 8), args.frames * 3):
            stage_accuracy(frames, say)
        recall_by_size(say)
        stage_cpu(say)


if __name__ == "__main__":
    main()
