"""vidface's Python API: a ready restorer from settings, run on one file after another.

    from vidface.api import load_restorer
    from vidface.config import load_settings

    restorer = load_restorer(load_settings("archival"))
    result = restorer.restore("in.mp4", "out.mp4")
    print(result.frames, restorer.stats.faces)

`load_restorer` finds (or downloads) the weights, builds the detector and face parser and starts
loading the model on a background thread, so the first file's decoding and detection begin
while the model loads. `Restorer.restore` plans, checks and runs one file: resumable in segments
by default (an interrupted call, run again, goes on where it stopped). `vidface restore`, its
folder mode and the render farm all run files through this API.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, so that building the command line stays light
    from vidface.config import Settings
    from vidface.estimate import RunEstimate
    from vidface.faces.detect import FaceDetector
    from vidface.faces.selection import SelectedFaces
    from vidface.models.osdface import OSDFace
    from vidface.plan import FrameProcessor, Plan, Resume, TimeRange, TranscodeResult
    from vidface.provenance import Provenance
    from vidface.restore import FaceChoice, RestoreStats
    from vidface.weights import WeightsLocation

__all__ = ["MODELS", "Restorer", "load_restorer", "resume_options"]

MODELS = ("osdface", "none")
"""Restorers `load_restorer` builds; `none` passes frames through untouched (an I/O-only run)."""


@dataclass
class Restorer:
    """A face restorer built once and run on many files (see `load_restorer`).

    processor: the FrameProcessor every file goes through. stats: counters the processor
    updates (faces restored, frames with faces, model wait), over all files; None for `none`.
    provenance: what every OUT it restores records about the run (a container tag and the
    sidecar OUT.vidface.json, `vidface.provenance`); None for `none`, which alters nothing.
    Worked out on first use (the first `restore`, while the model loads): the render farm's
    workers restore segments of plans that carry the driver's, and never need their own.
    """

    settings: Settings
    model_name: str
    processor: FrameProcessor
    stats: RestoreStats | None = None
    model: Future[OSDFace] | None = None
    detector: FaceDetector | None = None
    weights: WeightsLocation | None = None
    detector_weights: Path | None = None
    choice: FaceChoice | None = None

    @functools.cached_property
    def provenance(self) -> Provenance | None:
        if self.weights is None:
            return None
        from vidface.provenance import provenance_for

        return provenance_for(self.settings, self.model_name, self.weights)

    def plan(self, source: str | os.PathLike[str], output: str | os.PathLike[str], *,
             time_range: TimeRange | None = None, keep_audio: bool = True,
             sound: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Plan:
        """Probe `source` and check `output` with this restorer's encoding (time_range None: every
        frame; sound: a sound file copied after IN's streams, see `plan_transcode`); nothing is
        written."""
        from vidface.plan import TimeRange, plan_transcode

        return plan_transcode(source, output, encode=self.settings.encode, time_range=time_range or TimeRange(),
                              keep_audio=keep_audio, sound=sound, overwrite=overwrite)

    def restore(self, source: str | os.PathLike[str] | Plan, output: str | os.PathLike[str] | None = None, *,
                progress: Callable[[int], None] | None = None, resume: bool = True, restart: bool = False,
                segment_frames: int | None = None, selected: SelectedFaces | None = None,
                **plan_options: Any) -> TranscodeResult:
        """Restore one file: `source` and `output` paths (planned with `plan_options`, see
        `plan`), or a Plan. resume: run in resumable segments of `segment_frames` (default
        Segmenting.frames) kept next to OUT until it is complete; restart: discard an earlier
        run's segments. progress: called with the frames written so far. selected: the faces
        to restore, from `select` (None: every face). OUT gets this restorer's provenance."""
        from dataclasses import replace

        from vidface.pipeline import transcode
        from vidface.plan import Plan

        plan = source if isinstance(source, Plan) else self.plan(source, output, **plan_options)
        plan = replace(plan, provenance=self.provenance)
        if self.choice is not None:
            self.choice.selected = selected
        try:
            return transcode(plan, self.processor, progress=progress,
                             resume=self.resume(restart, segment_frames) if resume else None,
                             on_segment=self.stats.keep if self.stats is not None else None)
        finally:
            if self.choice is not None:
                self.choice.selected = None

    def select(self, plan: Plan, *, seconds: float | None = None) -> SelectedFaces | None:
        """The faces settings.faces.select takes in `plan` (`vidface.faces.selection`: a pass of
        the faces stage over its frames, or over the first `seconds` of them); None where every
        face is restored (`all`, or the `none` model)."""
        from vidface.faces.selection import ALL, FaceSelection, select_faces

        selection = FaceSelection.parse(self.settings.faces.select)
        if selection.kind == ALL or self.detector is None:
            return None
        return select_faces(plan, self.detector, self.settings.faces, selection, seconds=seconds)

    def resume(self, restart: bool = False, segment_frames: int | None = None) -> Resume:
        """How a resumable run of this restorer is cut and recognised (`resume_options`)."""
        return resume_options(self.settings, self.model_name, self.weights, self.detector_weights,
                              restart=restart, segment_frames=segment_frames)

    def estimate(self, plan: Plan, selected: SelectedFaces | None = None) -> RunEstimate | None:
        """On a CPU, the estimate of the run of `plan` about to start (`vidface.estimate`: faces
        sampled from now on, or counted in `selected`, the faces `select` chose; seconds per face
        from the run's model batches); None on a GPU or for `none`."""
        if self.stats is None or not plan.frame_count:
            return None
        from vidface.estimate import RunEstimate
        from vidface.faces.detect import first_pass
        from vidface.models.options import device_name

        if device_name(self.settings.model.device) != "cpu":
            return None
        return RunEstimate(plan, first_pass(self.detector), self.stats, selected)


