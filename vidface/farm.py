"""The render farm: one video or a folder of them across many GPUs and machines, on Ray.

The unit of work is the resumable run's segment (vidface.segments): each carries its warm-up
frames and the tracker's look-ahead, so a segment restored by any worker equals the same
frames of an uninterrupted run. The driver (this process) plans every file, opens each OUT
with its work folder exactly as a resumable run does, and puts the pending segments of every
file in one queue, longest first. Each worker is a Ray actor holding the restorer (the model
loaded once per actor) that reads IN itself, restores and encodes a segment, and sends the
encoded bytes back through Ray's object store, or, with a work folder on shared storage
(`work_dir`), writes them there. The driver checks each segment against its checksum, records
it in the work folder's manifest, and when a file's segments are all in, muxes them into OUT
as a resumed run does (on a thread of its own, while the workers go on with other files). Ray schedules, moves the data and restarts dead workers; vidface only
hands out segments and retries a failed one (up to MAX_ATTEMPTS) on another worker.

Killed, the driver leaves each file's finished segments in its work folder: the same command
resumes from them, on this cluster or another.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidface.errors import VidfaceError

if TYPE_CHECKING:
    from vidface.config import Settings
    from vidface.faces.selection import SelectedFaces
    from vidface.plan import Plan, Resume, Segmenting, TranscodeResult
    from vidface.resume import SegmentRecord

log = logging.getLogger(__name__)

FARM_INSTALL = 'pip install "vidface[farm]"'
MAX_ATTEMPTS = 3
"""Tries a segment gets (on any worker) before its file fails."""
CONNECT_TIMEOUT = 5.0


class FarmError(VidfaceError):
    """The farm cannot run (Ray missing, cluster unreachable), or a file's segment kept failing."""


