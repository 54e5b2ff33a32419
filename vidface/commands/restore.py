"""`vidface restore IN OUT`: stream IN through the restorer into OUT, keeping every stream."""

from __future__ import annotations

import argparse
import logging
import sys

from vidface.commands.options import (add_option_flags, add_output_flags, option_overrides, positive_int, show_progress,
                                     time_range)
from vidface.commands.dry_run import describe_plan
from vidface.commands.report import check_report_path, report_of_restore
from vidface.commands.track import add_face_flags

from vidface.api import MODELS

log = logging.getLogger("vidface")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore every face in a video",
        description="Restore every face in IN and write OUT. Timestamps, frame count, audio, "
                    "subtitles, metadata and rotation are kept; only the video is re-encoded, and "
                    "frames without faces keep their pixels. Settings come from the default "
                    "preset, then each --config PRESET|FILE, then the flags given on the command line (later wins).",
    )
    parser.add_argument("input", metavar="IN", help="input video, an image sequence's pattern (scan.%%06d.dpx or "
                                                      "scan.######.dpx), or a folder of videos (folder mode)")
    parser.add_argument("output", metavar="OUT",
                        help="output video, the container following its extension; in folder mode the "
                             "output folder, where each video keeps its relative path and name")
    parser.add_argument("--model", choices=MODELS, default="osdface",
                        help="face restorer (default: %(default)s; 'none' only re-encodes, to check I/O)")
    parser.add_argument("--config", action="append", default=[], metavar="PRESET|FILE",
                        help="settings: a preset (default, archival: best quality, detection in more "
                             "pixels, fp32, crf 12; fast: detection every 3rd frame, crf 20, x264 "
                             "veryfast) or a YAML file with sections faces, model, temporal, encode (see "
                             "vidface/configs/default.yaml); repeatable, later over earlier, over the "
                             "default preset; flags override them all")
    add_settings_flags(parser)
    parser.add_argument("--no-audio", action="store_true",
                        help="drop IN's audio streams (default: copy every one, untouched)")
    parser.add_argument("--audio", metavar="FILE", default=None,
                        help="also copy the audio streams of FILE (a scan's or a capture's sound, such as a WAV), "
                             "untouched, after IN's own; FILE's start is IN's first frame")
    parser.add_argument("--dry-run", action="store_true",
                        help="probe IN, print what would be done, write nothing")
    parser.add_argument("--report", metavar="FILE", default=None,
                        help="afterwards, write the QA report of the run to FILE, one HTML page that opens offline "
                             "(as `vidface report IN OUT FILE`, with the run's timings); one file, not folder mode")
    add_resume_flags(parser)
    add_farm_flags(parser)
    folder = parser.add_argument_group("folder mode", "IN is a folder: every video in it (by extension: .mp4, "
                                                      ".mov, .mkv, .webm, .avi, .ts, ...) and every numbered "
                                                      "image sequence (.dpx, .tif, .png, ...) is restored; other "
                                                      "files are skipped with a note, existing outputs are "
                                                      "skipped, a failed file does not stop the others, and "
                                                      "the exit status is 1 if any failed")
    folder.add_argument("--recursive", action="store_true", help="also the videos in IN's sub-folders")
    folder.add_argument("--ext", default=None, metavar="EXT",
                        help="container of the outputs, e.g. mkv (default: each input's own extension)")
    add_output_flags(parser)


def add_resume_flags(parser: argparse.ArgumentParser) -> None:
    """Resumable runs: work files next to OUT (.OUT.vidface-work/) until OUT is complete."""
    group = parser.add_argument_group("resume", "an interrupted run (Ctrl-C, kill, crash) continues where it "
                                                "stopped when the same command runs again")
    group.add_argument("--no-resume", action="store_true",
                       help="discard the work files of an earlier interrupted run and start over")
    group.add_argument("--segment-frames", type=positive_int, default=None, metavar="N",
                       help="frames per resumable segment: at most this much work is lost to an "
                            "interruption; each segment also processes the 32 frames before it and "
                            "the tracker's look-ahead (8) after it (default: 900, a few per cent of extra work)")


