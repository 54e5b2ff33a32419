"""Per-track temporal stabilisation of face restoration: latents, embedder prompts, paste masks.

Restoring every frame on its own makes faces flicker: the one-step denoiser's clean latent
wanders between near-identical inputs, and the embedder's discrete choice of 77 dictionary codes
flips. :class:`TemporalStabilizer` keeps a small state per face track and smooths three things
over time, each with a recursive (exponential) blend against the same track's past:

* the clean latent after the UNet step (:meth:`TemporalStabilizer.blend_latents`), with a
  weight that falls with face motion and, per latent position, with a latent change large
  against the track's usual flicker, so a turning head, an opening mouth or an occluding hand
  are followed without ghosting;
* the embedder's code distances before the 77 codes are selected
  (:meth:`TemporalStabilizer.stabilize_distances`), so the selection is stable;
* the soft paste mask in crop coordinates (:meth:`TemporalStabilizer.smooth_masks`), when it
  follows the picture (``paste.mask: parsing``: :class:`vidface.faces.parsing.FaceParser` on
  the restored crops); the fixed square of the ``box`` mask needs no smoothing.

Every call takes a batch of crops gathered across frames and faces with one :class:`CropRow`
per batch row. Rows are processed in frame order per track, so a track may appear several
times in one batch (consecutive frames); the result equals feeding the rows one by one. A
track's past is dropped at a shot cut or any other ``reset``, at its birth (a track id not seen
before, or not seen for more than ``max_gap`` frames, unless it is a face the tracker
re-identified on its return: ``CropRow.returned``), and when :meth:`TemporalStabilizer.forget`
is called for a track the tracker ended. State is bounded: one latent, one distance tensor and
one mask per live track, stored in float32 on the device of the input.

Pure torch; works on any device and dtype (outputs have the input's dtype).

Use between the steps of :class:`vidface.models.osdface.OSDFace`, per batch of aligned crops
(B x 3 x H x W RGB in [0, 1]) with one row per crop::

    rows = [CropRow(face.track_id, frame.index, landmark_motion(before, face.landmarks, face.box),
                    reset=cut) for frame, face in batch]
    distances = stabilizer.stabilize_distances(model.code_distances(crops), rows)
    clean = model.denoise(model.encode(crops), model.prompt_from_distances(distances))
    restored = model.decode(stabilizer.blend_latents(clean, rows))
    masks = stabilizer.smooth_masks(parser.face_masks(restored), rows)   # paste.mask: parsing
    stabilizer.forget(ended_track_ids)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from vidface.devices import to_device
from vidface.fields import above, at_least, between, check, option

if TYPE_CHECKING:  # torch is imported where it is used: the settings (TemporalOptions) stay light
    import torch

__all__ = ["CropRow", "TemporalOptions", "TemporalStabilizer", "landmark_motion", "landmark_shape_change"]

# Changes below this fraction of the latent's standard deviation always count as flicker.
_MIN_CHANGE = 0.05
# Weight of the past in a track's running level of frame-to-frame latent change.
_LEVEL_MOMENTUM = 0.9


@dataclass(frozen=True)
class TemporalOptions:
    """Temporal stabilisation of the restored faces (the ``temporal`` section of the settings).

    motion_scale: motion is :func:`landmark_motion`; the latent and mask weights fall as
    exp(-(motion / motion_scale)^2 / 2), so a face drifting slowly keeps nearly all of its past
    and one moving three times motion_scale nearly none. change_scale: the usual change is a
    running median over latent positions, so flicker sets it; the weight at a position falls
    as exp(-(change / (change_scale * usual))^2 / 2): flicker keeps blending, while an
    expression change, an occlusion or a new face replaces the past where it happens, whatever
    the model's latent scale (tests/test_temporal.py checks that such a change leaves next to
    no ghost).
    """

    section: ClassVar[str] = "temporal"

    strength: float = option(0.6, "weight of a face's past when it is still, 0-1: more is steadier skin and "
                             "identity, slower to follow change; 0 turns all temporal smoothing off (latents, "
                             "prompts, masks); the trade-off per strength: docs/benchmarks.md",
                             flag="--temporal", metavar="STRENGTH", rule=between(0, 1, note="0 turns it off"))
    motion_scale: float = option(0.08, "face motion (landmark shift over face size per frame) at which blending "
                                 "falls to 0.61 of its still-face weight", rule=above(0))
    change_scale: float = option(2.0, "latent change, in multiples of the track's usual flicker, at which "
                                 "blending falls to 0.61", rule=above(0))
    prompt_momentum: float = option(0.8, "weight of a face's past in its running average of the embedder's "
                                    "code distances (a stable prompt); 0: codes from each frame alone",
                                    rule=between(0, 1, upper_open=True))
    mask_momentum: float = option(0.5, "weight of a face's past paste mask (crop coordinates), scaled by the "
                                  "motion weight", rule=between(0, 1, upper_open=True))
    max_gap: int = option(5, "frames a face may go unseen before its history is dropped", rule=at_least(1))

    def __post_init__(self) -> None:
        check(self)

    @property
    def enabled(self) -> bool:
        return self.strength > 0


@dataclass(frozen=True)
class CropRow:
    """What the stabiliser needs to know about one row (one face crop) of a batch.

    track_id: the tracker's id of the face.
    frame: the output frame index of the crop (``Frame.index``); strictly increasing per track.
    motion: how far the face moved since the track's previous frame relative to its size, as
        :func:`landmark_motion` measures it; 0 for a still face.
    reset: forget the track's past at this frame (shot cut).
    returned: the face is back after vanishing for a while (hidden, or out of the frame; the
        tracker re-identified it): its past continues however long the gap, weighted by how much
        its shape changed since it was last seen (`motion`: :func:`landmark_shape_change`) and,
        per position, by how much its crop changed, so it shows no jump where it returns as it
        left and starts afresh where it does not.
    """

    track_id: int
    frame: int
    motion: float = 0.0
    reset: bool = False
    returned: bool = False


def landmark_motion(previous: np.ndarray, current: np.ndarray, box: np.ndarray) -> float:
    """How far a face moved between two frames relative to its size: the value of ``CropRow.motion``.

    previous, current: 5 x 2 landmarks (x, y) of one track in two consecutive frames, in
        displayed-frame pixels.
    box: the face box (x1, y1, x2, y2) in the current frame, same pixels.
    Returns the root-mean-square landmark displacement divided by the longer side of the box.
    """
    previous = np.asarray(previous, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if previous.shape != current.shape or previous.ndim != 2 or previous.shape[1] != 2 or box.shape != (4,):
        raise ValueError(
            f"landmarks must be two N x 2 arrays of the same shape and box 4 values, got "
            f"{previous.shape}, {current.shape} and {box.shape}"
        )
    size = max(box[2] - box[0], box[3] - box[1])
    if not size > 0:
        raise ValueError(f"face box must have a positive size, got {box.tolist()}")
    return float(np.sqrt(np.mean(np.sum((current - previous) ** 2, axis=1))) / size)


def landmark_shape_change(previous: np.ndarray, current: np.ndarray, box: np.ndarray) -> float:
    """How far a face's landmarks changed beyond a move, an in-plane turn or a zoom, relative to
    its size: ``CropRow.motion`` for a face back after a gap (``returned``). Aligned crops undo
    those three, so only this part of the change tells its past crop from its present one.

    Arguments as for :func:`landmark_motion`; the root-mean-square residual of the least-squares
    similarity from `previous` onto `current`, over the longer side of the box.
    """
    from vidface.faces.align import similarity_transform, transform_points

    previous = np.asarray(previous, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    fitted = transform_points(similarity_transform(previous, current), previous)
    return landmark_motion(fitted, current, box)


@dataclass
class _Entry:
    state: tuple[torch.Tensor, ...]  # float32, one row each, without the batch dimension
    frame: int


# start(current) -> state of tracks that start at this row; current is a float32 (n, ...) stack
_Start = Callable[["torch.Tensor"], tuple["torch.Tensor", ...]]
# update(state, current, rows) -> (output, new state); all float32 (n, ...) stacks
_Update = Callable[[tuple["torch.Tensor", ...], "torch.Tensor", Sequence[CropRow]],
                   tuple["torch.Tensor", tuple["torch.Tensor", ...]]]


def _rows_where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row i of `a` where mask[i], else row i of `b`."""
    import torch

    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)


