"""Folder mode: restore every video of IN_DIR into OUT_DIR, mirroring relative paths.

`find_jobs` lists the work (videos by extension, see VIDEO_EXTENSIONS, and image sequences;
other files are skipped with a note), `run_jobs` restores them one after the other with a
caller's function (which holds the one loaded model), skipping outputs that already exist (an
output only appears when complete, so a rerun after an interruption does what is left, and
each video is itself resumable) and going on past a failed file; `summary_table` is the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vidface.errors import InputError, OutputBusy, OutputError, OutputExists, VidfaceError
from vidface.io.sequence import SEQUENCE_EXTENSIONS, sequences_among
from vidface.resume import discard_finished_work

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts",
    ".wmv", ".asf", ".flv", ".3gp", ".3g2", ".ogv", ".mxf", ".dv", ".vob", ".y4m", ".nut",
})
"""Extensions (lower case) taken as videos in folder mode; every other file is skipped."""

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class Job:
    """One video to restore: source file (an image sequence's pattern), output file, and the
    source relative to IN_DIR."""

    source: Path
    output: Path
    name: str


@dataclass(frozen=True)
class FileResult:
    """What became of one file: status done/skipped/failed, frames written (done), seconds spent."""

    name: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    message: str = ""


def find_jobs(in_dir: Path, out_dir: Path, *, recursive: bool = False, extension: str | None = None
              ) -> tuple[list[Job], list[FileResult]]:
    """The videos of in_dir (sorted; with recursive, of its sub-folders too) as jobs writing to
    the same relative path under out_dir, and the results of the files not restored: skipped
    (not a video) or failed (a job whose output another job writes).

    An image sequence (`sequences_among`) is a job writing OUT_DIR's same folder's file named
    after the files' prefix (else their folder). extension: the outputs' extension (".mkv" or
    "mkv"); None keeps each video's, and gives sequences Matroska's (FFV1 keeps their samples).
    Hidden files and folders (vidface's own work files among them) and out_dir itself are left
    out.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise InputError(f"input folder {str(in_dir)!r} is not a folder; give a folder of videos")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {str(out_dir)!r} is a file; give a folder for a folder of videos")
    if out_dir.resolve() == in_dir.resolve() and extension is None:
        raise OutputError(f"output folder {str(out_dir)!r} is the input folder; choose another folder")
    suffix = None if extension is None else "." + extension.lstrip(".")
    outside = out_dir.resolve()
    jobs: list[Job] = []
    skipped: list[FileResult] = []
    images: list[Path] = []
    pattern = in_dir.rglob("*") if recursive else in_dir.iterdir()
    for path in sorted(pattern):
        relative = path.relative_to(in_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if outside in path.resolve().parents:
            continue
        name = relative.as_posix()
        if path.suffix.lower() in SEQUENCE_EXTENSIONS:
            images.append(path)
        elif path.suffix.lower() not in VIDEO_EXTENSIONS:
            skipped.append(FileResult(name, SKIPPED, message="not a video (by its extension)"))
        else:
            output = out_dir / relative
            jobs.append(Job(path, output.with_suffix(suffix) if suffix else output, name))
    sequences, lone_images = sequences_among(images)
    skipped += [FileResult(image.relative_to(in_dir).as_posix(), SKIPPED, message="an image in no numbered sequence")
                for image in lone_images]
    for sequence in sequences:
        relative = sequence.relative_to(in_dir)
        stem = relative.name[:relative.name.index("#")].rstrip("._- ") or in_dir.resolve().joinpath(relative).parent.name
        jobs.append(Job(sequence, out_dir / relative.parent / (stem + (suffix or ".mkv")), relative.as_posix()))
    jobs.sort(key=lambda job: job.name)
    return _one_job_an_output(jobs, skipped)


def _one_job_an_output(jobs: list[Job], results: list[FileResult]) -> tuple[list[Job], list[FileResult]]:
    """`jobs` less those whose output an earlier one writes (videos that differ by extension alone,
    given --ext; a sequence beside a video of its name), which are failed `results`."""
    kept: dict[Path, Job] = {}
    for job in jobs:
        if (first := kept.setdefault(job.output, job)) is not job:
            results.append(FileResult(job.name, FAILED, message=f"its output {str(job.output)!r} is also "
                                                                f"that of {first.name!r}; restore it on its own"))
    return list(kept.values()), results


def already_written(job: Job, *, overwrite: bool, work_dir: Path | None = None) -> FileResult | None:
    """A job's "output exists" result when its OUT is there and not to be overwritten, after
    removing what a run killed after writing OUT left (`discard_finished_work`); None to run it."""
    if overwrite or not job.output.exists():
        return None
    discard_finished_work(job.output, work_dir)
    return FileResult(job.name, SKIPPED, message="output exists")


def run_jobs(jobs: list[Job], restore: Callable[[Job], int], *, overwrite: bool = False,
             on_done: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    """Restore each job with `restore(job) -> frames written`, in order; a job whose output
    exists is skipped (unless overwrite), and so is one that another run is writing (or wrote
    meanwhile: two runs over one folder share its files), a job that fails with a VidfaceError (or any other
    error: a long unattended batch goes on) is recorded as failed. KeyboardInterrupt stops the
    batch. on_done: called with each job's result as it is known."""
    results = []
    for job in jobs:
        started = time.perf_counter()
        if skipped := already_written(job, overwrite=overwrite):
            result = skipped
        else:
            try:
                job.output.parent.mkdir(parents=True, exist_ok=True)
                with messages_named(job.name):
                    frames = restore(job)
                result = FileResult(job.name, DONE, frames, time.perf_counter() - started)
            except OutputExists:
                result = FileResult(job.name, SKIPPED, message="output exists")
            except OutputBusy:
                result = FileResult(job.name, SKIPPED, message="another run is writing it")
            except VidfaceError as error:
                result = FileResult(job.name, FAILED, seconds=time.perf_counter() - started, message=str(error))
            except OSError as error:
                result = FileResult(job.name, FAILED, seconds=time.perf_counter() - started,
                                    message=f"{error.strerror or error}: {error.filename or job.output}")
            except Exception as error:  # a bug on one file must not end a long batch; the log keeps the trace
                log.debug("%s failed", job.name, exc_info=True)
                result = FileResult(job.name, FAILED, seconds=time.perf_counter() - started,
                                    message=f"internal error: {type(error).__name__}: {error}")
        if result.status == FAILED:
            log.error("%s: %s", job.name, result.message)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results


@contextmanager
def messages_named(name: str) -> Iterator[None]:
    """While the block runs, every message of vidface's starts with `name`: a folder's warnings
    name the file they are about, from each thread of its run (decoding, faces, model)."""
    make = logging.getLogRecordFactory()
    prefix = name.replace("%", "%%")  # messages are %-formats

    def named(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name.startswith("vidface"):
            record.msg = f"{prefix}: {record.msg}"
        return record

    logging.setLogRecordFactory(named)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make)


def summary_table(results: list[FileResult]) -> str:
    """A plain-text table (file, status, frames, seconds, message) and a totals line."""
    header = ("file", "status", "frames", "seconds", "message")
    rows = [(_one_line(r.name), r.status, str(r.frames) if r.status == DONE else "",
             f"{r.seconds:.1f}" if r.status != SKIPPED else "", r.message) for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                 row[3].rjust(widths[3]), row[4]]
        return "  ".join(cells).rstrip()

    counts = {status: sum(r.status == status for r in results) for status in (DONE, SKIPPED, FAILED)}
    total = f"{len(results)} files: {counts[DONE]} done, {counts[SKIPPED]} skipped, {counts[FAILED]} failed"
    return "\n".join([line(header), *(line(row) for row in rows), total])


def _one_line(name: str) -> str:
    """A file name for one row of the table: control characters (a newline in a name) escaped,
    bytes that are not UTF-8 shown as �."""
    shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in shown)
