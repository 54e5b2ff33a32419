"""Folder mode: every video of a folder (and sub-folders) restored, the rest skipped, failures
reported without stopping the batch, finished outputs skipped on a rerun."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from media import moving_pattern, read_video, stored_samples, write_image_sequence, write_video
from vidface.batch import FileResult, find_jobs, summary_table
from vidface.resume import work_folder


def _folder(root: Path) -> Path:
    source = root / "in"
    (source / "day2" / "deep").mkdir(parents=True)
    write_video(source / "a.mp4", frames=10, audio="aac")
    write_video(source / "b.mkv", frames=12)
    write_video(source / "day2" / "c.mov", frames=8)
    write_video(source / "day2" / "deep" / "d.mp4", frames=6)
    good = (source / "a.mp4").read_bytes()
    (source / "broken.mp4").write_bytes(good[: len(good) // 3])  # truncated: fails
    (source / "notes.txt").write_text("not a video\n")
    (source / ".hidden.mp4").write_bytes(good)  # hidden files are left alone
    return source


def _rows(out: str) -> dict[str, list[str]]:
    """Summary table rows by file name: [status, frames?, seconds?, message...] split on spaces."""
    lines = out.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["file", "status"])
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1:-1]}


def test_folder_mode_recursive(tmp_path: Path, cli, caplog) -> None:
    source, target = _folder(tmp_path), tmp_path / "out"
    code, out, err = cli("restore", "--model", "none", source, target, "--recursive", "--no-progress")
    assert code == 1, err  # broken.mp4 failed
    rows = _rows(out)
    assert rows["a.mp4"][:2] == ["done", "10"] and rows["b.mkv"][:2] == ["done", "12"]
    assert rows["day2/c.mov"][:2] == ["done", "8"] and rows["day2/deep/d.mp4"][:2] == ["done", "6"]
    assert rows["broken.mp4"][0] == "failed" and "truncated" in " ".join(rows["broken.mp4"])
    assert rows["notes.txt"][0] == "skipped" and "not a video" in " ".join(rows["notes.txt"])
    assert ".hidden.mp4" not in rows
    assert out.strip().splitlines()[-1] == "6 files: 4 done, 1 skipped, 1 failed"
    assert any("broken.mp4" in r.message for r in caplog.records if r.levelname == "ERROR")  # and logged
    made = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
    assert made == ["a.mp4", "b.mkv", "day2", "day2/c.mov", "day2/deep", "day2/deep/d.mp4"]  # no work files left
    assert read_video(target / "a.mp4").frame_pts == read_video(source / "a.mp4").frame_pts
    assert read_video(target / "a.mp4").packets == read_video(source / "a.mp4").packets

    # a rerun skips every finished output and tries the failed file again
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*.*")}
    code, out, _ = cli("restore", "--model", "none", source, target, "--recursive")
    assert code == 1
    rows = _rows(out)
    assert all(rows[name][:3] == ["skipped", "output", "exists"]
               for name in ("a.mp4", "b.mkv", "day2/c.mov", "day2/deep/d.mp4"))
    assert rows["broken.mp4"][0] == "failed"
    assert before == {p: p.stat().st_mtime_ns for p in target.rglob("*.*")}


def test_folder_mode_top_level_only_with_ext(tmp_path: Path, cli) -> None:
    source, target = _folder(tmp_path), tmp_path / "out"
    (source / "broken.mp4").unlink()
    code, out, err = cli("restore", "--model", "none", source, target, "--ext", "mkv")
    assert code == 0, err
    assert sorted(p.name for p in target.iterdir()) == ["a.mkv", "b.mkv"]
    assert read_video(target / "a.mkv").stream_types == ["video", "audio"]
    assert "day2" not in out


def test_folder_mode_restores_the_image_sequences_it_finds(tmp_path: Path, cli) -> None:
    """Numbered scan, plate and render files of one folder are one job each, restored from their
    pattern into Matroska (FFV1: sample for sample) named after their prefix, else their folder;
    a lone numbered image and a JPEG are skipped, a sequence with a gap fails as a restore of its
    pattern does, and a rerun skips them all."""
    source, target = tmp_path / "scans", tmp_path / "out"
    for folder in ("reel1", "reel2", "photos"):
        (source / folder).mkdir(parents=True)
    pictures = [moving_pattern(32, 24)(i) for i in range(4)]
    write_image_sequence(source / "reel1", "scan.%07d.dpx", pictures, codec="dpx", pix_fmt="gbrp10le", first=86400)
    write_image_sequence(source / "reel2", "%04d.tif", pictures, codec="tiff", pix_fmt="rgb24", first=1)
    write_image_sequence(source / "reel2", "%04d.png", pictures[:1], codec="png", pix_fmt="rgb24", first=1)
    gapped = write_image_sequence(source, "plate_%03d.png", pictures, codec="png", pix_fmt="rgb24", first=7)
    gapped[2].unlink()
    write_image_sequence(source / "photos", "IMG_%04d.jpg", pictures[:2], codec="mjpeg", pix_fmt="yuvj444p", first=1)
    code, out, err = cli("restore", "--model", "none", source, target, "--recursive", "--no-progress")
    assert code == 1, err  # the plate with a gap
    rows = _rows(out)
    assert rows["reel1/scan.#######.dpx"][:2] == ["done", "4"] and rows["reel2/####.tif"][:2] == ["done", "4"]
    assert rows["reel2/0001.png"][0] == "skipped" and "an image in no numbered sequence" in " ".join(rows["reel2/0001.png"])
    assert rows["plate_###.png"][0] == "failed" and "misses 1 of its frames, the first 'plate_009.png'" in out
    assert all(rows[f"photos/IMG_000{n}.jpg"][0] == "skipped" for n in (1, 2))
    assert stored_samples(target / "reel1" / "scan.mkv") == stored_samples(source / "reel1" / "scan.%07d.dpx")
    assert np.array_equal(read_video(target / "reel2" / "reel2.mkv", images=True).images, pictures)
    assert not (target / "plate.mkv").exists()
    code, out, _ = cli("restore", "--model", "none", source, target, "--recursive", "--no-progress")
    assert _rows(out)["reel1/scan.#######.dpx"][:3] == ["skipped", "output", "exists"]


def test_jobs_that_would_write_one_output_fail_but_the_first(tmp_path: Path) -> None:
    """Two videos that differ by extension alone, given one output extension, and a sequence
    beside a video of its name, would write one OUT: the later one by name fails with a note
    saying whose output it is, and is not run."""
    jobs, results = find_jobs_of(tmp_path, ["take.mov", "take.mp4", "shot.mkv", "shot_0001.dpx", "shot_0002.dpx"],
                                 extension="mkv")
    assert [job.name for job in jobs] == ["shot.mkv", "take.mov"]
    assert {(r.name, r.status) for r in results} == {("take.mp4", "failed"), ("shot_####.dpx", "failed")}
    assert all(f"is also that of '{first}'; restore it on its own" in r.message
               for r, first in zip(sorted(results, key=lambda r: r.name), ["shot.mkv", "take.mov"]))


def test_a_folders_warnings_name_their_file(tmp_path: Path, cli, caplog) -> None:
    """Each warning of a file's run starts with the file's name (a '%' in it kept as it is);
    messages outside a job are left as they are."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a 100%.mkv", "b.mkv"):
        write_video(folder / name, frames=4, size=(32, 24))
    code, _, err = cli("restore", "--model", "none", folder, tmp_path / "out", "--fps", "25", "--no-progress")
    assert code == 0, err
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert [message.split(": --fps sets an image sequence's rate")[0] for message in warnings] == ["a 100%.mkv",
                                                                                                  "b.mkv"], warnings
    logging.getLogger("vidface.batch").warning("after the batch")
    assert caplog.records[-1].getMessage() == "after the batch"


