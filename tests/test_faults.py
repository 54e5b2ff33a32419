"""A sample of tools/fuzz.py's sibling, tools/faults.py: real restore runs (tiny model) killed
while their work folder is half deleted, before it is removed, and during the final mux; a disk
that fills during a segment (which was a traceback) and during the mux; a folder-mode file that grows and one that vanishes mid-run; two runs
on one OUT. Each ends with exit 0 or one line, and OUT and its sidecar come out byte for byte
those of an uninterrupted run, with nothing else left. The tool's own run covers 20 kills and
every kind of fault."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "faults.py"
SAMPLE = ("kill: cleanup half done", "kill: OUT before cleanup", "kill: final mux", "disk full: during a segment",
          "disk full: during the mux", "folder mode: files grow and vanish", "two runs on one output")


def test_a_sample_of_faults_loses_nothing() -> None:
    run = subprocess.run([sys.executable, str(TOOL), "--kills", "7", "--only", ",".join(SAMPLE)],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"| {len(SAMPLE)} | {len(SAMPLE)} | 0 | 0 | 0 | 0 | 0 | 0 | 0 |" in run.stdout, run.stdout
