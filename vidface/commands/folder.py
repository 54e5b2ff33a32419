"""`vidface restore IN_DIR OUT_DIR`: folder mode, every video and image sequence of a folder
restored with one loaded model (`vidface.batch`), here or on the render farm; a table of what
became of each file ends it."""

from __future__ import annotations

import argparse

from vidface.commands.options import show_progress
from vidface.commands.restore import (build_settings, check_photos, frames_bar, measured_fields, on_farm,
                                      plan_options, selected_faces)


def run_folder(args: argparse.Namespace) -> int:
    """Folder mode: every video and image sequence of IN into OUT with one loaded model; a summary
    table on stdout."""
    from pathlib import Path

    from vidface.api import load_restorer
    from vidface.batch import find_jobs, run_jobs
    from vidface.errors import InputError

    if args.audio is not None:
        raise InputError("--audio lays one sound file beside one IN; restore each file with its sound apart")
    settings = build_settings(args)
    jobs, not_run = find_jobs(Path(args.input), Path(args.output), recursive=args.recursive, extension=args.ext)
    if args.dry_run:
        for job in jobs:
            exists = job.output.exists() and not args.overwrite
            print(f"{job.name} -> {job.output}" + (" (exists: skipped)" if exists else ""))
        for result in not_run:
            print(f"{result.name}: {result.status}, {result.message}")
        return 0
    check_photos(settings, args)
    if args.ray is not None:
        return _folder_on_farm(args, settings, jobs, not_run)
    restorer = load_restorer(settings, model=args.model if jobs else "none", detector_weights=args.detector_weights)
    show = show_progress(args)
    files = frames_bar(len(jobs), "files", unit="file", position=0) if show else None

    def restore(job) -> int:
        plan = restorer.plan(job.source, job.output, **plan_options(args))
        measured_fields(plan, settings, args)
        frames = frames_bar(plan.decodable_count, job.name, position=1, leave=False) if show else None
        try:
            return restorer.restore(plan, progress=(lambda n: frames.update(n - frames.n)) if frames else None,
                                    restart=args.no_resume, segment_frames=args.segment_frames,
                                    selected=selected_faces(restorer, plan)).frames
        finally:
            if frames is not None:
                frames.close()

    results = []

    def done(result) -> None:
        results.append(result)
        if files is not None:
            files.update(1)

    try:
        run_jobs(jobs, restore, overwrite=args.overwrite, on_done=done)
    finally:
        if files is not None:
            files.close()
        status = _summarised(not_run + results)  # the table of what was done, an interrupted batch's too
    return status


def _folder_on_farm(args: argparse.Namespace, settings, jobs: list, not_run: list) -> int:
    """Folder mode on the render farm: every file planned here (one that cannot be read fails
    at once), then all their segments in one queue; the same summary table as without it."""
    import time

    from vidface.batch import DONE, FAILED, FileResult, already_written
    from vidface.errors import VidfaceError

    results, planned = [], []
    for job in jobs:
        if skipped_job := already_written(job, overwrite=args.overwrite, work_dir=args.work_dir):
            results.append(skipped_job)
            continue
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            planned.append((job, _plan_for(job, settings, args)))
        except VidfaceError as error:
            results.append(FileResult(job.name, FAILED, message=str(error)))
    started = time.perf_counter()
    outcomes = on_farm(args, settings, [plan for _, plan in planned]) if planned else []
    for (job, _), outcome in zip(planned, outcomes):
        if isinstance(outcome, VidfaceError):
            results.append(FileResult(job.name, FAILED, seconds=time.perf_counter() - started, message=str(outcome)))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append(FileResult(job.name, DONE, outcome.frames, outcome.seconds))
    return _summarised(not_run + results)


def _summarised(results: list) -> int:
    """Print folder mode's table of `results`; the exit status: 1 if any file failed."""
    from vidface.batch import FAILED, summary_table

    print(summary_table(sorted(results, key=lambda r: r.name)), flush=True)
    return 1 if any(r.status == FAILED for r in results) else 0


def _plan_for(job, settings, args: argparse.Namespace):
    """`job`'s plan, its warnings naming its file."""
    from vidface.batch import messages_named
    from vidface.plan import plan_transcode

    with messages_named(job.name):
        return plan_transcode(job.source, job.output, encode=settings.encode, work_dir=args.work_dir,
                              **plan_options(args))
