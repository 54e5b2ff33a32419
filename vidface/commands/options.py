"""Flags shared by several subcommands, so each is defined (and documented) once."""

from __future__ import annotations

import argparse


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (repeat for debug, also FFmpeg's)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="less log output on stderr (errors only; repeat for none)")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of every command that writes a video: overwrite, progress, preview range, logging."""
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help="replace OUT if it exists (default: refuse and exit 1)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is also off when stderr is not a terminal)")
    parser.add_argument("--start", type=non_negative_float, default=None, metavar="SECONDS",
                        help="first second to process, accurate to the frame (default: 0)")
    parser.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                        help="seconds to process from --start (default: to the end)")
    add_logging_flags(parser)


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value
