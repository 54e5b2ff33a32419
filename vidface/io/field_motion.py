"""Whether IN's two fields are two moments: FFmpeg's idet filter over IN's first frames.

A camera's or a tape's interlaced video shows a moving edge combed, its two fields half a frame's
time apart; a film transfer or a progressive segmented frame (PsF) stored as interlaced shows
one moment in both fields, and a file flagged progressive may hold a camera's fields. The flag
says how IN is coded, the measure what it shows: whether faces are best restored field by field
(--fields) or in whole frames.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass

import av

from vidface.io.probe import VideoInfo

log = logging.getLogger(__name__)

FRAMES_MEASURED = 100
"""Frames idet looks at: a few seconds, enough for its multi-frame verdict on moving pictures."""


@dataclass(frozen=True)
class FieldMotion:
    """idet's multi-frame verdicts on `measured` frames: combed with the top field first or the
    bottom field first (two moments), progressive (one moment); the rest it could not tell (a
    still picture shows no motion to tell by)."""

    top_first: int
    bottom_first: int
    progressive: int
    measured: int

    @property
    def two_moments(self) -> int:
        return self.top_first + self.bottom_first

    @property
    def interlaced(self) -> bool:
        """Whether most frames idet could tell show two moments."""
        return self.two_moments > self.progressive

    @property
    def one_moment(self) -> bool:
        """Whether most frames idet could tell show one moment."""
        return self.progressive > self.two_moments

    def describe(self) -> str:
        if self.interlaced:
            order = "top" if self.top_first >= self.bottom_first else "bottom"
            return (f"two moments ({order} field first) in {self.two_moments} of {self.measured} frames measured "
                    "by FFmpeg's idet")
        if self.one_moment:
            return f"one moment in {self.progressive} of {self.measured} frames measured by FFmpeg's idet"
        return f"no motion idet can tell by in {self.measured} frames measured"


def field_motion(path: str | os.PathLike[str], video: VideoInfo, start_pts: int | None = None,
                 frames: int = FRAMES_MEASURED) -> FieldMotion | None:
    """idet's verdicts on `frames` frames of IN from `start_pts` on (None: its start, read as a
    run reads it, without a seek); None where its filter graph takes no such pictures.
    InputError where they cannot be decoded."""
    from vidface.io.decode import decode_frames

    verdicts: list[str] = []
    graph = None
    try:
        for frame in itertools.islice(decode_frames(path, start_pts=start_pts, video=video), frames):
            picture = frame.video
            if graph is None:
                graph = av.filter.Graph()
                source = graph.add_buffer(width=picture.width, height=picture.height, format=picture.format,
                                          time_base=frame.time_base)
                idet = graph.add("idet")
                source.link_to(idet)
                idet.link_to(graph.add("buffersink"))
                graph.configure()
            graph.push(picture)
            verdicts += _verdicts(graph)
        if graph is not None:
            graph.push(None)
            verdicts += _verdicts(graph)
    except (av.error.FFmpegError, ValueError) as error:
        log.debug("idet cannot measure %s: %s", path, error)
        return None
    return FieldMotion(verdicts.count("tff"), verdicts.count("bff"), verdicts.count("progressive"), len(verdicts))


def _verdicts(graph: av.filter.Graph) -> list[str]:
    """idet's multi-frame verdict on each frame the graph has ready."""
    found = []
    while True:
        try:
            frame = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return found
        found.append(frame.metadata.get("lavfi.idet.multiple.current_frame", "undetermined"))


def check_fields(path: str | os.PathLike[str], video: VideoInfo, start_pts: int | None,
                 by_fields: bool) -> FieldMotion | None:
    """IN's field motion from `start_pts` on (`field_motion`), with a warning where it and the
    way faces are to be restored disagree (`by_fields`: --fields)."""
    motion = field_motion(path, video, start_pts)
    if motion is None:
        return None
    seen = motion.describe()
    if not video.interlaced and motion.interlaced:
        log.warning("IN is flagged progressive, but its fields show %s: its faces are restored in whole frames, each "
                    "cut from two moments woven together, and OUT is progressive; flag IN's field order first "
                    "(FFmpeg's setfield filter) to restore it field by field", seen)
    elif video.interlaced and by_fields and motion.one_moment:
        log.warning("--fields: IN's fields show %s (a film transfer, or progressive segmented frames): whole frames "
                    "suit it, and give each face twice the rows", seen)
    elif video.interlaced and not by_fields and motion.interlaced:
        log.warning("IN's fields show %s: --fields restores its faces field by field, where whole frames cut each "
                    "face from two moments woven together", seen)
    return motion