def add_farm_flags(parser: argparse.ArgumentParser) -> None:
    """The render farm (vidface.farm): the segments of IN, or of every video of a folder, on Ray."""
    from pathlib import Path

    group = parser.add_argument_group("render farm", "restore the segments of IN (or of every video in a folder) "
                                                     "on Ray workers, one per GPU; OUT equals a one-process run's")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run on Ray: alone, a Ray started on this machine with its GPUs; auto, or a cluster's "
                            "HOST:PORT ($RAY_ADDRESS), joins a cluster started with `ray start` (needs "
                            "pip install \"vidface[farm]\")")
    group.add_argument("--work-dir", type=Path, default=None, metavar="DIR",
                       help="storage every worker and this machine share: finished segments are written there "
                            "(default: workers send them back, and they are kept next to OUT)")


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that override the settings (None when not given); read them with `build_settings`."""
    from vidface.faces.paste import PasteOptions
    from vidface.io.options import EncodeOptions
    from vidface.models.options import ModelOptions
    from vidface.models.temporal import TemporalOptions

    temporal = parser.add_argument_group("temporal stabilisation")
    switch = temporal.add_mutually_exclusive_group()
    add_option_flags(switch, TemporalOptions, only=("strength",))
    switch.add_argument("--no-temporal", action="store_true",
                        help="restore every frame on its own (no latent, prompt or mask smoothing)")
    encode = parser.add_argument_group("encoding")
    add_option_flags(encode, EncodeOptions)
    encode.add_argument("--encoder-opt", action="append", default=[], metavar="KEY=VALUE",
                        type=_key_value, help="extra encoder option, repeatable (e.g. tune=film); "
                                              "added to the config file's")
    add_face_flags(parser, device=False, restoring=True)
    add_option_flags(parser.add_argument_group("paste-back"), PasteOptions)
    add_option_flags(parser.add_argument_group("model"), ModelOptions)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_settings(args: argparse.Namespace):
    """The run's `vidface.config.Settings`: default preset < each --config < flags given."""
    import dataclasses

    from vidface.config import load_settings

    overrides = option_overrides(args)
    if args.no_temporal:
        overrides["temporal.strength"] = 0.0
    settings = load_settings(*args.config, overrides=overrides)
    if args.encoder_opt:
        encode = settings.encode
        settings = dataclasses.replace(settings, encode=dataclasses.replace(
            encode, options=tuple(encode.options) + tuple(args.encoder_opt)))
    return settings


def plan_options(args: argparse.Namespace) -> dict:
    """The plan's options from the flags (frame range, audio, sound file, overwrite), for every file."""
    return dict(time_range=time_range(args), keep_audio=not args.no_audio, sound=args.audio, overwrite=args.overwrite)