def resume_options(settings: Settings, model: str, weights: WeightsLocation | None,
                   detector_weights: str | os.PathLike[str] | None = None, *, restart: bool = False,
                   segment_frames: int | None = None, work_dir: Path | None = None) -> Resume:
    """How a resumable run is cut and recognised: its key holds everything that changes the
    restored frames (model, `frame_settings`, weights' identity) beyond the plan's own, so a run,
    its resumption and the render farm's workers agree on it. Settings are keyed as given, `auto`
    unresolved: the driver of a farm may have no GPU, and a run moved to another machine keeps
    its finished segments (the choices `auto` makes there restore within bf16's rounding). The
    batch size is left out for the same reason: a run that ran out of GPU memory resumes with a
    smaller one."""
    from vidface.config import frame_settings
    from vidface.plan import Resume, Segmenting
    from vidface.resume import weights_identity

    key: dict[str, object] = {"model": model}
    if model != "none":
        key.update(settings=frame_settings(settings),
                   detector_weights=str(detector_weights) if detector_weights else None,
                   weights=weights_identity(weights), photos=_photos_identity(settings.faces.select))
    frames = segment_frames or Segmenting.frames
    # without a model nothing carries state across frames: a segment needs no warm-up or look-ahead,
    # and the frames they would hold back are memory that one long pass does not use
    segmenting = (Segmenting(frames=frames, warmup=0, lookahead=0) if model == "none"
                  else Segmenting(frames=frames, lookahead=settings.faces.lag))
    return Resume(key=key, restart=restart, segmenting=segmenting, work_dir=work_dir)


def _photos_identity(select: str) -> dict[str, str]:
    """The --faces photos' contents (SHA-256), so a run resumes only with the same photos."""
    import hashlib

    from vidface.faces.selection import FaceSelection

    identity = {}
    for photo in FaceSelection.parse(select).photos:
        try:
            identity[photo] = hashlib.sha256(Path(photo).read_bytes()).hexdigest()
        except OSError:
            identity[photo] = "unreadable"  # the selection pass says why, in one line
    return identity


def load_restorer(settings: Settings | None = None, *, model: str = "osdface",
                  detector_weights: str | os.PathLike[str] | None = None) -> Restorer:
    """A ready restorer from `settings` (None: the default preset's).

    The weights are found (or downloaded) first, so missing weights fail before anything else;
    the detector and face parser are built next; then the model loads on a background thread
    while the caller goes on (its first file's decoding and detection start at once).
    """
    from vidface.config import load_settings
    from vidface.plan import identity

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    settings = settings or load_settings()
    if model == "none":
        return Restorer(settings, model, identity)
    from vidface.faces.parsing import parser_for
    from vidface.faces.options import detector_for
    from vidface.models.options import device_name
    from vidface.restore import FaceChoice, RestoreStats, face_restorer
    from vidface.weights import resolve

    options = settings.model
    location = resolve(options.weights, options.base, options.weights_repo)
    device = device_name(options.device)
    detector_path = Path(detector_weights) if detector_weights else None
    detector = detector_for(settings.faces, weights=detector_path, device=device)
    parser = parser_for(settings.paste, device)
    # Built before the model loads: diffusers creates its modules under a process-wide patch of
    # torch (accelerate's empty-weights init) that would catch modules made on other threads.
    loading = load_model(settings, location)
    stats, choice = RestoreStats(), FaceChoice()
    processor = face_restorer(loading, settings, detector=detector, parser=parser, stats=stats, choice=choice)
    return Restorer(settings, model, processor, stats, loading, detector, location, detector_path, choice)


def load_model(settings: Settings, location: WeightsLocation) -> Future[OSDFace]:
    """OSDFace from the weights at `location`, as a Future that a background thread fulfils.
    Loading (importing diffusers, reading the weights: several seconds) overlaps with decoding
    and detection; a loading error is raised where the model is awaited."""
    # A run that ends early leaves the interpreter to wait for this thread as it shuts down, when
    # threading refuses new exit hooks; concurrent.futures.thread registers one as it is first
    # imported, which torch's import does: imported here, the hook is in place before.
    import concurrent.futures.thread  # noqa: F401

    model: Future = Future()

    def load() -> None:
        from vidface.models.loading import load_osdface

        try:
            model.set_result(load_osdface(settings.model, location))
        except BaseException as error:  # raised where the model is awaited
            model.set_exception(error)

    # Not a daemon: a run that fails while the model loads waits for the load to end before the
    # interpreter exits, since a thread stopped inside torch's native code aborts the process.
    threading.Thread(target=load, name="vidface-load").start()
    return model