class _TrackBank:
    """The running state of one quantity for every live track, updated in frame order."""

    def __init__(self, max_gap: int, forget_stale: bool) -> None:
        self.max_gap = max_gap
        self.forget_stale = forget_stale
        self.entries: dict[int, _Entry] = {}

    def forget(self, track_ids: Sequence[int]) -> None:
        for track_id in track_ids:
            self.entries.pop(track_id, None)

    def run(self, values: torch.Tensor, rows: Sequence[CropRow], start: _Start, update: _Update) -> torch.Tensor:
        """Each row of `values` replaced by its track's output (input dtype); rows of tracks that
        start here (births, resets, long gaps) are returned as they are."""
        import torch

        if values.shape[0] != len(rows):
            raise ValueError(f"batch has {values.shape[0]} rows but {len(rows)} CropRows were given")
        waves = self._waves(rows)
        out = torch.empty_like(values)
        for wave in waves:
            index = to_device(wave, values.device, torch.long)
            current = values.index_select(0, index).float()
            wave_rows = [rows[i] for i in wave]
            continuing = [self._continues(row) for row in wave_rows]
            state = start(current)
            new = current
            if any(continuing):
                previous = tuple(
                    torch.stack([
                        self.entries[row.track_id].state[k] if keep else fresh[j]
                        for j, (row, keep) in enumerate(zip(wave_rows, continuing))
                    ])
                    for k, fresh in enumerate(state)
                )
                updated, updated_state = update(previous, current, wave_rows)
                keep = to_device(continuing, values.device, torch.bool)
                new = _rows_where(keep, updated, current)
                state = tuple(_rows_where(keep, u, f) for u, f in zip(updated_state, state))
            for j, row in enumerate(wave_rows):
                self.entries[row.track_id] = _Entry(tuple(part[j] for part in state), row.frame)
            out.index_copy_(0, index, new.to(values.dtype))
        newest = max(row.frame for row in rows) if rows else None
        if newest is not None and self.forget_stale:
            stale = [tid for tid, entry in self.entries.items() if newest - entry.frame > self.max_gap]
            self.forget(stale)
        return out

    def _continues(self, row: CropRow) -> bool:
        entry = self.entries.get(row.track_id)
        return entry is not None and not row.reset and (row.returned or row.frame - entry.frame <= self.max_gap)

    def _waves(self, rows: Sequence[CropRow]) -> list[list[int]]:
        """Group row indices so wave k holds every track's k-th row; check frame order."""
        last_frame = {tid: entry.frame for tid, entry in self.entries.items()}
        seen: dict[int, int] = {}
        waves: list[list[int]] = []
        for i, row in enumerate(rows):
            previous = last_frame.get(row.track_id)
            if previous is not None and row.frame <= previous:
                raise ValueError(
                    f"track {row.track_id}: frame {row.frame} comes after frame {previous}; "
                    "rows of a track must be in increasing frame order"
                )
            last_frame[row.track_id] = row.frame
            k = seen.get(row.track_id, 0)
            seen[row.track_id] = k + 1
            if k == len(waves):
                waves.append([])
            waves[k].append(i)
        return waves