def frames_bar(total: int, desc: str, **options):
    """A progress bar on stderr counting `total` frames (files, with unit="file")."""
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True, **options)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vidface.api import load_restorer
    from vidface.errors import InputError
    from vidface.plan import plan_transcode

    if args.work_dir is not None and args.ray is None:
        raise InputError("--work-dir is the render farm's shared storage; give it with --ray")
    if Path(args.input).is_dir():
        if args.report is not None:
            raise InputError("--report writes the report of one file; run `vidface report IN OUT REPORT` per file")
        from vidface.commands.folder import run_folder

        return run_folder(args)
    settings = build_settings(args)
    plan = plan_transcode(args.input, args.output, encode=settings.encode, work_dir=args.work_dir, **plan_options(args))
    if args.dry_run:
        print(describe_plan(plan, settings, args.model, measured_fields(plan, settings, args)))
        _list_people(plan, settings, args)
        return 0
    check_photos(settings, args)
    if args.report is not None:
        if args.model == "none":
            raise InputError("--report needs a restoring model: --model none alters no face to report on")
        check_report_path(args.report, args.input, args.output, overwrite=args.overwrite)
    if args.ray is not None:
        [outcome] = on_farm(args, settings, [plan])
        if isinstance(outcome, BaseException):
            raise outcome
        _say_done(outcome, None)
        if args.report is not None:
            report_of_restore(args, outcome, None)
        return 0
    restorer = load_restorer(settings, model=args.model, detector_weights=args.detector_weights)
    measured_fields(plan, settings, args)  # while the model loads
    stats = restorer.stats
    selected = selected_faces(restorer, plan)
    running = restorer.estimate(plan, selected) if args.quiet <= 0 else None
    # With an estimate, the time left is counted from the faces still to come, as the estimate
    # is, instead of from the frame rate so far.
    bar = frames_bar(plan.decodable_count, "restore", bar_format=None if running is None else
                     "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]") if show_progress(args) else None
    said = False

    def say_estimate(found) -> None:
        from tqdm import tqdm

        from vidface.estimate import describe

        nonlocal said
        said = True
        tqdm.write(f"vidface: {describe(found, plan, 'CPU')}", file=sys.stderr)

    def progress(frames: int) -> None:
        if running is not None and not said and (found := running.ready()) is not None:
            say_estimate(found)
        if bar is None:
            return
        bar.update(frames - bar.n)
        if running is not None:
            from vidface.estimate import duration

            left = running.seconds_left()
            bar.set_postfix_str(f"faces={stats.faces}, " + ("estimating" if left is None else f"~{duration(left)} left"),
                                refresh=False)
        elif stats is not None:
            bar.set_postfix(faces=stats.faces, refresh=False)

    try:
        result = restorer.restore(plan, progress=progress if bar is not None or running is not None else None,
                                  restart=args.no_resume, segment_frames=args.segment_frames, selected=selected)
    finally:
        if bar is not None:
            bar.close()
    if running is not None and not said and (found := running.result()) is not None:
        say_estimate(found)
    _say_done(result, stats)
    if args.report is not None:
        report_of_restore(args, result, stats)
    return 0


DRY_RUN_SECONDS = 60.0  # the sample a dry run lists the people of


def selected_faces(restorer, plan):
    """The faces --faces takes in `plan` (None: every face); a warning where it takes none."""
    return _warn_if_nobody(restorer.select(plan), restorer.settings, plan)


def _warn_if_nobody(selected, settings, plan):
    if selected is not None and selected.empty:
        from vidface.faces.selection import FaceSelection

        log.warning("--faces %s matches no face in %s: it is written unchanged, as with --model none",
                    FaceSelection.parse(settings.faces.select), plan.info.path)
    return selected


def _selection_pass(plan, settings, args: argparse.Namespace, seconds: float | None = None):
    """The faces --faces takes in `plan` (its first `seconds`), found here without a restorer
    (a dry run, the farm's driver); None for all."""
    from vidface.faces.selection import ALL, FaceSelection, select_faces

    selection = FaceSelection.parse(settings.faces.select)
    if selection.kind == ALL or args.model == "none":
        return None
    return select_faces(plan, _detector(settings, args), settings.faces, selection, seconds=seconds)


def check_photos(settings, args: argparse.Namespace) -> None:
    """Read the --faces photos before anything else starts (the model's load among them), so a
    bad one is a one-line error at once."""
    from vidface.faces.selection import FaceSelection, reference_descriptors

    photos = FaceSelection.parse(settings.faces.select).photos
    if photos and args.model != "none":
        reference_descriptors(photos, _detector(settings, args))


def _detector(settings, args: argparse.Namespace):
    from pathlib import Path

    from vidface.faces.options import detector_for

    return detector_for(settings.faces, weights=Path(args.detector_weights) if args.detector_weights else None)