def test_folder_mode_errors_are_one_line(tmp_path: Path, cli) -> None:
    source = _folder(tmp_path)
    (tmp_path / "file.mp4").write_bytes(b"x")
    code, _, err = cli("restore", "--model", "none", source, tmp_path / "file.mp4")
    assert code == 1 and err.startswith("vidface: error: ") and "is a file" in err
    code, _, err = cli("restore", "--model", "none", source, source)
    assert code == 1 and "is the input folder" in err


def test_find_jobs_leaves_out_its_own_output_folder(tmp_path: Path) -> None:
    source = _folder(tmp_path)
    target = source / "restored"
    target.mkdir()
    write_video(target / "a.mp4", frames=4)
    work_folder(target / "b.mkv").mkdir()
    jobs, skipped = find_jobs(source, target, recursive=True)
    assert [job.name for job in jobs] == ["a.mp4", "b.mkv", "broken.mp4", "day2/c.mov", "day2/deep/d.mp4"]
    assert [job.output for job in jobs][:2] == [target / "a.mp4", target / "b.mkv"]
    assert [r.name for r in skipped] == ["notes.txt"]


def test_summary_table_columns() -> None:
    table = summary_table([FileResult("long/name.mp4", "done", 120, 3.25), FileResult("x.mkv", "failed", 0, 0.5,
                                                                                     "input is truncated")])
    lines = table.splitlines()
    assert lines[0].split() == ["file", "status", "frames", "seconds", "message"]
    assert lines[1].split() == ["long/name.mp4", "done", "120", "3.2"]
    assert lines[2].split()[:3] == ["x.mkv", "failed", "0.5"] and lines[2].endswith("input is truncated")
    assert lines[3] == "2 files: 1 done, 0 skipped, 1 failed"


