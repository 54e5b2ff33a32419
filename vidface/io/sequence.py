"""Image sequences as IN: a film scan's DPX files, a VFX plate's TIFF, PNG or EXR files, one
picture a file, named by a pattern with the frame number's place, `scan.%06d.dpx` as FFmpeg
writes it or `scan.######.dpx` as compositing tools do. FFmpeg's image2 demuxer reads the files
as one video from the first number on, and stops at the first number missing: a sequence with
a gap is refused, since the frames after it would be lost without a word."""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vidface.errors import InputError

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"%(0\d+)?d|#+")
"""The frame number's place in a pattern: printf's %d or %0Nd, or N hashes."""

DEFAULT_RATE = Fraction(24)
"""The rate a sequence whose files carry none is read at: film's."""

SEQUENCE_EXTENSIONS = frozenset({".dpx", ".cin", ".exr", ".tif", ".tiff", ".png", ".sgi", ".rgb", ".tga", ".bmp"})
"""Extensions (lower case) of the files folder mode gathers into image sequences: scans', plates'
and renders' formats; JPEG is left out, whose numbered files are most often a camera's photos."""

_NUMBERED = re.compile(r"(.*?)(\d+)(\.[^.]+)")
"""A numbered file's name: a prefix, the frame number, the extension."""

_NTSC_RATES = tuple(Fraction(rate * 1000, 1001) for rate in (24, 30, 48, 60, 120))
"""The 1000/1001 rates, which a DPX header can only approximate (a 32-bit float)."""


@dataclass(frozen=True)
class ImageSequence:
    """The files of a sequence: `prefix`, the frame number zero-padded to `digits` places, then
    `suffix`, in `folder`; `numbers` those of its files, in order and without gaps."""

    folder: Path
    prefix: str
    digits: int
    suffix: str
    numbers: range

    @property
    def pattern(self) -> Path:
        """The sequence's path in FFmpeg's printf form (a '%' of the folder's or the files' names doubled)."""
        number = f"%0{self.digits}d" if self.digits else "%d"
        return Path(str(self.folder).replace("%", "%%")) / (
            self.prefix.replace("%", "%%") + number + self.suffix.replace("%", "%%"))

    @property
    def files(self) -> list[Path]:
        return [self.file(number) for number in self.numbers]

    def file(self, number: int) -> Path:
        return self.folder / f"{self.prefix}{number:0{self.digits}d}{self.suffix}"

    def demuxer_options(self, rate: Fraction) -> dict[str, str]:
        """image2's options that read the sequence at `rate` frames a second from its first file."""
        return {"framerate": f"{rate.numerator}/{rate.denominator}", "start_number": str(self.numbers.start),
                "pattern_type": "sequence"}


def image_sequence(path: str | os.PathLike[str]) -> ImageSequence | None:
    """The sequence `path` names (a file name with %d, %0Nd or #### in it, that is no file's),
    None where it names one file. InputError where no file matches, or where numbers are
    missing between the first file and the last."""
    path = Path(path)
    places = list(_NUMBER.finditer(path.name))
    if not places or path.is_file():  # a video named "take #2.mov" is that file
        return None
    if len(places) > 1:
        raise InputError(f"input {str(path)!r} has {len(places)} frame-number places; an image sequence's "
                         "file name has one (%06d or ######)")
    place = places[0]
    digits = len(place.group()) if place.group().startswith("#") else int(place.group(1) or 0)
    prefix, suffix = path.name[:place.start()], path.name[place.end():]
    folder = path.parent
    try:
        numbers = _numbers(folder, folder.stat().st_mtime_ns, prefix, digits, suffix)
    except OSError as error:
        raise InputError(f"input {str(path)!r}: its folder cannot be read ({error.strerror}); check the path") from None
    if not numbers:
        raise InputError(f"input {str(path)!r} names an image sequence, and no file there matches it; check the path")
    sequence = ImageSequence(folder, prefix, digits, suffix, range(numbers[0], numbers[-1] + 1))
    if len(numbers) < len(sequence.numbers):  # distinct numbers, sorted: fewer than the range holds is a gap
        first_missing = next(number for number, found in zip(sequence.numbers, numbers) if number != found)
        raise InputError(f"input {str(path)!r} misses {len(sequence.numbers) - len(numbers)} of its frames, the "
                         f"first {sequence.file(first_missing).name!r}; restore each unbroken run of files apart")
    return sequence


@functools.lru_cache(maxsize=4)
def _numbers(folder: Path, modified_ns: int, prefix: str, digits: int, suffix: str) -> tuple[int, ...]:
    """The numbers of the files in `folder` (as it was when last modified: a long scan's folder is
    listed once, not at each of the run's opens) named `prefix`, the number, `suffix`, sorted."""
    named = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    return tuple(sorted(int(match.group(1)) for match in map(named.fullmatch, os.listdir(folder))
                        if match and _padded(match.group(1), digits)))


def sequences_among(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """The image sequences `files` hold, as patterns with the number's place as hashes (two files
    or more of one folder named alike, their number as wide as the narrowest one's), and the
    files that are in none."""
    groups: dict[tuple[Path, str, str], list[str]] = {}
    alone: list[Path] = []
    for file in files:
        match = _NUMBERED.fullmatch(file.name)
        if match is None:
            alone.append(file)
        else:
            groups.setdefault((file.parent, match.group(1), match.group(3)), []).append(match.group(2))
    patterns = []
    for (folder, prefix, suffix), numbers in groups.items():
        digits = min(map(len, numbers))
        members = {number for number in numbers if _padded(number, digits)}
        if len(members) > 1:
            patterns.append(folder / f"{prefix}{'#' * digits}{suffix}")
        else:
            members = set()
        alone += [folder / f"{prefix}{number}{suffix}" for number in numbers if number not in members]
    return sorted(patterns), sorted(alone)


def input_files(path: Path) -> list[Path]:
    """The files IN is read from: an image sequence's, in order, else `path` alone."""
    sequence = image_sequence(path)
    return [path] if sequence is None else sequence.files


def _padded(number: str, digits: int) -> bool:
    """Whether `number` is written as a pattern of `digits` places writes it (zero-padded to
    that width; wider only without a leading zero)."""
    return len(number) == max(digits, 1) or (len(number) > digits and not number.startswith("0"))


def standard_rate(rate: Fraction) -> Fraction:
    """`rate`, or the 1000/1001 rate it rounds (23.976 is 24000/1001)."""
    return next((ntsc for ntsc in _NTSC_RATES if abs(ntsc - rate) < Fraction(1, 1000)), rate)


def sequence_rate(sequence: ImageSequence, rate: Fraction | None) -> Fraction:
    """The rate the sequence is read at: `rate` where given, else its first file's own (a DPX
    header's), else DEFAULT_RATE, with a warning."""
    if rate:
        return rate
    import av

    try:
        with av.open(str(sequence.files[0])) as container:
            stream = container.streams.video[0]
            next(container.decode(stream), None)
            own = stream.codec_context.framerate
    except (av.error.FFmpegError, IndexError):
        own = None
    if own:
        return standard_rate(Fraction(own))
    log.warning("IN's images carry no frame rate: they are read at %s fps (restore's --fps sets another)",
                DEFAULT_RATE)
    return DEFAULT_RATE
