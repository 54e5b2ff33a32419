"""Flags shared by several subcommands, so each is defined (and documented) once."""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidface.plan import TimeRange


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (repeat for debug, also FFmpeg's)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="less log output on stderr (errors only; repeat for none)")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is also off when stderr is not a terminal)")


def show_progress(args: argparse.Namespace) -> bool:
    """A progress bar on stderr unless --no-progress, or stderr is not a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def add_pair_arguments(parser: argparse.ArgumentParser, output: str, output_help: str) -> None:
    """The positional arguments of a command that reads a video and its restoration: IN OUT `output`."""
    parser.add_argument("input", metavar="IN", help="the original video, or its image sequence's pattern")
    parser.add_argument("restored", metavar="OUT", help="its restoration (e.g. from vidface restore)")
    parser.add_argument("output", metavar=output, help=output_help)


def add_output_flags(parser: argparse.ArgumentParser, *, output: str = "OUT", range_of: str | None = None) -> None:
    """Flags of every command that writes a file from a video: overwrite `output`, progress,
    preview range, logging. range_of: the video the range selects, for commands that read two
    (the other one is read from its start)."""
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help=f"replace {output} if it exists (default: refuse and exit 1)")
    add_progress_flag(parser)
    of, other = (f" of {range_of}", "; the other video is read from its start") if range_of else ("", "")
    parser.add_argument("--start", type=start_time, default=None, metavar="TIME",
                        help=f"where to start{of}, accurate to the frame: seconds, [HH:]MM:SS.mmm, or a "
                             f"timecode HH:MM:SS:FF of the video's own (';' before FF: drop-frame) "
                             f"(default: the first frame){other}")
    parser.add_argument("--duration", type=duration_time, default=None, metavar="TIME",
                        help=f"how much{of} to process from --start: seconds, [HH:]MM:SS.mmm, or "
                             "HH:MM:SS:FF frames (default: to the end)")
    if range_of is None:  # a command reading two videos reads an image sequence at the other's rate
        parser.add_argument("--fps", type=frame_rate, default=None, metavar="RATE",
                            help="the frame rate an image sequence IN (shot.%%06d.dpx, shot.######.dpx) is "
                                 "read at: 24, 25, 23.976 or 24000/1001 (default: its files' own, as a DPX "
                                 "header gives it, else 24); a video keeps its own")
    add_logging_flags(parser)


def time_range(args: argparse.Namespace) -> TimeRange:
    """The range of IN the flags of `add_output_flags` choose, and the rate an image sequence is read at."""
    from vidface.plan import TimeRange

    return TimeRange(start=args.start or 0.0, duration=args.duration, frame_rate=getattr(args, "fps", None))


def frame_rate(text: str) -> Fraction:
    """--fps: frames a second, as a number or a fraction; 23.976, 29.97 and 59.94 are read as
    the 1000/1001 rates they round."""
    from vidface.io.sequence import standard_rate

    try:
        rate = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"must be frames a second (24, 23.976, 24000/1001), got {text}") from None
    if rate <= 0 or rate > 1000:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1000, got {text}")
    return standard_rate(rate)


def _parsed(text: str, kind: type, expected: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}") from None


def start_time(text: str) -> float | str:
    """--start: seconds (a number or [HH:]MM:SS.mmm), or a timecode, kept as text until the
    video's own timecode says which frame it names (`timecode.range_seconds`)."""
    return _time(text, allow_zero=True)


def duration_time(text: str) -> float | str:
    """--duration: seconds (a number or [HH:]MM:SS.mmm), or a timecode-style count of frames."""
    return _time(text, allow_zero=False)


def _time(text: str, allow_zero: bool) -> float | str:
    from vidface.io.timecode import TIMECODE

    timecode = TIMECODE.match(text.strip())
    if timecode and timecode.group(4) != ".":  # HH:MM:SS.mmm is a clock time
        return text.strip()
    parts = text.strip().split(":")
    unreadable = argparse.ArgumentTypeError(f"must be seconds, [HH:]MM:SS.mmm or HH:MM:SS:FF, got {text}")
    if len(parts) > 3:
        raise unreadable
    try:
        *clock, seconds = [float(part) for part in parts]
    except ValueError:
        raise unreadable from None
    value = seconds + sum(unit * 60 ** (len(clock) - place) for place, unit in enumerate(clock))
    if not (value >= 0 if allow_zero else value > 0) or any(unit < 0 for unit in clock):
        raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'}, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _parsed(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_option_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                     only: tuple[str, ...] | None = None, leave_out: tuple[str, ...] = ()) -> None:
    """A flag for every field of the options dataclass `cls` that has one (`vidface.fields.option`;
    with `only`, those fields alone; never those in `leave_out`). Each flag stores under "section.field" and defaults to
    None (not given), so a preset or a config file can set what a flag leaves out; its value is
    parsed and checked by the field's own rule, and its help ends with the built-in default and
    the presets' values. Read them back with `option_overrides`."""
    import typing

    from vidface.fields import option_fields

    hints = typing.get_type_hints(cls)
    for field in option_fields(cls):
        flag = field.metadata["flag"]
        if flag is None or (only is not None and field.name not in only) or field.name in leave_out:
            continue
        dest = f"{cls.section}.{field.name}"
        help_text = field.metadata["help"] + _defaults_note(cls, field)
        if hints[field.name] is bool:
            parser.add_argument(flag, dest=dest, action="store_const", const=not flag.startswith("--no-"),
                                default=None, help=help_text.replace("%", "%%"))
            continue
        rule = field.metadata["rule"]
        choices = getattr(rule, "values", None)
        metavar = None if choices else field.metadata["metavar"] or field.name.upper()
        parser.add_argument(flag, dest=dest, default=None, metavar=metavar, choices=choices,
                            type=_flag_parser(field, _value_type(hints[field.name]), None if choices else rule),
                            help=help_text.replace("%", "%%"))


def option_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The option flags given (see `add_option_flags`) as settings overrides ({"faces.lag": 4})."""
    return {key: value for key, value in vars(args).items() if "." in key and value is not None}


def options_from_flags(args: argparse.Namespace, cls: type):
    """An options dataclass from the built-in defaults and the flags of its section given."""
    import dataclasses

    prefix = f"{cls.section}."
    given = {key.removeprefix(prefix): value for key, value in option_overrides(args).items() if key.startswith(prefix)}
    return dataclasses.replace(cls(), **given)


def _value_type(annotation) -> type:
    """The type a flag's text converts to: the annotation, without None."""
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


_TYPE_WORDS = {int: "an integer", float: "a number"}


def _flag_parser(field, kind: type, rule):
    parse = field.metadata["parse"] or kind

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            wanted = field.metadata["metavar"] if field.metadata["parse"] else _TYPE_WORDS.get(kind, "a value")
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}") from None
        if rule is not None and not rule.holds(value):
            raise argparse.ArgumentTypeError(f"must be {rule.wanted}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its own messages
    return convert


def _defaults_note(cls: type, field) -> str:
    """' (default: X; archival: Y, fast: Z)': the built-in default and where a preset differs."""
    from vidface.config import PRESETS, read_preset

    default = field.default
    shown = [] if default is None or default == () else [f"default: {_show(default)}"]
    others = []
    for preset in PRESETS[1:]:
        section = read_preset(preset).get(cls.section) or {}
        if field.name in section and section[field.name] != default:
            others.append(f"{preset}: {_show(section[field.name])}")
    parts = shown + ([", ".join(others)] if others else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _show(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)
