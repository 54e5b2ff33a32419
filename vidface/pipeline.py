"""The transcode path: decode → FrameProcessor → encode, as overlapping threads.

`plan_transcode` (vidface.plan) probes IN and checks OUT before anything is written;
`transcode` runs a plan through a `FrameProcessor`. Decoding, processing and encoding run on
separate threads joined by bounded queues (vidface.workers), so memory stays flat whatever the
video's length. OUT is written to a temporary file next to it and renamed only when complete;
on any failure or interruption the temporary file is removed. One run at a time writes an OUT
(`vidface.resume.output_lock`). A plan with provenance also gets
its sidecar (vidface.provenance), put in place just before OUT. With `resume=Resume(...)` the
run is resumable, in segments (vidface.segments).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import av

from vidface.files import atomic_output, owned_temporary
from vidface.io.placement import input_frames
from vidface.plan import (FrameProcessor, Plan, Resume, ResumableInterrupt, Segmenting, TimeRange, TranscodeResult,
                          check_output, check_written, identity, output_writer, plan_transcode, write_failed)
from vidface.provenance import sidecar_for
from vidface.workers import in_background, queue_waits, waits_since

__all__ = ["FrameProcessor", "Plan", "Resume", "ResumableInterrupt", "Segmenting", "TimeRange", "TranscodeResult",
           "check_output", "identity", "plan_transcode", "transcode"]

log = logging.getLogger(__name__)


def transcode(
    plan: Plan,
    processor: FrameProcessor = identity,
    *,
    progress: Callable[[int], None] | None = None,
    resume: Resume | None = None,
    on_segment: Callable[[int, int], None] | None = None,
) -> TranscodeResult:
    """Run `plan`: decode its frame range, pass it through `processor`, encode and mux.

    progress: called with the number of frames written so far, after each frame. The output
    appears at plan.output only when complete. resume: make the run resumable (see the module
    docstring); the processor is then called once per segment, each call starting afresh.
    on_segment: in a resumable run, called with a segment's kept frames [first, stop) (output
    positions, as Frame.index) before the processor's call for it starts, so a processor's
    counters can leave out the warm-up and look-ahead frames it processes and drops.
    """
    waits = queue_waits()
    if resume is not None:
        from vidface.segments import transcode_resumable

        result = transcode_resumable(plan, processor, resume, progress, on_segment)
    else:
        result = _transcode_whole(plan, processor, progress)
    log.info("%s: %s", plan.output.name, waits_since(waits))
    return result


def _transcode_whole(plan: Plan, processor: FrameProcessor, progress: Callable[[int], None] | None) -> TranscodeResult:
    from vidface.resume import check_unchanged, fingerprint, output_lock

    info = plan.info
    started = time.perf_counter()
    cancel = threading.Event()
    try:
        read = fingerprint(info.path)
        with output_lock(plan.output, overwrite=plan.overwrite), \
                atomic_output(plan.output, temporary=owned_temporary(plan.output)) as temporary, \
                sidecar_for(plan) as sidecar:
            with output_writer(plan, temporary) as writer:
                decoded = in_background(input_frames(plan, 0), cancel, "decode")
                processed = in_background(processor(decoded), cancel, "process")
                try:
                    for frame in processed:
                        if sidecar is not None:
                            sidecar.add(frame)
                        writer.write(frame)
                        if progress is not None:
                            progress(writer.frames_written)
                finally:
                    cancel.set()
                    processed.close()
                    decoded.close()
                frames = writer.frames_written
            check_unchanged(info.path, read)
            check_written(plan, frames)
    except (av.error.FFmpegError, OSError) as error:
        raise write_failed(plan.output, error) from None
    return TranscodeResult(output=plan.output, frames=frames, seconds=time.perf_counter() - started)

