"""A fixed sample of tools/fuzz.py: mutated media (every container and codec the tests make;
bit flips, truncation, broken headers, indexes and timestamps) through probe, restore and track
end with exit 0 or one line on stderr, never a traceback, a crash, a hang, a partial output or a
changed input. The tool's own run tries 2,000 cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "fuzz.py"


def test_a_fixed_fuzz_sample_passes(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(TOOL), "--cases", "40", "--seed", "7", "--timeout", "120",
                          "--keep", str(tmp_path / "failed")], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "| 40 | 40 | 0 | 0 | 0 | 0 | 0 | 0 |" in run.stdout, run.stdout