def _motion_weight(rows: Sequence[CropRow], scale: float, device: torch.device) -> torch.Tensor:
    """exp(-(motion/scale)^2 / 2) per row, float32 (n,)."""
    import torch

    motion = to_device([float(row.motion) for row in rows], device, torch.float32)
    return torch.exp(-0.5 * (motion / scale) ** 2)


class TemporalStabilizer:
    """Per-track temporal smoothing of latents, embedder distances and paste masks.

    One instance per video, fed in frame order. The three methods are independent (each keeps
    its own per-track state), so the pipeline calls each at its point in the model's forward:
    ``stabilize_distances`` before code selection, ``blend_latents`` after the UNet step,
    ``smooth_masks`` before paste-back. All take the same kind of ``rows``.

    forget_stale: drop a track's state once it has been unseen for max_gap frames. The pipeline
    turns it off: it forgets a track itself once the tracker can no longer bring it back.
    """

    def __init__(self, options: TemporalOptions | None = None, *, forget_stale: bool = True) -> None:
        self.options = options or TemporalOptions()
        self._latents, self._distances, self._masks = (_TrackBank(self.options.max_gap, forget_stale)
                                                       for _ in range(3))

    @property
    def live_tracks(self) -> set[int]:
        """Track ids with any stored state (for inspection; state is bounded by this set)."""
        return set(self._latents.entries) | set(self._distances.entries) | set(self._masks.entries)

    def forget(self, track_ids: Sequence[int]) -> None:
        """Drop the state of tracks that ended (unknown ids are ignored)."""
        for bank in (self._latents, self._distances, self._masks):
            bank.forget(track_ids)

    def blend_latents(self, latents: torch.Tensor, rows: Sequence[CropRow]) -> torch.Tensor:
        """Blend each crop's clean latent with its track's past blended latent.

        latents: B x C x h x w clean latents of aligned crops (any float dtype and device), one
            row per entry of `rows`.
        Returns B x C x h x w in the input dtype: ``lerp(latent, past, w)`` with, per latent
        position, ``w = strength * motion_weight * change_weight`` (0 at births and resets).
        """
        if latents.dim() != 4:
            raise ValueError(f"latents must be B x C x h x w, got shape {tuple(latents.shape)}")
        if not self.options.enabled:
            return latents
        return self._latents.run(latents, rows, _start_latent, self._latent_update)

    def stabilize_distances(self, distances: torch.Tensor, rows: Sequence[CropRow]) -> torch.Tensor:
        """Running average per track of the embedder's distances to its code dictionary.

        distances: B x ... (the embedder's own layout, e.g. B x positions x codes), one row per
            entry of `rows`. Returns the same shape and dtype, to select codes from.
        """
        import torch

        if not self.options.enabled or self.options.prompt_momentum == 0:
            return distances
        momentum = self.options.prompt_momentum

        def update(state: tuple[torch.Tensor, ...], current: torch.Tensor, _rows: Sequence[CropRow]):
            value = torch.lerp(current, state[0], momentum)
            return value, (value,)

        return self._distances.run(distances, rows, _start_running_value, update)

    def smooth_masks(self, masks: torch.Tensor, rows: Sequence[CropRow]) -> torch.Tensor:
        """Running average per track of the soft paste mask in crop coordinates.

        masks: B x ... float masks in [0, 1] (e.g. B x 512 x 512 or B x 1 x 512 x 512), one row
            per entry of `rows`. Returns the same shape and dtype, still in [0, 1].
        """
        import torch

        if not self.options.enabled or self.options.mask_momentum == 0:
            return masks
        opts = self.options

        def update(state: tuple[torch.Tensor, ...], current: torch.Tensor, rows_: Sequence[CropRow]):
            weight = opts.mask_momentum * _motion_weight(rows_, opts.motion_scale, current.device)
            value = torch.lerp(current, state[0], weight.view(-1, *([1] * (current.dim() - 1))))
            return value, (value,)

        return self._masks.run(masks, rows, _start_running_value, update)

    def _latent_update(self, state: tuple[torch.Tensor, ...], current: torch.Tensor, rows: Sequence[CropRow]):
        """Blend against the past; the gate compares each position's change with the track's
        usual frame-to-frame change (`level`, a running median), so flicker blends and real
        change does not, whatever the model's latent scale and noise."""
        import torch
        import torch.nn.functional as F

        opts = self.options
        previous, level = state
        motion = _motion_weight(rows, opts.motion_scale, current.device).view(-1, 1, 1, 1)
        change = (current - previous).square().mean(dim=1, keepdim=True)  # n x 1 x h x w
        change = F.avg_pool2d(change, 3, stride=1, padding=1, count_include_pad=False).sqrt()
        typical = change.flatten(1).median(dim=1).values  # robust to local changes (a mouth)
        floor = _MIN_CHANGE * previous.flatten(1).std(dim=1)
        known = level >= 0
        reference = torch.maximum(torch.where(known, level, typical), floor).clamp_min(1e-12)
        change_weight = torch.exp(-0.5 * (change / (opts.change_scale * reference.view(-1, 1, 1, 1))) ** 2)
        blended = torch.lerp(current, previous, opts.strength * motion * change_weight)
        # A sudden global change (a head turn) raises the level by at most 2x per frame's share.
        observed = torch.minimum(typical, 2 * reference)
        level = torch.where(known, torch.lerp(observed, level, _LEVEL_MOMENTUM), typical)
        return blended, (blended, level)


def _start_running_value(current: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (current,)


def _start_latent(current: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A new track's latent state: its latent and an unknown (-1) change level."""
    import torch

    return current, torch.full((current.shape[0],), -1.0, device=current.device)