def test_folder_mode_loads_the_restorer_once(tmp_path: Path, monkeypatch, cli) -> None:
    """The restorer is built once and called for every video (each call starts afresh)."""
    import vidface.api
    from vidface.pipeline import identity

    loads, calls = [], []

    def counting(settings, **options):
        loads.append(options["model"])

        def processor(frames):
            calls.append(1)
            return identity(frames)

        return vidface.api.Restorer(settings, "none", processor)  # "none": no weights to identify

    monkeypatch.setattr(vidface.api, "load_restorer", counting)
    source = _folder(tmp_path)
    (source / "broken.mp4").unlink()
    code, out, err = cli("restore", source, tmp_path / "out", "--recursive")
    assert code == 0, err
    assert loads == ["osdface"]
    assert len(calls) == 4  # one segment per video


def test_hostile_folders_are_walked_once_and_named_plainly(tmp_path: Path, cli) -> None:
    """A symlink loop and a link up the tree are not followed; names with a newline, quotes or
    bytes that are not UTF-8 are restored under the same names; OUT_DIR inside IN_DIR is left
    out; the summary table keeps one row per file."""
    import os

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    data = write_video(folder / "plain.mp4", frames=4).read_bytes()
    names = [b"new\nline.mp4", b"quote's \"x\".mp4", b"bad\xff name.mp4", b"sub/deep.mp4"]
    for name in names:
        (Path(os.fsdecode(os.fsencode(folder) + b"/" + name))).write_bytes(data)
    os.symlink(".", folder / "sub" / "loop")
    os.symlink("..", folder / "sub" / "up")
    code, out, err = cli("restore", folder, folder / "out", "--recursive", "--model", "none", "--no-progress")
    assert code == 0, err
    written = sorted(os.fsencode(path.relative_to(folder / "out")) for path in (folder / "out").rglob("*.mp4"))
    assert written == sorted([b"plain.mp4", *names])
    lines = out.strip().splitlines()
    assert lines[-1] == "5 files: 5 done, 0 skipped, 0 failed" and len(lines) == 7  # header, 5 rows, totals
    assert any(line.startswith("new\\nline.mp4") for line in lines) and any("bad\ufffd name.mp4" in line for line in lines)


def test_a_file_another_run_holds_or_finished_is_skipped(tmp_path: Path) -> None:
    """Two runs over one folder share it: a file whose OUT another run is writing, or wrote since
    this run looked, is skipped with a note, not failed, and the batch goes on."""
    from vidface.batch import SKIPPED, run_jobs
    from vidface.errors import OutputBusy, OutputExists

    jobs, _ = find_jobs_of(tmp_path, ["busy.mp4", "finished.mp4", "free.mp4"])
    errors = {"busy.mp4": OutputBusy("held"), "finished.mp4": OutputExists("written meanwhile")}

    def restore(job) -> int:
        if job.name in errors:
            raise errors[job.name]
        return 7

    results = {result.name: result for result in run_jobs(jobs, restore)}
    assert (results["busy.mp4"].status, results["busy.mp4"].message) == (SKIPPED, "another run is writing it")
    assert (results["finished.mp4"].status, results["finished.mp4"].message) == (SKIPPED, "output exists")
    assert (results["free.mp4"].status, results["free.mp4"].frames) == ("done", 7)


def find_jobs_of(folder: Path, names: list[str], extension: str | None = None):
    videos = folder / "videos"
    videos.mkdir()
    for name in names:
        (videos / name).write_bytes(b"")
    return find_jobs(videos, folder / "restored", extension=extension)