def connect(address: str) -> None:
    """Join or start Ray: "local" starts it on this machine with its GPUs; "auto" joins the
    cluster of RAY_ADDRESS or of `ray start` on this machine; anything else is a cluster's
    address (HOST:PORT). Does nothing when Ray is already running in this process."""
    try:
        import ray
    except ImportError:
        raise FarmError(f"the render farm needs Ray: {FARM_INSTALL}") from None
    if ray.is_initialized():
        return
    if log.getEffectiveLevel() >= logging.WARNING:  # Ray's start-up notes only with -v
        logging.getLogger("ray").setLevel(logging.ERROR)
    target = os.environ.get("RAY_ADDRESS", "auto") if address == "auto" else address
    if target not in ("local", "auto"):
        _check_reachable(target)
    try:
        ray.init(address=None if target == "local" else target, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise FarmError(f"cannot join the Ray cluster at {target} ({str(error).splitlines()[0]}); start one with "
                        f"`ray start --head`, or use --ray without an address for this machine alone") from None


def _check_reachable(address: str) -> None:
    """A cluster that does not answer is an error at once, not after Ray's long retries."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except ValueError:
        raise FarmError(f"--ray {address} is not a cluster address; give HOST:PORT, auto, or nothing") from None
    except OSError as error:
        raise FarmError(f"cannot reach the Ray cluster at {address} ({error.strerror or error}); check the "
                        f"address, or start the cluster with `ray start --head`") from None


@dataclass(frozen=True)
class SegmentJob:
    """One segment of one file, as a worker needs it."""

    file: int
    plan: Plan
    segmenting: Segmenting
    number: int
    first: int
    stop: int
    work_path: Path | None  # the segment's file on shared storage, or None: bytes come back
    selected: SelectedFaces | None = None  # the faces to restore in its frames (None: every face)

    @property
    def frames(self) -> int:
        return self.stop - self.first


@dataclass(frozen=True)
class SegmentDone:
    """A worker's finished segment: its record and encoder headers, its bytes and its sidecar
    entries' bytes (None when written to shared storage, or for entries, when the run keeps
    none), the faces it restored, and who did it in how long."""

    job: SegmentJob
    record: SegmentRecord
    extradata: bytes | None
    data: bytes | None
    edits: bytes | None
    faces: int
    seconds: float
    worker: str


class _Worker:
    """A farm worker (a Ray actor): the restorer, built once, run on segment after segment."""

    def __init__(self, settings: Settings, model: str, detector_weights: str | None) -> None:
        from vidface.api import load_restorer

        self.restorer = load_restorer(settings, model=model, detector_weights=detector_weights)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def pid(self) -> int:
        return os.getpid()

    def restore(self, job: SegmentJob) -> SegmentDone:
        from vidface.files import scratch_folder
        from vidface.resume import edits_path
        from vidface.segments import encode_segment, segment_feed

        started = time.perf_counter()
        stats = self.restorer.stats
        faces_before = stats.faces if stats is not None else 0
        if stats is not None:
            stats.keep(job.first, job.stop)
        if self.restorer.choice is not None:
            self.restorer.choice.selected = job.selected
        try:
            with scratch_folder() as scratch:
                path = job.work_path or scratch / f"segment-{job.number:05d}.bin"
                feed = segment_feed(job.plan, job.segmenting, job.first, job.stop)
                record, extradata = encode_segment(job.plan, self.restorer.processor, feed, job.number, job.first,
                                                   job.stop, path, threading.Event())
                data = None if job.work_path else path.read_bytes()
                edits = None if job.work_path or record.edits_sha256 is None else edits_path(path).read_bytes()
        finally:
            if self.restorer.choice is not None:
                self.restorer.choice.selected = None
        faces = (stats.faces - faces_before) if stats is not None else 0
        return SegmentDone(job, record, extradata, data, edits, faces, time.perf_counter() - started, self.name)


@dataclass
class WorkerTally:
    """What one worker did: segments, frames and faces, and seconds spent on them."""

    segments: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0


@dataclass
class FarmProgress:
    """The whole farm's progress, for a progress bar: frames of all files written or finished,
    of `total`; faces restored; per worker tallies; seconds since the start. overhead: seconds
    the segments spent outside their workers' restoring (scheduling, transfer, checks), summed;
    muxing: seconds the driver spent muxing finished files (on a thread of its own, while the
    workers go on)."""

    total: int
    frames: int = 0
    faces: int = 0
    overhead: float = 0.0
    muxing: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    workers: dict[str, WorkerTally] = field(default_factory=dict)
    busy: set[int] = field(default_factory=set)  # process ids of the workers restoring a segment now

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class _File:
    """A file on the farm: its plan, its open SegmentedOutput (inside `stack`), its outcome."""

    index: int
    plan: Plan
    stack: ExitStack
    run: Any = None
    pending: int = 0
    result: TranscodeResult | None = None
    error: BaseException | None = None


def farm_restore(plans: list[Plan], settings: Settings, resume: Resume, *, model: str = "osdface",
                 detector_weights: str | None = None, workers: int | None = None,
                 progress: Callable[[FarmProgress], None] | None = None,
                 selected: list[SelectedFaces | None] | None = None
                 ) -> tuple[list[TranscodeResult | BaseException], FarmProgress]:
    """Restore every plan's file on the Ray cluster this process is connected to (`connect`);
    returns, per plan, its TranscodeResult or the error that ended it, and the farm's tallies.

    resume: the resumable run's options, the same for every file (key, segmenting, work_dir).
    workers: actors to start (default: one per GPU of the cluster, else one per CPU).
    progress: called after each finished segment.
    selected: per plan, the faces to restore (`vidface.faces.selection`; None: every face).
    Each OUT gets the run's provenance (`vidface.provenance`), as a one-process run's does.
    """
    import ray

    from vidface.segments import segmented_output

    plans = _with_provenance(plans, settings, model)
    files: list[_File] = []
    tally = FarmProgress(total=sum(plan.frame_count for plan in plans))
    with ExitStack() as everything:
        for index, plan in enumerate(plans):
            stack = ExitStack()
            everything.callback(_close_unfinished, stack)
            entry = _File(index, plan, stack)
            files.append(entry)
            try:
                entry.run = stack.enter_context(segmented_output(plan, resume))
            except BaseException as error:  # noqa: BLE001 (a file that cannot start is its outcome)
                if isinstance(error, KeyboardInterrupt):
                    raise
                entry.error = error
                continue
            tally.frames += entry.run.resumed
        jobs = [SegmentJob(entry.index, entry.plan, resume.segmenting, number, first, stop,
                           entry.run.work.segment_path(number) if resume.work_dir else None,
                           _segment_selection(selected[entry.index] if selected else None, resume.segmenting,
                                              first, stop))
                for entry in files if entry.run is not None for number, first, stop in entry.run.pending()]
        for entry in files:
            entry.pending = sum(job.file == entry.index for job in jobs)
            if entry.run is not None and entry.pending == 0:
                _finish(entry)
        jobs.sort(key=lambda job: -job.frames)  # longest first: every worker stays busy to the end
        if jobs:
            _run_jobs(ray, jobs, files, settings, model, detector_weights, workers, tally, progress)
    return [entry.result if entry.error is None else entry.error for entry in files], tally


def _with_provenance(plans: list[Plan], settings: Settings, model: str) -> list[Plan]:
    if model == "none":
        return plans
    from vidface.provenance import provenance_for
    from vidface.weights import resolve

    options = settings.model
    provenance = provenance_for(settings, model, resolve(options.weights, options.base, options.weights_repo))
    return [dataclasses.replace(plan, provenance=provenance) for plan in plans]


def _run_jobs(ray, jobs: list[SegmentJob], files: list[_File], settings: Settings, model: str,
              detector_weights: str | None, workers: int | None, tally: FarmProgress,
              progress: Callable[[FarmProgress], None] | None) -> None:
    """Hand the jobs to the workers until each is done or its file failed."""
    remote = ray.remote(max_restarts=0)(_Worker)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = max(1, min(len(jobs), workers or gpus or int(resources.get("CPU", 1))))
    options = {"num_gpus": 1} if gpus else {"num_cpus": 1}

    def start(number: int) -> list[tuple[Any, int]]:
        actors = [remote.options(**options).remote(settings, model, detector_weights) for _ in range(number)]
        return list(zip(actors, ray.get([actor.pid.remote() for actor in actors])))

    pool = start(count)
    idle = list(pool)
    # Finished files are muxed on a thread of their own, so that the workers get their next
    # segments meanwhile; the pool is waited for before the files' work folders are closed.
    muxer = ThreadPoolExecutor(1, thread_name_prefix="vidface-mux")
    attempts: dict[tuple[int, int], int] = {}
    submitted: dict[tuple[int, int], float] = {}
    running: dict[Any, tuple[Any, int, SegmentJob]] = {}
    queue = list(jobs)
    finished = False
    try:
        while queue or running:
            while idle and queue:
                job = queue.pop(0)
                if files[job.file].error is not None:
                    continue
                actor, pid = idle.pop()
                running[actor.restore.remote(job)] = (actor, pid, job)
                submitted[job.file, job.number] = time.perf_counter()
                tally.busy.add(pid)
            if not running:
                break
            [ready], _ = ray.wait(list(running), num_returns=1)
            actor, pid, job = running.pop(ready)
            tally.busy.discard(pid)
            entry = files[job.file]
            try:
                done: SegmentDone = ray.get(ready)
            except ray.exceptions.RayActorError as error:  # the worker died: a new one takes its place
                _retry(job, attempts, queue, entry, error)
                ray.kill(actor, no_restart=True)
                replacement = start(1)
                pool += replacement
                idle += replacement
                continue
            except ray.exceptions.RayTaskError as error:
                _retry(job, attempts, queue, entry, error.cause if error.cause is not None else error)
                idle.append((actor, pid))
                continue
            idle.append((actor, pid))
            if entry.error is not None:
                continue
            try:
                entry.run.add(done.record, done.extradata, done.data, done.edits)
            except VidfaceError as error:
                _retry(job, attempts, queue, entry, error)
                continue
            tally.overhead += time.perf_counter() - submitted[job.file, job.number] - done.seconds
            worker = tally.workers.setdefault(done.worker, WorkerTally())
            worker.segments += 1
            worker.frames += done.record.frames
            worker.faces += done.faces
            worker.seconds += done.seconds
            tally.frames += done.record.frames
            tally.faces += done.faces
            entry.pending -= 1
            if entry.pending == 0:
                muxer.submit(_finish, entry, tally)
            if progress is not None:
                progress(tally)
        finished = True
    finally:
        for actor, _ in pool:
            ray.kill(actor, no_restart=True)
        # Every file whose segments are in is muxed; interrupted, the muxes not begun are left
        # (those files' finished segments stay for a rerun).
        muxer.shutdown(wait=True, cancel_futures=not finished)


def _segment_selection(selected: SelectedFaces | None, segmenting: Segmenting, first: int,
                       stop: int) -> SelectedFaces | None:
    """The part of a file's selection a segment's frames (warm-up and look-ahead too) need."""
    if selected is None:
        return None
    return selected.within(first - segmenting.warmup, stop + segmenting.lookahead)


def _retry(job: SegmentJob, attempts: dict[tuple[int, int], int], queue: list[SegmentJob], entry: _File,
           error: BaseException) -> None:
    """Put a failed segment back in the queue, or fail its file after MAX_ATTEMPTS tries."""
    key = (job.file, job.number)
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < MAX_ATTEMPTS:
        log.warning("segment %d (frames %d-%d) of %s failed (%s); trying it again", job.number, job.first,
                    job.stop - 1, job.plan.info.path.name, _line(error))
        queue.insert(0, job)
        return
    entry.error = FarmError(f"{job.plan.info.path}: segment {job.number} (frames {job.first}-{job.stop - 1}) failed "
                            f"{MAX_ATTEMPTS} times; last error: {_line(error)}")
    _close_unfinished(entry.stack, entry.error)


def _finish(entry: _File, tally: FarmProgress | None = None) -> None:
    """Mux a file whose segments are all in; its result or error is the file's outcome. The
    seconds it takes are added to tally.muxing."""
    started = time.perf_counter()
    try:
        entry.stack.close()
        entry.result = entry.run.result
    except BaseException as error:  # noqa: BLE001 (the muxing's failure is the file's outcome)
        if isinstance(error, KeyboardInterrupt):
            raise
        entry.error = error
    if tally is not None:
        tally.muxing += time.perf_counter() - started


def _close_unfinished(stack: ExitStack, error: BaseException | None = None) -> None:
    """Leave a file's SegmentedOutput without muxing: its finished segments stay for a rerun."""
    failure = error or KeyboardInterrupt()
    try:
        stack.__exit__(type(failure), failure, None)
    except BaseException:  # noqa: BLE001 (the file's outcome is already recorded; its work folder stays)
        pass


def _line(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0]
