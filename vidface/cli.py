"""The `vidface` command: a thin layer over the Python API.

Each subcommand lives in `vidface/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Those modules import nothing heavy at import time, so `--help` and
`--version` answer without loading torch.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys

from vidface import __version__
from vidface.errors import VidfaceError

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

COMMANDS = ("restore", "compare", "report", "probe", "env", "track", "faces", "weights")

log = logging.getLogger("vidface")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidface",
        description="Restore every face in a video with OSDFace, keeping every stream, timestamp and tag.",
    )
    parser.add_argument("--version", action="version", version=f"vidface {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"vidface.commands.{name}").add_parser(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    """Map -v/-q to Python logging and to FFmpeg's and diffusers' log levels.

    verbosity: 0 is the default (warnings), +1 per -v, -1 per -q.
    """
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )
    if verbosity <= -2:
        level = logging.CRITICAL
    logging.basicConfig(level=level, format="vidface: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("vidface").setLevel(level)
    import av.logging

    from vidface.io.ffmpeg_log import show_ffmpeg_log

    # FFmpeg's lines repeat what vidface reports itself, so they show from -v on.
    show_ffmpeg_log(None if verbosity <= 0 else av.logging.WARNING if verbosity == 1 else av.logging.DEBUG)
    # SVT-AV1 prints its banner and settings for every encoder it opens, past FFmpeg's log, unless
    # its own level (1: errors) says otherwise; read when an encoder opens, a value set wins.
    os.environ.setdefault("SVT_LOG", "1" if verbosity <= 0 else "3" if verbosity == 1 else "4")
    for name in ("diffusers", "transformers", "huggingface_hub", "peft"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING) if verbosity < 2 else level)


def configure_threads() -> None:
    """Let idle OpenMP threads (torch's intra-op pool on a CPU) sleep instead of spinning.

    The stages run side by side on threads (decoding, detection on onnxruntime, the model,
    encoding); spinning workers take the cores from the others. Worse, when torch's first
    parallel work runs on a thread other than the main one (the model loads in the background),
    its spinning pool made the model several times slower on a 2-core machine. Read by OpenMP when torch
    is first imported, so set before any command runs; a value in the environment wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    configure_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    command = importlib.import_module(f"vidface.commands.{args.command}")
    try:
        return command.run(args)
    except VidfaceError as error:
        print(f"vidface: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as interrupt:
        print("vidface: interrupted" + (f"; {interrupt}" if str(interrupt) else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE


def program() -> None:
    """The `vidface` program (the console script and `python -m vidface`): `main`, then exit.

    Before the interpreter exits, the objects that the imports made (about 180,000 for torch
    alone) are frozen out of the cyclic garbage collector. Tearing the modules down, the
    interpreter would otherwise run full collections over all of them, which took a noticeable
    part of a short run (tools/bench_startup.py). Nothing is left undone: the standard streams,
    logging and atexit handlers are flushed and run as usual, every output was closed before
    `main` returned, and the memory goes back to the system with the process. `main` itself
    stays free of it, for callers that live on (tests, the render farm's workers).
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    program()