def _list_people(plan, settings, args: argparse.Namespace) -> None:
    """--dry-run with --faces: the people of the first DRY_RUN_SECONDS and which are restored."""
    from vidface.faces.selection import FaceSelection

    selected = _selection_pass(plan, settings, args, seconds=DRY_RUN_SECONDS)
    if selected is None:
        return
    print(f"faces   {FaceSelection.parse(settings.faces.select)}; people in the first {DRY_RUN_SECONDS:g} s:")
    for person in selected.people:
        print(f"  person {person.identity}: from {person.first_time:.2f} s, {person.frames} frames: "
              + ("restored" if person.selected else "left as is"))
    if not selected.people:
        print("  none")


def _say_done(result, stats) -> None:
    """The summary lines of a finished file (stats: the restorer's counters, if it ran here)."""
    if result.resumed:
        print(f"{result.output}: resumed, {result.resumed} frames taken from the interrupted run")
    faces = f", {stats.faces} faces restored in {stats.frames_with_faces} frames" if stats else ""
    loading = f"; {stats.model_wait:.1f} s of it waiting for the model to load" if stats else ""
    print(f"{result.output}: {result.frames} frames{faces} in {result.seconds:.1f} s "
          f"({(result.frames - result.resumed) / max(result.seconds, 1e-9):.1f} fps{loading})")


def on_farm(args: argparse.Namespace, settings, plans: list) -> list:
    """Restore `plans` on the render farm (`vidface.farm`) with one progress bar; prints what each
    worker did; returns each plan's TranscodeResult or the error that ended it (its selection
    pass's among them: the other plans go on)."""
    from vidface.api import resume_options
    from vidface.errors import VidfaceError
    from vidface.farm import connect, farm_restore

    connect(args.ray)
    weights = None
    if args.model != "none":
        from vidface.weights import resolve

        weights = resolve(settings.model.weights, settings.model.base, settings.model.weights_repo)
    resume = resume_options(settings, args.model, weights, args.detector_weights, restart=args.no_resume,
                            segment_frames=args.segment_frames, work_dir=args.work_dir)
    outcomes: dict[int, object] = {}
    selected = {}
    for index, plan in enumerate(plans):
        try:
            measured_fields(plan, settings, args)
            selected[index] = _warn_if_nobody(_selection_pass(plan, settings, args), settings, plan)
        except VidfaceError as error:  # a file that cannot be read to the end
            outcomes[index] = error
    if not selected:
        return [outcomes[index] for index in range(len(plans))]
    farmed = list(selected)
    bar = frames_bar(sum(plans[index].decodable_count for index in farmed), "farm") if show_progress(args) else None

    def progress(tally) -> None:
        bar.update(tally.frames - bar.n)
        rate = tally.faces / max(tally.seconds, 1e-9)
        bar.set_postfix_str(f"faces/s {rate:.1f} ({rate / max(len(tally.workers), 1):.1f} per worker)", refresh=False)

    try:
        results, tally = farm_restore([plans[index] for index in farmed], settings, resume, model=args.model,
                                      detector_weights=args.detector_weights, progress=progress if bar else None,
                                      selected=[selected[index] for index in farmed])
    finally:
        if bar is not None:
            bar.close()
    outcomes.update(zip(farmed, results))
    for name, worker in sorted(tally.workers.items()):
        print(f"worker {name}: {worker.segments} segments, {worker.frames} frames, {worker.faces} faces "
              f"in {worker.seconds:.1f} s")
    return [outcomes[index] for index in range(len(plans))]


def measured_fields(plan, settings, args: argparse.Namespace):
    """IN's field motion (`vidface.io.field_motion`) where a model restores it, else None."""
    from vidface.io.field_motion import check_fields
    from vidface.plan import frame_timing

    return None if args.model == "none" else check_fields(plan.info.path, plan.info.video, frame_timing(plan)[0],
                                                          settings.faces.fields)
