"""Write a benchmark's figures into docs/benchmarks.md: one section per benchmark, replaced
whenever it runs again, with the date and the command that made the figures."""

from __future__ import annotations

import datetime
import re
import shlex
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEvery figure the README and docs quote comes from a section below; each section is\n"
          "written by the script named in it, with the date and the exact command.\n")


def record(title: str, lines: list[str], doc: Path = DOC) -> None:
    """Put `lines` (Markdown) under `## title` in `doc`, dated and with this process's command."""
    command = shlex.join(["python", *_repository_relative(sys.argv)])
    section = (f"## {title}\n\n_{datetime.date.today().isoformat()}, `{command}`_\n\n"
               + "\n".join(lines).rstrip() + "\n")
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.rstrip() + "\n")


class Section:
    """A benchmark's report: each line printed as it comes (`section(line)`), and all of them
    written into docs/benchmarks.md under `title` when the `with` block ends normally."""

    def __init__(self, title: str, note: str = "") -> None:
        self.title = title
        self.note = note
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def __enter__(self) -> Section:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            record(self.title, ["```", *self.lines, "```"] + ([self.note] if self.note else []))


def _repository_relative(argv: list[str]) -> list[str]:
    script = Path(argv[0]).resolve()
    try:
        return [str(script.relative_to(DOC.parents[1])), *argv[1:]]
    except ValueError:
        return argv
