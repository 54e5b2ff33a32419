"""Helpers for the restore pipeline's tests: in-memory Frames of generated face clips, and the
frame region a face's restoration may reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from vidface.faces.align import face_crop, transform_points
from vidface.io.frames import Frame


def frames_of(images: list[np.ndarray], pix_fmt: str = "rgb24", first: int = 0) -> list[Frame]:
    """Frames as a decoder would give them (1/24 s apart, numbered from `first`), pictures
    stored in `pix_fmt`."""
    frames = []
    for index, rgb in enumerate(images, start=first):
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if pix_fmt != "rgb24":
            video = video.reformat(format=pix_fmt)
        frames.append(Frame(index=index, pts=index, time_base=Fraction(1, 24), duration=1, video=video))
    return frames


def tag_hdr(video: av.VideoFrame, transfer: str) -> None:
    """Tag `video` as an HDR picture in BT.2020's primaries: `transfer` "pq" (HDR10) or "hlg"."""
    from vidface.io.probe import PRIMARIES_NAMES, TRANSFER_NAMES

    codes = {name: code for table in (TRANSFER_NAMES, PRIMARIES_NAMES) for code, name in table.items()}
    video.color_trc = codes["smpte2084" if transfer == "pq" else "arib-std-b67"]
    video.color_primaries = codes["bt2020"]


def face_region(landmarks: np.ndarray, shape: tuple[int, int], grow: float = 0.1) -> np.ndarray:
    """H×W bool: the frame pixels the aligned crop of a face with these true landmarks covers,
    grown by `grow` of the crop's side (room for detection and smoothing error)."""
    crop = face_crop(landmarks, 512)
    low, high = -grow * 512, (1 + grow) * 512
    corners = transform_points(crop.inverse, np.array([[low, low], [high, low], [high, high], [low, high]]))
    region = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(region, np.round(corners).astype(np.int32), 1)
    return region.astype(bool)


def face_core(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H×W bool: the middle of the face (between the eyes and the mouth), where the paste mask
    is 1 whatever small error the tracker makes."""
    region = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    return region.astype(bool)


@dataclass
class TemporalProbe:
    """What temporal blending must steady and what it must follow: a still degraded face with
    fresh noise in every frame, and the same clip where at frame `change` the face is replaced
    in place by its mirror image (other content, the same landmarks region)."""

    still: list[np.ndarray]
    jump: list[np.ndarray]
    core: np.ndarray  # H×W bool: the middle of the face
    change: int

    @classmethod
    def make(cls, width: int = 256, height: int = 192, count: int = 24, change: int = 12, seed: int = 0,
             scale: float = 0.6) -> TemporalProbe:
        from face_clips import Pose, background, degrade, render

        face, (landmarks,) = render(background(width, height), [Pose(width / 2, height / 2, scale, 0.0)])
        core = face_core(landmarks, (height, width))
        x1, x2 = np.where(core.any(axis=0))[0][[0, -1]]
        y1, y2 = np.where(core.any(axis=1))[0][[0, -1]]
        pad = round(12 * scale / 0.6)
        box = (slice(y1 - pad, y2 + pad), slice(x1 - pad, x2 + pad))
        mirrored = face.copy()
        mirrored[box] = face[box][:, ::-1]
        rng = np.random.default_rng(seed)
        still = [degrade(face, rng) for _ in range(count)]
        jump = [degrade(face if i < change else mirrored, rng) for i in range(count)]
        return cls(still, jump, core, change)

    def measure(self, run: Callable[[list[np.ndarray], float], np.ndarray], strength: float) -> tuple[float, float]:
        """(the restored still face's frame-to-frame change at `strength` over strength 0's;
        the share of the old face left in the 3 frames from the change on, beyond strength 0's).
        run(images, strength): the restored frames, N×H×W×3 float."""
        from vidface.metrics import temporal_flicker

        mask = self.core[..., None]
        still_off, jump_off = run(self.still, 0.0), run(self.jump, 0.0)
        still_on, jump_on = run(self.still, strength), run(self.jump, strength)
        old_face = jump_off[3:self.change].mean(axis=0)[self.core]
        new_face = jump_off[self.change + 3:].mean(axis=0)[self.core]
        toward_old = old_face - new_face

        def ghost(frames: np.ndarray) -> float:
            return float(np.mean([((frame[self.core] - new_face) * toward_old).sum() / (toward_old * toward_old).sum()
                                  for frame in frames[self.change:self.change + 3]]))

        flicker = temporal_flicker(still_on[3:], mask) / temporal_flicker(still_off[3:], mask)
        return flicker, ghost(jump_on) - ghost(jump_off)


def face_middle_change(before: np.ndarray, after: np.ndarray, truth_before: np.ndarray,
                       truth_after: np.ndarray) -> float:
    """Mean change of a restored face's middle between two restored frames (H×W×3), compared
    in its aligned crops placed by the true landmarks (so the face's motion between them does
    not count, only how its restoration changed)."""
    from vidface.faces.align import face_crop, warp_face

    crops = [warp_face(np.asarray(frame, np.uint8), face_crop(truth, 64)).astype(float)[20:48, 16:48]
             for frame, truth in ((before, truth_before), (after, truth_after))]
    return float(np.abs(crops[1] - crops[0]).mean())
