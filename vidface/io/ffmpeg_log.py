"""FFmpeg's log: whether its lines show on standard error, and the errors it logs during a call.

FFmpeg's lines are printed by FFmpeg's own callback, never PyAV's: PyAV's Python callback takes
the GIL inside FFmpeg's decoder threads and can deadlock when a decoder is closed mid-stream.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable

import av.logging

_shown_from: int | None = None


def show_ffmpeg_log(level: int | None) -> None:
    """Print FFmpeg's lines from `level` up (av.logging's levels) on standard error, or none."""
    global _shown_from
    _shown_from = level
    if level is None:
        av.logging.set_level(None)
    else:
        av.logging.restore_default_callback()
        av.logging.set_libav_level(level)


def logged_errors(call: Callable[[], object]) -> str:
    """The errors FFmpeg logs while `call` runs, on one line, without their "[codec @ 0x...]"
    prefix ("" where FFmpeg's lines show anyway); `call`'s own FFmpeg error is swallowed.

    Why: FFmpeg says why, say, an encoder refuses its settings only in its log. FFmpeg's callback
    writes them, for the call, into a file put in place of standard error."""
    if _shown_from is not None:
        return ""
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 2)
        show_ffmpeg_log(av.logging.ERROR)
        try:
            call()
        except (av.error.FFmpegError, ValueError):
            pass
        finally:
            show_ffmpeg_log(None)
            os.dup2(terminal, 2)
            os.close(terminal)
        aside.seek(0)
        lines = aside.read().decode("utf-8", "replace").splitlines()
    return " ".join(re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] ", "", line).strip() for line in lines if line.strip())
